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
}
FRESH_DATA_PIECE = 1024


def _digest(data: Any) -> str:  # a config as plain containers (a dict)
    for key in ("out", "chunk_size", "executor", "devices", "sharding"):
        data["sweep"].pop(key, None)
    data.pop("ray", None)
    data.pop("wandb", None)
    for section in [key for key, value in data.items() if value is None]:
        del data[section]  # a job kind's section (sae:, ...) that this config does not have
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
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _finite(data: dict) -> bool:
    return bool(data.get("data", {}).get("n_train")) or "n_train" in data.get("sweep", {}).get(
        "grid", {}
    )


def config_hash(config: Config) -> str:
    """Hash of everything that decides what the models are: not where they are written, how they
    are chunked, where they run (on how many devices) or how they are tracked (``wandb``)."""
    from omegaconf import OmegaConf

    return _digest(OmegaConf.to_container(OmegaConf.structured(config), resolve=True))


def body_hash(text: str) -> str:
    """The config hash of a ``sweep.yaml`` body (the same as ``config_hash`` of the config it shows)."""
    from omegaconf import OmegaConf

    return _digest(OmegaConf.to_container(OmegaConf.create(text), resolve=False))


def read_meta(out: str | os.PathLike) -> tuple[str, int | None, str]:
    """``sweep.yaml`` as (config hash, models planned or None, the config's YAML)."""
    path = Path(out) / META
    lines = path.read_text().splitlines(keepends=True)
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
    try:
        actual = body_hash(body)
    except Exception as error:  # noqa: BLE001 - not YAML, or not a config any more
        raise ConfigError(
            "sweep.out",
            f"{path} is damaged ({type(error).__name__}); restore it as it was, "
            "or choose another sweep.out",
        ) from None
    if actual != stored:
        raise ConfigError(
            "sweep.out",
            f"{path} was edited: its config hashes to {actual}, its first line says {stored}, "
            "the config its models were trained under. Undo the edit, or run the changed config "
            "with another sweep.out",
        )
    return stored


def read_config_hash(out: str | os.PathLike) -> str:
    """The config hash on the first line of ``sweep.yaml``."""
    return read_meta(out)[0]


def read_config(out: str | os.PathLike) -> dict:
    import yaml

    return yaml.safe_load((Path(out) / META).read_text())
