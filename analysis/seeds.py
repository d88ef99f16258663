"""Seed aggregation over a stored sweep: the papers keep the lowest-loss seed per setting."""

from __future__ import annotations

import pandas as pd


def best_of_seeds(table: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """One row per grid point (combination of ``axes``): the seed with the lowest final loss."""
    if not axes:
        return table.loc[[table["loss"].idxmin()]].reset_index(drop=True)
    best = table.loc[table.groupby(axes, sort=False)["loss"].idxmin()]
    return best.sort_values(axes).reset_index(drop=True)
