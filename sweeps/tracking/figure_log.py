"""The figures ``toymodels-figures`` drew, logged to the stored sweep's wandb summary run: a
``Tracker`` rebuilt from the settings stored with the sweep (``sweep.yaml``), in the mode it was
tracked in."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from sweeps.config import WandbConf
from sweeps.tracking import Tracker, TrackingWarning


def _conf_from(stored: dict, root: Path | None = None) -> WandbConf:
    """The wandb settings stored with a sweep (defaults for a store older than tracking), in the
    mode the sweep was tracked in; WANDB_MODE=disabled in the environment turns it off. A stored
    ``wandb.dir`` outside the store is not followed (a store read elsewhere, or shared, must not
    direct where the reader writes): the figures' run goes under the store then."""
    fields = {
        f: v for f, v in (stored.get("wandb") or {}).items() if f in WandbConf.__dataclass_fields__
    }
    conf = WandbConf(**fields)
    if root is not None and conf.dir is not None:
        inside = Path(str(conf.dir)).resolve()
        if not inside.is_relative_to(Path(root).resolve()):
            conf.dir = None
    if os.environ.get("WANDB_MODE") == "disabled":
        conf.mode = "disabled"
    return conf


def log_figures(sweep_dir, paths: Iterable[Path], table: pd.DataFrame | None = None) -> None:
    """Log a stored sweep's drawn figures to its summary run (``toymodels-figures`` calls this);
    a failure is a ``TrackingWarning``."""
    try:
        from sweeps.store import read_config, read_config_hash

        root = Path(sweep_dir)
        stored = read_config(root)
        config_hash = read_config_hash(root)
        conf = _conf_from(stored, root)
        if conf.mode not in ("offline", "online"):
            return
        tracker = Tracker(
            conf,
            name=stored.get("name", root.name),
            out=root,
            config_hash=config_hash,
            config=stored,
            axes=list((stored.get("sweep") or {}).get("grid") or {}),
        )
    except Exception as error:
        warnings.warn(
            f"wandb: not logging the figures of {sweep_dir} ({type(error).__name__}: {error})",
            TrackingWarning,
            stacklevel=2,
        )
        return
    tracker.log_figures(paths, table)
    tracker.close()
