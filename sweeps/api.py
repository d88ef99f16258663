"""Sweeps from Python (a notebook): compose an experiment with Python values or Hydra override
strings, run it (in this process or on Ray: it says which), and get its results as a DataFrame.
The same config, checks, store and tracking as ``toymodels-sweep``; figures from ``analysis.api``.
See docs/notebook.md.

    from sweeps import api
    config = api.compose("tms_intro", density=[1, 0.1], steps=2000, out="runs/nb")
    result = api.run(config)              # where sweep.executor says (a local Ray by default); it prints where
    result.table                          # one row per model, weights as numpy arrays
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from sweeps.config import CONF_DIR, GRID_GENERATORS, Config, ConfigError, register_schema, to_config
from sweeps.executors.base import Executor
from sweeps.runner import SweepReport, interrupts_deferred, make_executor, run_sweep
from sweeps.store import read_results

# Grid axes without a config key of their own: a single value is a one-value axis.
_AXIS_ONLY = ("importance_last", "density_last", "density_last_ratio")
# Grid axes whose config key has another leaf name.
_ALIASES = {"importance_decay": "data.importance.decay", "model": "model.kind"}


def compose(
    experiment: str | None = None,
    overrides: Sequence[str] | str = (),
    conf_dir: str | Path | None = None,
    **values: Any,
) -> Config:
    """The validated config of ``experiment`` (a file of ``conf/experiment/``), with Hydra override
    strings and Python values, e.g. ``compose("tms_intro", density=[1, 0.1], steps=5000)`` or
    ``compose("tms_intro", ["train.steps=5000", "sweep.grid.density=[1,0.1]"])``.

    Each keyword names a config key by its last part (``steps`` is ``train.steps``, ``seeds``
    ``sweep.seeds``, ``out`` ``sweep.out``; in an SAE sweep ``sae.*`` first) or in full with
    ``__`` for the dots (``train__lr=1e-3``, ``sae__world__density=0.1``). A list (or a
    ``"geomspace(a, b, n)"`` / ``"linspace(a, b, n)"`` string) sweeps the grid axis of that name
    (``sweep.grid.density``), a single value sets the key; to give a list-valued key itself
    (per-feature densities) name it in full: ``data__density=[1, 0.5]``; ``None`` for an axis the
    experiment sweeps drops it (as ``~sweep.grid.density`` does). Keywords apply after the
    override strings. An unknown or ambiguous name, or a bad value, raises ``ConfigError`` naming
    it, before any compute. ``conf_dir``: another config directory (default: the repository's
    ``conf/``, or ``TOYMODELS_CONF``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweeps.cli import prepare_overrides

    strings = [overrides] if isinstance(overrides, str) else list(overrides)
    strings = prepare_overrides(([f"experiment={experiment}"] if experiment else []) + strings)
    register_schema()
    with initialize_config_dir(
        config_dir=str(Path(conf_dir or CONF_DIR).resolve()), version_base=None
    ):
        cfg = hydra_compose(config_name="config", overrides=strings)
    for name, value in values.items():
        key, value = _resolve(cfg, name, _plain(value))
        _set(cfg, key, name, value)
    return to_config(cfg)


def _plain(value):
    """A Python, numpy or pandas value as the plain values OmegaConf takes (lists, not tuples)."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, (tuple, range)):
        value = list(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _is_axis_value(value) -> bool:
    return isinstance(value, list) or (
        isinstance(value, str) and value.strip().startswith(tuple(f"{g}(" for g in GRID_GENERATORS))
    )


OPTIONAL_SECTIONS = ("sae", "spd")  # a job kind's section: its keys only when the config has it


def schema_keys(sae: bool, spd: bool = False) -> dict[str, Any]:
    """Every settable key of the config schema (dotted) and its type; the ``sae`` (``spd``)
    section's only when the config has one. Free-form dicts (``sweep.grid``, ``*.options``) are not
    listed."""
    present = {"sae": sae, "spd": spd}
    keys: dict[str, Any] = {}

    def walk(node, path):
        for f in dataclasses.fields(node):
            hint = typing.get_type_hints(node)[f.name]
            if typing.get_origin(hint) is typing.Union:  # Optional[SaeConf]: the section's own keys
                hint = next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), hint)
            key = f"{path}{f.name}"
            if dataclasses.is_dataclass(hint):
                if f.name not in OPTIONAL_SECTIONS or present[f.name]:
                    walk(hint, key + ".")
            elif typing.get_origin(hint) is not dict and key != "plugins_digest":
                keys[key] = hint

    walk(Config, "")
    return keys


def _kind_options(cfg) -> set[str]:
    from toymodels.models import MODELS

    names = [cfg.model.kind] + list(cfg.sweep.grid.get("model") or [])
    return {option for name in names if (kind := MODELS.find(str(name))) for option in kind.options}


def _resolve(cfg, name: str, value) -> tuple[str, Any]:
    """(the config key the keyword ``name`` names, its value there)."""
    sae = cfg.get("sae") is not None
    keys = schema_keys(sae, cfg.get("spd") is not None)
    if "__" in name:
        key = name.replace("__", ".")
        if key in keys or key.startswith(("sweep.grid.", "model.options.", "data.options.")):
            return key, value
        raise ConfigError(name, f"{key} is not a config key; the keys are: {', '.join(keys)}")
    options = _kind_options(cfg)
    if value is None and name in cfg.sweep.grid:
        return f"sweep.grid.{name}", None  # drops the axis
    if _is_axis_value(value) and not (
        name in _leaves(keys) and _is_list(keys[_leaves(keys)[name][0]])
    ):
        return f"sweep.grid.{name}", value
    if name in options:
        return f"model.options.{name}", value
    if name in _ALIASES:
        return _ALIASES[name], value
    if name in _AXIS_ONLY:
        return f"sweep.grid.{name}", [value]
    found = _leaves(keys).get(name, [])
    spd = cfg.get("spd") is not None
    if (sae or spd) and len(found) > 1:
        found = [k for k in found if k.startswith(("sae.", "spd."))] or found
    if len(found) == 1:
        return found[0], value
    if found:
        raise ConfigError(
            name,
            f"names several keys: {', '.join(found)}; name one in full with __ for the dots, "
            f"e.g. {found[0].replace('.', '__')}=...",
        )
    known = sorted(set(_leaves(keys)) | set(_ALIASES) | set(_AXIS_ONLY) | options)
    raise ConfigError(
        name,
        "not a config key or grid axis; a keyword is a key's last part, a key in full with "
        f"__ for the dots (train__lr=...), or a list for a grid axis. Names: {', '.join(known)}",
    )


def _leaves(keys: dict[str, Any]) -> dict[str, list[str]]:
    leaves: dict[str, list[str]] = {}
    for key in keys:
        leaves.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    return leaves


def _is_list(hint) -> bool:
    return typing.get_origin(hint) is list


def _set(cfg, key: str, name: str, value) -> None:
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    free_form = key.startswith(("sweep.grid.", "model.options.", "data.options."))
    if value is None and key.startswith("sweep.grid."):
        with open_dict(cfg.sweep.grid):
            del cfg.sweep.grid[key.removeprefix("sweep.grid.")]
        return
    try:
        OmegaConf.update(cfg, key, value, merge=False, force_add=free_form)
    except OmegaConfBaseException as error:
        raise ConfigError(name, f"{key}={value!r}: {str(error).splitlines()[0]}") from None


@dataclass
class SweepResult:
    out: Path
    report: SweepReport
    where: str = ""  # where the chunks ran: in this process, or on which Ray with how many workers

    @property
    def table(self) -> pd.DataFrame:
        """Every stored model, one row each, list columns (W, b, norms, snapshots…) as arrays."""
        return read_results(self.out, arrays=True)


class _Announced:
    """The executor ``sweep.executor`` names, made (as the runner makes it) only when some model is
    left to train, and saying where the chunks run."""

    def __init__(self, config: Config, say: bool):
        self.config, self.say = config, say
        self.made: Executor | None = None
        self.where = "nothing left to train"

    @property
    def workers(self) -> int:
        if self.made is None:
            self.made = make_executor(self.config)
        return self.made.workers

    def run(self, chunks, on_done, on_failed) -> None:
        models = sum(chunk.n_models for chunk in chunks)
        self.where = f"{models} models in {len(chunks)} chunk(s) {describe(self.config, self.made)}"
        if self.say:
            print(f"sweeps.run: {self.where}", file=sys.stderr, flush=True)
        assert (
            self.made is not None
        )  # made by ``workers``, which the runner reads before it runs chunks
        self.made.run(chunks, on_done, on_failed)

    def close(self) -> None:
        if self.made is not None:
            self.made.close()


def describe(config: Config, executor) -> str:
    """Where ``executor`` (made from ``config``) runs chunks, in words."""
    if config.sweep.executor == "local":
        return "in this process, one after another (sweep.executor=local)"
    r = config.ray
    share = (
        f"{r.cpus_per_task:g} CPU"
        + (f" and {r.gpus_per_task:g} GPU" if r.gpus_per_task else "")
        + " each"
    )
    if getattr(executor, "_started", False):
        return (
            f"on a local Ray started here: {executor.workers} worker(s), {share} "
            "(sweep.executor=ray; it stops at the end)"
        )
    address = r.address or os.environ.get("RAY_ADDRESS") or "the Ray this process had started"
    return f"on the Ray cluster at {address}: {executor.workers} worker slot(s), {share} (sweep.executor=ray)"


def run(config: Config, executor: str | None = None, progress: bool = True) -> SweepResult:
    """Train every model of ``config`` not yet in ``sweep.out`` and return the stored results.
    ``executor``: ``"ray"`` (``config.ray``: a local Ray on this machine's cores, started and
    stopped here, or a cluster at ``ray.address``), ``"local"`` (this process, one chunk after
    another), or None for ``sweep.executor`` (``ray`` unless the config says otherwise). With
    ``progress`` it prints where the chunks run (also ``result.where``) and a live line."""
    if executor is not None:
        from sweeps.validation import validate

        config = replace(config, sweep=replace(config.sweep, executor=executor))
        validate(config)
    announced = _Announced(config, progress)
    try:
        report = run_sweep(config, announced, progress=progress)
    finally:
        with interrupts_deferred(
            "still stopping the local Ray this run started, so that none of it is left running"
        ):
            announced.close()
    if progress and announced.made is None:
        print(f"sweeps.run: {announced.where}: {report.summary()}", file=sys.stderr, flush=True)
    return SweepResult(Path(config.sweep.out), report, announced.where)
