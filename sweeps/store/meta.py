"""``sweep.yaml``: the resolved config a sweep was trained under, its hash and its size.

Its first line is ``# config_hash: <16 hex digits>``, its second ``# models: <planned models>``
(absent in stores written before it existed), the rest the config's YAML. The hash covers
everything that decides what the models are; the body must still hash to the first line, so an
edited file is refused instead of silently describing models it did not train.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from sweeps.config import Config, ConfigError

META = "sweep.yaml"


def _safe_loader():
    import yaml

    return getattr(
        yaml, "CSafeLoader", yaml.SafeLoader
    )  # libyaml's when built with it: fast, never code


_HASH_LINE = re.compile(r"^# config_hash: ([0-9a-f]{16})\s*$")
_MODELS_LINE = re.compile(r"^# models: (\d+)\s*$")


def config_yaml(config: Config) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(config))


# Keys the config gained after the first stores were written (d6d35fb), at the values that leave
# every model as it was trained then: left out of the hash, so that such a store still resumes.
ADDED_AT_NEUTRAL = {
    ("plugins",): [],
    ("plugins_digest",): "",
    ("model", "options"): {},
    ("data", "options"): {},
    ("train", "mono_penalty"): 0,
    ("train", "mono_start"): 0,
    ("train", "terms"): {},
    ("sae",): None,
    ("sae", "world", "saelens"): None,
    ("sae", "fold_b_dec"): False,
}
FRESH_DATA_PIECE = 1024


def _digest(data: dict, before_reads: bool = False) -> str:
    return hashlib.sha256(
        json.dumps(_hashed(data, before_reads), sort_keys=True).encode()
    ).hexdigest()[:16]


def _mapping(data: object) -> dict:
    """``OmegaConf.to_container`` of a config as the dict it is; a YAML body that is a list (or
    anything else) is a TypeError."""
    if not isinstance(data, dict):
        raise TypeError(f"a config is a mapping of keys, not a {type(data).__name__}")
    return data


def _hashed(data: dict, before_reads: bool = False) -> dict:
    """``data`` (a resolved config as a dict, changed in place) as the hash reads it
    (``before_reads``: as a version hashed it before some SAE kinds read keys they read now,
    ``sweeps.sae.compat.hashed_sae``)."""
    for key in ("out", "chunk_size", "executor", "devices", "sharding"):
        data["sweep"].pop(key, None)
    data.pop("ray", None)
    data.pop("wandb", None)
    for section in [key for key, value in data.items() if value is None]:
        del data[section]  # a job kind's section (sae:, ...) that this config does not have
    if data.get("sae"):  # an SAE sweep: keys its SAEs do not read, as they were hashed before
        from sweeps.config import hashed_sae

        hashed_sae(data, before_reads)
    for path, neutral in ADDED_AT_NEUTRAL.items():
        parent: Any = data
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and path[-1] in parent and parent[path[-1]] == neutral:
            del parent[path[-1]]
    if not _finite(data) and "piece_size" in data.get("train", {}):
        # The finite-data piece size decides nothing about fresh-data models: hashed at the value
        # every store had before its default became per-device (0)
        data["train"]["piece_size"] = FRESH_DATA_PIECE
    return data


def _flat(data, prefix: str = "") -> dict:
    if isinstance(data, dict) and data:
        out = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def differences(out: str | os.PathLike, config: Config) -> dict[str, tuple]:
    """The keys (dotted) whose values differ between ``sweep.yaml``'s config and ``config``, as the
    hash reads them: {key: (stored, this)}."""
    from omegaconf import OmegaConf

    recorded, _, body = read_meta(out)
    # a body hashed before its SAE kinds read a key they read now: compared as it was hashed, so
    # that key shows as added (and sweeps.sae.compat.resume_hint names its neutral value)
    before = body_hash(body) != recorded and body_hash(body, before_reads=True) == recorded
    data = _mapping(OmegaConf.to_container(OmegaConf.create(body), resolve=False))
    stored = _flat(_hashed(data, before))
    this = _flat(
        _hashed(_mapping(OmegaConf.to_container(OmegaConf.structured(config), resolve=True)))
    )
    return {
        key: (stored.get(key), this.get(key))
        for key in sorted(set(stored) | set(this))
        if stored.get(key) != this.get(key)
    }


def moved_plugins_only(changed: dict) -> bool:
    """The configs differ only in where their plug-in files are (``plugins``), not in what the
    files hold (``plugins_digest``): the same sweep, its files moved or named from elsewhere."""
    return set(changed) == {"plugins"} and all(changed["plugins"])


def describe_differences(changed: dict, limit: int = 3) -> str:
    """A line saying how the configs differ, and that a changed plug-in file is one reason."""
    if "plugins_digest" in changed and set(changed) <= {"plugins", "plugins_digest"}:
        old, new = changed["plugins_digest"]
        files = changed.get("plugins")
        named = (
            f" ({', '.join(map(str, files[0] or []))} then, {', '.join(map(str, files[1] or []))} now)"
            if files
            else ""
        )
        return (
            f"its plug-in files hold other code than those its models were trained with{named}: digest "
            f"{old or 'none'}, now {new or 'none'}; a file changed since, or is another one: restore it, or choose "
            "another sweep.out"
        )

    def short(value):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    shown = [f"{key} ({short(a)} -> {short(b)})" for key, (a, b) in list(changed.items())[:limit]]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    from sweeps.config import resume_hint

    hint = resume_hint(changed)
    if hint:
        return f"it differs in {', '.join(shown)}{more}; {hint}, or choose another sweep.out"
    return (
        f"it differs in {', '.join(shown)}{more}; choose another sweep.out or remove that directory"
    )


def _finite(data: dict) -> bool:
    return bool(data.get("data", {}).get("n_train")) or "n_train" in data.get("sweep", {}).get(
        "grid", {}
    )


def config_hash(config: Config) -> str:
    """Hash of everything that decides what the models are: not where they are written, how they
    are chunked, where they run (on how many devices) or how they are tracked (``wandb``)."""
    from omegaconf import OmegaConf

    return _digest(_mapping(OmegaConf.to_container(OmegaConf.structured(config), resolve=True)))


def body_hash(text: str, before_reads: bool = False) -> str:
    """The config hash of a ``sweep.yaml`` body (the same as ``config_hash`` of the config it
    shows; ``before_reads``: as hashed before some SAE kinds read keys they read now)."""
    from omegaconf import OmegaConf

    data = _mapping(OmegaConf.to_container(OmegaConf.create(text), resolve=False))
    return _digest(data, before_reads)


MAX_META_BYTES = 256 * 2**20  # a sweep.yaml larger than this is not one toymodels wrote


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``limit`` bytes (a named pipe or a
    device in a shared store would block or never end a reader): else ``ValueError`` naming it.
    A missing file is the caller's ``FileNotFoundError``."""
    import stat

    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if info.st_size > limit:
        raise ValueError(
            f"{path} is larger ({info.st_size:,} bytes) than toymodels writes ({limit:,})"
        )
    with open(path, "rb") as handle:
        return handle.read(limit + 1)


def _meta_text(out: str | os.PathLike) -> tuple[Path, str]:
    """``sweep.yaml``'s text, refused in one line naming the file when it is not plain UTF-8 YAML
    as toymodels writes it (an OSError, a missing file say, is the caller's)."""
    path = Path(out) / META
    try:
        data = read_regular(path, MAX_META_BYTES)
    except ValueError as error:
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged: {str(error).replace(str(path) + ' ', '')}; restore it "
            "as it was, or choose another sweep.out",
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged: not UTF-8 text (byte {error.start}); restore it as it "
            "was, or choose another sweep.out",
        ) from None
    check_plain_yaml(path, text)
    return path, text


def check_plain_yaml(path: Path, text: str) -> None:
    """Refuse YAML that toymodels never writes: tags (``!!python/object``: safe loading refuses them
    anyway), anchors and aliases (a few lines of aliases can expand to gigabytes when read)."""
    import yaml

    depth = _flow_depth(text)
    if depth > MAX_FLOW_DEPTH:
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged: brackets nested {depth} deep, which toymodels never "
            "writes; restore it as it was, or choose another sweep.out",
        )
    try:
        for token in yaml.scan(text, Loader=_safe_loader()):
            if isinstance(token, (yaml.TagToken, yaml.AnchorToken, yaml.AliasToken)):
                what = {yaml.TagToken: "tag", yaml.AnchorToken: "anchor", yaml.AliasToken: "alias"}[
                    type(token)
                ]
                value = token.value if isinstance(token.value, str) else "".join(token.value)
                raise ConfigError(
                    "sweep.out",
                    f"{path} is damaged: it holds a YAML {what} ({value[:40]!r}, line "
                    f"{token.start_mark.line + 1}), which toymodels never writes; restore it as it was, "
                    "or choose another sweep.out",
                )
    except yaml.YAMLError as error:
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged: not YAML ({_yaml_problem(error)}); restore it as it "
            "was, or choose another sweep.out",
        ) from None


MAX_FLOW_DEPTH = 64  # toymodels writes block YAML: a [ or { is an empty list or mapping


def _flow_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest outside quotes (YAML's pure-Python scanner slows
    quadratically with it)."""
    depth = deepest = 0
    quote = None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _yaml_problem(error) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    return f"{problem}, line {mark.line + 1}" if mark is not None else str(problem)


def read_meta(out: str | os.PathLike) -> tuple[str, int | None, str]:
    """``sweep.yaml`` as (config hash, models planned or None, the config's YAML)."""
    path, text = _meta_text(out)
    lines = text.splitlines(keepends=True)
    match = _HASH_LINE.match(lines[0]) if lines else None
    if not match:
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged: its first line is not '# config_hash: <16 hex digits>'; "
            "restore it as it was, or choose another sweep.out",
        )
    planned = _MODELS_LINE.match(lines[1]) if len(lines) > 1 else None
    return match[1], int(planned[1]) if planned else None, "".join(lines[2 if planned else 1 :])


def verified_config_hash(out: str | os.PathLike) -> str:
    """The hash on ``sweep.yaml``'s first line, after checking that its body still hashes to it."""
    stored, _, body = read_meta(out)
    path = Path(out) / META
    read_config(out)  # a mapping of keys, or refused naming what it holds
    try:
        actual = body_hash(body)
    except (
        Exception  # noqa: BLE001
    ) as error:  # not YAML, or not a config any more (RecursionError: nested too deep)
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged ({type(error).__name__}); restore it as it was, "
            "or choose another sweep.out",
        ) from None
    if actual != stored and body_hash(body, before_reads=True) != stored:
        raise ConfigError(
            "sweep.out",
            f"{path} was edited: its config hashes to {actual}, its first line says {stored}, "
            "the config its models were trained under. Undo the edit, or run the changed config "
            "with another sweep.out",
        )
    _fits_the_schema(path, body)
    return stored


def _fits_the_schema(path: Path, body: str) -> None:
    """The config's keys and types are the schema's (``sweeps.config.Config``): a body that hashes
    to its first line can still be one no toymodels wrote (the hash is no signature)."""
    from omegaconf import OmegaConf

    try:
        OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(body))
    except Exception as error:  # noqa: BLE001
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged: its config does not fit the schema ({first}); restore it "
            "as it was, or choose another sweep.out",
        ) from None


def read_config_hash(out: str | os.PathLike) -> str:
    """The config hash on the first line of ``sweep.yaml``."""
    return read_meta(out)[0]


def read_config(out: str | os.PathLike) -> dict:
    """``sweep.yaml``'s config as a dict, read safely (no tags, anchors or aliases; never code); a
    damaged file is a ConfigError naming it."""
    import yaml

    path, text = _meta_text(out)
    try:
        data = yaml.load(text, Loader=_safe_loader())
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged: not YAML ({_yaml_problem(error)}); restore it as it "
            "was, or choose another sweep.out",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged: it holds a {type(data).__name__}, not a config's keys; "
            "restore it as it was, or choose another sweep.out",
        )
    return data
