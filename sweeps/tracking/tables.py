"""Plain helpers that shape what wandb logs: JSON-friendly values, model labels, typed tables and
thinned curves. No wandb import: the caller passes the module in."""

from __future__ import annotations

import math

import numpy as np

MAX_TABLE_ROWS = 10_000  # wandb.Table.MAX_ROWS: a logged table keeps at most this many rows


def plain(value):
    """numpy scalars and arrays as JSON-friendly Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def label(coords: dict, seed) -> str:
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in coords.items()]
    return ",".join(parts + [f"seed={seed}"])


def table(wandb, columns: list[str], rows: list[list]):
    """A ``wandb.Table`` typed from its first row. Every row here has the same Python types, and
    wandb's per-row type inference would cost ~75 µs a row (most of the tracking time)."""
    out = wandb.Table(columns=columns, data=rows[:1])
    out.data.extend(rows[1:])
    return out


def thin(n_steps: int, per_model: int) -> list[int]:
    """At most ``per_model`` evenly spaced snapshot indices, the first and last included."""
    if per_model <= 0 or n_steps == 0:
        return []
    if n_steps <= per_model:
        return list(range(n_steps))
    if per_model == 1:
        return [n_steps - 1]
    stride = math.ceil((n_steps - 1) / (per_model - 1))
    keep = list(range(0, n_steps - 1, stride))
    return keep + [n_steps - 1]


# Per-model values in the ``models`` table: a toy model's per-feature lists, or an SAE's scores.
MEASURES = (
    "norms",
    "capacity",
    "interference",
    "kind",
    "dict_size",
    "sparsity",
    "l0",
    "fvu",
    "mcc",
    "mmcs",
)


def measures_of(columns) -> list[str]:
    return [c for c in MEASURES if c in columns]
