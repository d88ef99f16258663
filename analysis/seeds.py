"""Seed aggregation over a stored sweep, and which grid points a figure shows.

The papers train several seeds per setting and keep the lowest loss (optimisation in few
dimensions often lands in local minima). Every figure says which aggregation it shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.phases import PHASES, PhaseThresholds, feature_phase
from sweeps.store import as_matrix


def best_of_seeds(
    table: pd.DataFrame, keys: list[str], loss: str = "loss", sort: bool = True
) -> pd.DataFrame:
    """One row per combination of ``keys`` (a grid point): the seed with the lowest ``loss``. A NaN
    key (e.g. the kurtosis of another data kind) is a value of its own. Rows in key order, or in
    order of first appearance without ``sort``."""
    if not keys:
        return table.loc[[table[loss].idxmin()]].reset_index(drop=True)
    best = table.loc[table.groupby(keys, dropna=False, sort=sort)[loss].idxmin()]
    return best.reset_index(drop=True)


def evenly_spaced(count: int, k: int) -> np.ndarray:
    """Positions of up to ``k`` of ``count`` items, spread evenly from the first to the last."""
    return np.unique(np.linspace(0, count - 1, min(k, count)).round().astype(int))


def ordered_along(best: pd.DataFrame, axis: str | None) -> pd.DataFrame:
    """Rows sorted along ``axis`` (stable), densest first on a density axis as in the papers."""
    if axis is None:
        return best.reset_index(drop=True)
    return best.sort_values(axis, ascending="density" not in axis, kind="stable").reset_index(
        drop=True
    )


def spread_over_grid(best: pd.DataFrame, axes: list[str], count: int) -> pd.DataFrame:
    """Up to ``count`` grid points spread evenly over the sweep, dense first along ``density``."""
    best = ordered_along(best, "density" if "density" in axes else None)
    return best.iloc[evenly_spaced(len(best), count)]


def with_phases(
    table: pd.DataFrame, thresholds: PhaseThresholds = PhaseThresholds()
) -> pd.DataFrame:
    """``table`` plus a ``phase`` column: per-feature phase indices of each model."""
    out = table.copy()
    out["phase"] = list(feature_phase(as_matrix(table["W"]), thresholds))
    return out


def summarize(
    table: pd.DataFrame,
    axes: list[str],
    feature: int,
    thresholds: PhaseThresholds = PhaseThresholds(),
) -> pd.DataFrame:
    """Per grid point: best-of-k loss and phase of ``feature``, mean and spread of the loss over
    seeds, and the fraction of seeds in each phase."""
    phased = with_phases(table, thresholds)
    phased["_phase"] = [int(p[feature]) for p in phased["phase"]]
    groups = phased.groupby(axes, sort=True) if axes else [((), phased)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        best = group.loc[group["loss"].idxmin()]
        row = dict(zip(axes, key))
        row.update(
            n_seeds=len(group),
            loss_best=float(best["loss"]),
            loss_mean=float(group["loss"].mean()),
            loss_std=float(group["loss"].std(ddof=0)),
            phase_best=int(best["_phase"]),
        )
        for index, name in enumerate(PHASES):
            row[f"frac_{name.replace(' ', '_')}"] = float(np.mean(group["_phase"] == index))
        rows.append(row)
    return pd.DataFrame(rows)
