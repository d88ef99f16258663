"""Training dynamics from the stored snapshots: loss against step."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd

from analysis.figures.canvas import FULL, finish, single_panel
from analysis.seeds import best_of_seeds
from analysis.stored_sweep import coord_label


def plot_loss_curves(
    table: pd.DataFrame, axes: list[str], stamp: str = "", max_curves: int = 60, target=None
):
    """Training loss (mean over each snapshot interval) against step, best seed per grid point,
    coloured along the first swept axis."""
    best = best_of_seeds(table, axes).head(max_curves)
    canvas, ax = single_panel(target, (7, 4.5))
    numeric = [a for a in axes if pd.api.types.is_numeric_dtype(best[a])]
    color_axis = numeric[0] if numeric else None
    if color_axis:
        values = best[color_axis].to_numpy(dtype=float)
        positive = np.all(values > 0)
        key = np.log(values) if positive else values
        span = np.ptp(key) or 1.0
        colors = matplotlib.colormaps["plasma"]((key - key.min()) / span * 0.9)
    else:
        colors = ["C0"] * len(best)
    for color, (_, row) in zip(colors, best.iterrows()):
        label = coord_label(row, axes) if len(best) <= 12 else None
        ax.plot(
            np.asarray(row["snap_step"]),
            np.asarray(row["snap_loss"]),
            color=color,
            lw=1.2,
            label=label,
        )
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("importance-weighted MSE (mean over interval)")
    title = "Training loss"
    if color_axis:
        title += f", coloured by {color_axis}"
    ax.set_title(title + f"; best of {table['seed'].nunique()} seed(s) per grid point", fontsize=10)
    if len(best) <= 12 and axes:
        ax.legend(fontsize=7, ncol=2)
    return finish(canvas, stamp, layout=FULL)
