"""A stored sweep as the figures see it: its table, grid axes and provenance."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sweeps.store import as_matrix, read_config, read_config_hash, read_results


@dataclass
class StoredSweep:
    root: Path
    table: pd.DataFrame
    config: dict
    config_hash: str
    notes: dict = field(default_factory=dict)  # numbers worth printing, e.g. agreement with theory

    @classmethod
    def load(cls, out) -> "StoredSweep":
        root = Path(out)
        if not (root / "results.parquet").exists():
            raise FileNotFoundError(f"{root} holds no results.parquet: is it a sweep's output directory (sweep.out)?")
        return cls(root, read_results(root), read_config(root), read_config_hash(root))

    @property
    def name(self) -> str:
        return self.config.get("name", self.root.name)

    @property
    def axes(self) -> list[str]:
        """The swept axes, in grid order."""
        return list(self.config.get("sweep", {}).get("grid", {}))

    def stamp(self) -> str:
        return f"{self.name} · config {self.config_hash} · rev {git_revision()}"


SHORT_AXIS_NAMES = {"density": "p", "importance_decay": "I decay", "weight_decay": "wd"}


def coord_label(row, axes: list[str], sep: str = "=", short: bool = False) -> str:
    """A grid point as text: numbers to 3 significant digits, other values (a model kind) as is."""
    def fmt(value):
        return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)

    return ", ".join(f"{SHORT_AXIS_NAMES.get(a, a) if short else a}{sep}{fmt(row[a])}" for a in axes)


def as_array(cell) -> np.ndarray:
    """One stored list cell (a vector, or a matrix as a list of rows) as a float array."""
    return as_matrix([cell])[0]


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
