"""A stored sweep as the figures see it: its table, grid axes and provenance."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sweeps.store import as_matrix, read_config, read_config_hash, read_stored, reader_kinds


@dataclass
class StoredSweep:
    root: Path
    table: pd.DataFrame
    config: dict
    config_hash: str
    notes: dict = field(default_factory=dict)  # numbers worth printing, e.g. agreement with theory
    status: str = ""  # why the table is not a finished sweep's results.parquet ("" when it is)

    @classmethod
    def load(cls, out, plugins=(), key: str = "plugins") -> StoredSweep:
        """A stored sweep; one still running or killed is read from its finished chunks. Raises
        FileNotFoundError (not a sweep, or nothing finished yet) or ValueError (a damaged sweep.yaml;
        a named plug-in file that is not the store's). Runs no code of the store's: ``plugins``,
        files the caller names, are run after checking them against the digests the store recorded
        (``key`` names them in an error)."""
        root = Path(out)
        table, status = read_stored(root)
        config = read_config(root)
        from analysis.kind_traits import remember

        record, note = reader_kinds(root, config, plugins, key)
        remember(record)
        status = "; ".join(filter(None, [status, note]))
        return cls(root, table, config, read_config_hash(root), status=status)

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
        return (
            f"{value:.3g}"
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else str(value)
        )

    return ", ".join(
        f"{SHORT_AXIS_NAMES.get(a, a) if short else a}{sep}{fmt(row[a])}" for a in axes
    )


def as_array(cell) -> np.ndarray:
    """One stored list cell (a vector, or a matrix as a list of rows) as a float array."""
    return as_matrix([cell])[0]


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def per_sweep(measure):
    """``measure(sweep)`` remembered for the last sweep it was called with: a figure family whose
    figures and notes all read one costly measurement (model evaluations) computes it once."""
    last: list = [None, None]

    @functools.wraps(measure)
    def remembered(sweep):
        if last[0] is not sweep:
            last[:] = [sweep, measure(sweep)]
        return last[1]

    return remembered
