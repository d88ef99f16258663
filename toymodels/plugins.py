"""Your own kinds without forking: Python files named in the config's ``plugins`` list are run
once per process, before validation, and register their kinds in the core's tables
(``toymodels.models.register_model``, ``toymodels.data.register_data``,
``toymodels.sae.register_sae``, ``toymodels.terms.register_term``). See docs/kinds.md. Only files
the user names on their own command line (or in their own code) are run: reading a store never runs
the plug-in files it names (docs/security.md).

A file is loaded as a module named after its resolved path, so loading it again (a second sweep
in one notebook) replaces its kinds instead of clashing with them. Ray workers never read the
file: the chunks carry the kinds themselves (``kinds_used``), pickled by value.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path

from toymodels.data import DATA
from toymodels.models import MODELS
from toymodels.registry import ConfigError


def module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"toymodels_plugin_{digest}_{stem}"


def load_plugins(paths) -> list:
    """Run every plugin file (relative paths from the current directory); refuse, naming
    ``plugins``, a missing file or one that fails to run."""
    modules = []
    for i, given in enumerate(paths):
        path = Path(given).expanduser().resolve()
        key = f"plugins[{i}]"
        if path.suffix != ".py" or not path.is_file():
            raise ConfigError(
                key, f"{given!r} is not a Python file (a .py file that registers your kinds)"
            )
        name = module_name(path)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None  # a .py file always has both
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except ConfigError:
            raise
        except Exception as error:
            del sys.modules[name]
            where = traceback.extract_tb(error.__traceback__)[-1]
            raise ConfigError(
                key,
                f"{given} failed to load ({type(error).__name__}: {error}, line {where.lineno})",
            ) from error
        modules.append(module)
    return modules


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes (hex): what a store records of each plug-in file."""
    return hashlib.sha256(Path(path).expanduser().resolve().read_bytes()).hexdigest()


def _own_functions(kind) -> list[tuple[str, object]]:
    """The kind's functions written where the kind was (not toymodels' defaults, not a library's
    function such as ``jax.nn.relu``), by field name."""
    from toymodels.registry import _origin_of

    origin = _origin_of(kind)
    out = []
    for name, value in sorted(vars(kind).items()):
        module = getattr(value, "__module__", None)
        if not hasattr(value, "__code__") or not module:
            continue
        file = getattr(sys.modules.get(module), "__file__", None)
        if (str(Path(file).resolve()) if file else module) == origin:
            out.append((name, value))
    return out


def _code_bytes(code) -> bytes:
    """A code object's instructions and constants (nested code objects too), without its file name
    or line numbers: the same function written again elsewhere gives the same bytes."""
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if hasattr(const, "co_code") else repr(const).encode())
    return b"\0".join(parts)


def code_digest(kind) -> str:
    """A digest of what a kind is: its own functions' source (their code where no source is kept)
    and its other fields. A kind registered in a notebook has no file to hash: this is what a store
    records of it, so that changed code is not taken for the code the models were trained with."""
    import inspect

    h = hashlib.sha256()
    own = dict(_own_functions(kind))
    for name, value in sorted(vars(kind).items()):
        h.update(name.encode() + b"=")
        if name in own:
            try:
                h.update(inspect.getsource(value).encode())
            except (OSError, TypeError):
                h.update(_code_bytes(value.__code__))
        elif not callable(value):
            h.update(repr(value).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def kind_record(kind, table: str) -> dict:
    """What a store records of a user's kind: where it came from, its code digest and the
    properties the figures read without running it."""
    from toymodels.registry import _origin_of

    origin = _origin_of(kind)
    path = Path(origin) if origin.endswith(".py") else None
    record = {
        "table": table,
        "name": kind.name,
        "origin": origin if path else "notebook or module " + origin,
        "file_sha256": file_sha256(path) if path and path.is_file() else None,
        "code": code_digest(kind),
        "doc": getattr(kind, "doc", ""),
    }
    for prop in ("privileged", "signed", "sets", "zero_density", "importance_weighted"):
        if hasattr(kind, prop) and isinstance(getattr(kind, prop), bool):
            record[prop] = getattr(kind, prop)
    options = getattr(kind, "options", None)
    if options is not None:
        record["options"] = {
            k: v
            for k, v in dict(options).items()
            if isinstance(v, (int, float, str, bool, type(None)))
        }
    return record


def source_digest(paths) -> str:
    """A digest of the plugin files' contents: a change to a kind's code is a different sweep."""
    h = hashlib.sha256()
    for given in paths:
        h.update(Path(given).expanduser().resolve().read_bytes())
    return h.hexdigest()[:16]


def kinds_used(model_names, data_names, term_names=(), sae_names=()) -> tuple:
    """The registered kind objects (model and data kinds, loss terms, SAE kinds) that are not built
    in, for the chunks to carry to workers."""
    from toymodels.sae import SAE_KINDS
    from toymodels.terms import TERMS

    used: list[object] = [
        MODELS.get(n) for n in dict.fromkeys(model_names) if not MODELS.is_builtin(n)
    ]
    used += [DATA.get(n) for n in dict.fromkeys(data_names) if not DATA.is_builtin(n)]
    used += [TERMS.get(n) for n in dict.fromkeys(term_names) if not TERMS.is_builtin(n)]
    used += [SAE_KINDS.get(n) for n in dict.fromkeys(sae_names) if not SAE_KINDS.is_builtin(n)]
    return tuple(used)


def plugin_modules(kinds) -> list:
    """The plugin-file modules that define ``kinds``: Ray must pickle them by value, since workers
    cannot import them by name."""
    names = {
        getattr(v, "__module__", None) for kind in kinds for v in vars(kind).values() if callable(v)
    }
    return [
        sys.modules[n]
        for n in sorted(n for n in names if n and n.startswith("toymodels_plugin_"))
        if n in sys.modules
    ]


def ensure_registered(kinds) -> None:
    """Register the kinds a chunk carries (on a worker that never loaded their file)."""
    from toymodels.data import DataKind
    from toymodels.sae import SAE_KINDS, SaeKind
    from toymodels.terms import TERMS, LossTerm

    for kind in kinds:
        table = (
            DATA
            if isinstance(kind, DataKind)
            else TERMS
            if isinstance(kind, LossTerm)
            else SAE_KINDS
            if isinstance(kind, SaeKind)
            else MODELS
        )
        if table.find(kind.name) is not kind:
            table.register(kind)
