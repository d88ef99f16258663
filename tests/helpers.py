"""Shared test helpers: compose the real Hydra configs the way the CLI does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from sweeps.config import CONF_DIR, Config, quote_grid_generators, register_schema, to_config

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def compose_config(overrides: list[str] = ()) -> Config:
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=quote_grid_generators(list(overrides)))
    return to_config(cfg)


def tiny(out, *extra) -> list[str]:
    """Overrides for a seconds-long sweep, untracked (tests/test_tracking.py passes wandb.mode=offline)."""
    return ["train.steps=30", "train.batch_size=32", "train.eval_samples=256", "train.snapshot_every=10",
            f"sweep.out={out}", "sweep.executor=local", "wandb.mode=disabled", *extra]


def cli(command: str, *args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name(command)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
