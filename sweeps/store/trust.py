"""A store's record of the user's own kinds (``sweep.out/kinds.json``), and trusting plug-in files
explicitly when reading a store (docs/security.md).

A sweep records, once the store has accepted it, each plug-in file it ran (the name it was given,
its absolute path, its path relative to ``sweep.out`` and its SHA-256) and each of the user's kinds
it trains (where it was registered, a digest of its code, the properties the figures read). A
reader never runs a file because the store names it: the figures draw from the recorded
properties, and a command that needs a kind's code (the SAE trainers) stops with one line naming
the file and how to trust it on the reader's own command line, where it is checked against the
digest the store recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from toymodels.registry import ConfigError

KINDS = "kinds.json"


def _tables():
    from toymodels.data import DATA
    from toymodels.models import MODELS

    return {"model": MODELS, "data": DATA}


def _axis_or(config, axis: str, value) -> list:
    from sweeps.config import expand_axis

    grid = config.sweep.grid
    return expand_axis(axis, grid[axis]) if axis in grid else [value]


def user_kinds(config) -> list[tuple[str, object]]:
    """The registered kinds of the user's own that ``config`` trains, as (table, kind)."""
    tables = _tables()
    if config.sae is not None:  # an SAE sweep: its grid's "kind" axis is the SAE kind
        from toymodels.sae import SAE_KINDS

        tables["sae"] = SAE_KINDS
        names = [("sae", name) for name in _axis_or(config, "kind", config.sae.kind)]
    else:
        names = [("model", name) for name in _axis_or(config, "model", config.model.kind)]
    names.append(("data", config.data.kind))
    out = []
    for table, name in dict.fromkeys(names):
        kind = tables[table].find(name)
        if kind is not None and not tables[table].is_builtin(name):
            out.append((table, kind))
    return out


def record_of(config, root: Path) -> dict:
    """What ``root``'s record says of ``config``'s plug-in files and kinds."""
    from toymodels.plugins import file_sha256, kind_record

    plugins = []
    for given in config.plugins:
        path = Path(given).expanduser().resolve()
        plugins.append(
            {
                "given": given,
                "path": str(path),
                "relative": os.path.relpath(path, root.resolve()),
                "sha256": file_sha256(path),
            }
        )
    return {
        "plugins": plugins,
        "kinds": [kind_record(kind, table) for table, kind in user_kinds(config)],
    }


def read_record(root: Path) -> dict | None:
    """``kinds.json`` as written (None: absent, or damaged: then nothing is taken from it)."""
    from sweeps.store.meta import read_regular

    try:
        record = json.loads(read_regular(Path(root) / KINDS, 64 * 2**20))
    except (OSError, ValueError, RecursionError):
        return None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("plugins", []), list)
        or not isinstance(record.get("kinds", []), list)
    ):
        return None
    record["plugins"] = [
        p
        for p in record.get("plugins", [])
        if isinstance(p, dict) and isinstance(p.get("sha256"), str)
    ]
    record["kinds"] = [
        k for k in record.get("kinds", []) if isinstance(k, dict) and isinstance(k.get("name"), str)
    ]
    return record


def record_kinds(root: Path, config) -> None:
    """Check this run's kinds against the store's record, then write the record (the store has
    accepted the config). A kind whose code differs from the recorded one (a notebook cell changed,
    a module edited) is refused: its models would not be those stored."""
    from sweeps.store import atomic_write

    new = record_of(config, root)
    old = read_record(root)
    if old is not None:
        recorded = {(k.get("table"), k["name"]): k for k in old["kinds"]}
        for kind in new["kinds"]:
            before = recorded.get((kind["table"], kind["name"]))
            if before is not None and before.get("code") != kind["code"]:
                key = {"model": "model.kind", "data": "data.kind", "sae": "sae.kind"}[kind["table"]]
                raise ConfigError(
                    key,
                    f"{kind['table']} kind {kind['name']!r} ({kind['origin']}) is not the code "
                    f"{root}'s models were trained with (code digest {before.get('code')}, now "
                    f"{kind['code']}): restore it, or choose another sweep.out",
                )
    if old != new and (
        new["plugins"] or new["kinds"] or old is not None
    ):  # a sweep of built-in kinds: none
        atomic_write(root / KINDS, json.dumps(new, indent=1, sort_keys=True).encode())


def _shown(root: Path, entry: dict) -> str:
    """A plug-in file's path as the reader can pass it: from the current directory where the
    recorded path relative to the store finds it, else as the sweep was given it."""
    for candidate in (
        Path(root) / str(entry.get("relative", "")),
        Path(str(entry.get("path", ""))),
    ):
        if entry.get("relative") is not None and candidate.is_file():
            return os.path.relpath(candidate)
    return str(entry.get("given") or entry.get("path"))


def stored_plugins(root: Path, stored: dict) -> list[str]:
    """The plug-in files a stored sweep ran, as a reader could name them."""
    record = read_record(root)
    if record is not None and record["plugins"]:
        return [_shown(root, p) for p in record["plugins"]]
    return [str(p) for p in (stored.get("plugins") or [])]


def verify_plugins(
    root: Path, stored: dict, named, key: str, allow_extra: bool = False
) -> list[Path]:
    """The files among ``named`` that are this store's plug-in files, checked against the digests
    it recorded (each file's SHA-256, or for a store older than ``kinds.json`` the one digest of
    them all, which then needs every one of them). ``allow_extra``: files that are not the store's
    are left out (an SAE sweep's own plug-ins); otherwise each is refused."""
    from toymodels.plugins import file_sha256, source_digest

    paths = []
    for given in named:
        path = Path(given).expanduser().resolve()
        if path.suffix != ".py" or not path.is_file():
            raise ConfigError(key, f"{given!r} is not a Python file")
        paths.append(path)
    record = read_record(root)
    if record is not None and (record["plugins"] or not stored.get("plugins")):
        digests = {p["sha256"]: p for p in record["plugins"]}
        matched = []
        for given, path in zip(named, paths):
            if file_sha256(path) in digests:
                matched.append(path)
            elif not allow_extra:
                known = ", ".join(_shown(root, p) for p in record["plugins"]) or "none"
                raise ConfigError(
                    key,
                    f"{given} is not one of the plug-in files {root}'s models were trained with "
                    f"(its SHA-256 matches none recorded; theirs: {known}): it changed since, or is "
                    "another file",
                )
        return matched
    wanted = [str(p) for p in (stored.get("plugins") or [])]
    if not wanted:  # a sweep of built-in kinds only: nothing of the named files is its own
        if paths and not allow_extra:
            raise ConfigError(key, f"{named[0]} is not one of {root}'s plug-in files (it has none)")
        return []
    by_name = {path.name: path for path in paths}
    missing = [w for w in wanted if Path(w).name not in by_name]
    if missing:
        raise ConfigError(
            key,
            f"{root} records one digest of all its plug-in files: name every one of them "
            f"({', '.join(wanted)}); missing: {', '.join(missing)}",
        )
    matched = [by_name[Path(w).name] for w in wanted]
    extra = [str(p) for p in paths if p not in matched]
    if extra and not allow_extra:
        raise ConfigError(
            key, f"{extra[0]} is not one of {root}'s plug-in files ({', '.join(wanted)})"
        )
    if source_digest(matched) != stored.get("plugins_digest"):
        raise ConfigError(
            key,
            f"{', '.join(str(p) for p in matched)} do not match the plug-in files {root}'s models "
            f"were trained with (digest {source_digest(matched)}, recorded {stored.get('plugins_digest')}): "
            "they changed since the sweep was trained",
        )
    return matched


def trust_plugins(root: Path, stored: dict, named, key: str) -> list[Path]:
    """Run the plug-in files the reader named, after checking them against the store's record."""
    from toymodels.plugins import load_plugins

    matched = verify_plugins(root, stored, named, key)
    load_plugins(matched)
    return matched


def stored_kind_names(root: Path, stored: dict) -> list[tuple[str, str]]:
    """(table, name) of the user's kinds a stored sweep trained: from its record, else from its
    config (the kinds that are not built in)."""
    record = read_record(root)
    if record is not None:
        return [(k.get("table", "model"), k["name"]) for k in record["kinds"]]
    tables = _tables()
    model = stored.get("model") or {}
    grid = (stored.get("sweep") or {}).get("grid") or {}
    listed = grid.get("model")
    models = listed if isinstance(listed, list) else [model.get("kind", "relu")]
    names = [("model", str(m)) for m in models] + [
        ("data", str((stored.get("data") or {}).get("kind", "sparse")))
    ]
    return [(t, n) for t, n in dict.fromkeys(names) if not tables[t].is_builtin(n)]


def require_kinds(root: Path, stored: dict, key: str, how: str) -> None:
    """Every user kind the stored models were trained with is registered in this process, from the
    code the store recorded; otherwise one line naming the plug-in file (or notebook) and ``how``
    to trust it (e.g. "pass --plugins FILE")."""
    from toymodels.plugins import code_digest

    tables = _tables()
    record = read_record(root)
    recorded = {(k.get("table"), k["name"]): k for k in (record or {"kinds": []})["kinds"]}
    files = stored_plugins(root, stored)
    for table, name in stored_kind_names(root, stored):
        if table not in tables:
            continue
        kind = tables[table].find(name)
        entry = recorded.get((table, name))
        where = entry.get("origin") if entry else None
        if entry and where and where.endswith(".py"):
            rel = next(
                (
                    _shown(root, p)
                    for p in (record or {}).get("plugins", [])
                    if p.get("sha256") == entry.get("file_sha256")
                ),
                where,
            )
            where = f"its plug-in file {rel}"
        elif entry and where:
            where = f"registered in a {where} (register it in this process first)"
        else:
            where = f"its plug-in file{'s' if len(files) > 1 else ''} {', '.join(files) or '(none recorded)'}"
        if kind is None:
            raise ConfigError(
                key,
                f"{root}'s models are of {table} kind {name!r}, defined by {where}, which is not "
                f"loaded: reading a store runs no code; {how} to trust it (checked against the digest "
                "the store recorded)",
            )
        if entry and entry.get("code") and code_digest(kind) != entry["code"]:
            raise ConfigError(
                key,
                f"{table} kind {name!r} as registered here is not the code {root}'s models were "
                f"trained with (code digest {code_digest(kind)}, recorded {entry['code']}; {where})",
            )


def untrusted_note(root: Path, stored: dict, key: str = "plugins") -> str:
    """A note when the sweep's own kinds are not loaded in this process: reading a store runs none
    of its code; their recorded properties stand in (a store older than ``kinds.json``: unknown)."""
    tables = _tables()
    absent = [
        name
        for table, name in stored_kind_names(root, stored)
        if table in tables and tables[table].find(name) is None
    ]
    if not absent:
        return ""
    files = stored_plugins(root, stored)
    known = (
        "their properties are those recorded in kinds.json"
        if read_record(root) is not None
        else "their properties (a privileged hidden layer, signed data) are unknown"
    )
    trust = (
        f"; to run {', '.join(files)}, name {'them' if len(files) > 1 else 'it'} with {key} (checked against "
        "the digest the store recorded)"
        if files
        else ""
    )
    return f"the sweep's own kinds ({', '.join(absent)}) are not loaded (reading a store runs no code): {known}{trust}"


def reader_kinds(root, stored: dict, plugins=(), key: str = "plugins") -> tuple[dict | None, str]:
    """What a reader of a store learns of the user's kinds, running only ``plugins``, the files the
    reader named (checked against the store's record first): the store's record (the kinds'
    properties) and a note when some kind's code is not loaded ("" when all are)."""
    root = Path(root)
    if isinstance(plugins, (str, os.PathLike)):  # one file, not its characters
        plugins = [plugins]
    if plugins:
        trust_plugins(root, stored, list(plugins), key)
    return read_record(root), untrusted_note(root, stored, key)
