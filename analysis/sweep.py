"""A stored sweep as the figures see it: its table, grid axes and provenance."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sweeps.store import read_config, read_config_hash, read_stored


@dataclass
class StoredSweep:
    root: Path
    table: pd.DataFrame
    config: dict
    config_hash: str
    notes: dict = field(default_factory=dict)  # numbers worth printing, e.g. agreement with theory
    status: str = ""  # why the table is not a finished sweep's results.parquet ("" when it is)

    @classmethod
    def load(cls, out) -> "StoredSweep":
        """A stored sweep; one still running or killed is read from its finished chunks. Raises
        FileNotFoundError (not a sweep, or nothing finished yet) or ValueError (a damaged sweep.yaml)."""
        root = Path(out)
        table, status = read_stored(root)
        return cls(root, table, read_config(root), read_config_hash(root), status=status)

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


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def wrapped_suptitle(fig, text: str, fontsize: float = 9) -> None:
    """A figure title wrapped to the figure's width (a long one is otherwise cut at both sides)."""
    import textwrap

    width = max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    lines = [textwrap.fill(line, width) for line in text.split("\n")]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


def stamp_figure(fig, stamp: str) -> None:
    """Write the provenance stamp (experiment · config hash · revision) in the bottom corner."""
    if stamp:
        fig.text(0.99, 0.005, stamp, ha="right", va="bottom", fontsize=6, color="0.4")
