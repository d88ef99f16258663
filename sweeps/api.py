"""Sweeps from Python (a notebook): compose an experiment with overrides, run it in this process
or on Ray, and get its results as a DataFrame. The same config, checks, store and tracking as
``toymodels-sweep``; figures from ``analysis.api``. See README, "From a notebook".

    from sweeps import api
    config = api.compose("tms_intro", ["train.steps=2000", "sweep.out=runs/nb"])
    result = api.run(config)              # in this process; executor="ray" fans out
    result.table                          # one row per model, weights as numpy arrays
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import pandas as pd

from sweeps.config import CONF_DIR, Config, register_schema, to_config
from sweeps.runner import SweepReport, run_sweep
from sweeps.store import read_results


def compose(experiment: str | None = None, overrides: Sequence[str] = (), conf_dir: str | Path | None = None) -> Config:
    """The validated config of ``experiment`` (a file of ``conf/experiment/``) with Hydra
    ``overrides`` (``"train.steps=2000"``, ``"+sweep.grid.lr=[0.001,0.01]"``); a bad key or value
    raises ``ConfigError`` naming it, before any compute. ``conf_dir``: another config directory
    (default: the repository's ``conf/``, or ``TOYMODELS_CONF``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweeps.cli import prepare_overrides

    overrides = prepare_overrides(([f"experiment={experiment}"] if experiment else []) + list(overrides))
    register_schema()
    with initialize_config_dir(config_dir=str(Path(conf_dir or CONF_DIR).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return to_config(cfg)


@dataclass
class SweepResult:
    out: Path
    report: SweepReport

    @property
    def table(self) -> pd.DataFrame:
        """Every stored model, one row each, list columns (W, b, norms, snapshots…) as arrays."""
        return read_results(self.out, arrays=True)


def run(config: Config, executor: str | None = None, progress: bool = True) -> SweepResult:
    """Train every model of ``config`` not yet in ``sweep.out`` and return the stored results.
    ``executor``: ``"local"`` (this process), ``"ray"`` (``config.ray``: a local Ray, started and
    stopped here, or a cluster at ``ray.address``), or None for ``sweep.executor``."""
    if executor is not None:
        from sweeps.validation import validate

        config = replace(config, sweep=replace(config.sweep, executor=executor))
        validate(config)
    return SweepResult(Path(config.sweep.out), run_sweep(config, progress=progress))
