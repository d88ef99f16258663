"""Capacity over training, from the stored snapshots."""

from __future__ import annotations

import pandas as pd

from analysis.figures.canvas import finish, panel_grid
from analysis.figures.panels import importance_colors
from analysis.seeds import best_of_seeds, spread_over_grid
from analysis.stored_sweep import as_array, coord_label


def plot_capacity_trajectories(
    table: pd.DataFrame, axes: list[str], stamp: str = "", max_panels: int = 4, target=None
):
    """C_i(t) of every feature (coloured by importance) for up to ``max_panels`` grid points,
    best seed each, with the budget Σ_i C_i against m."""
    best = spread_over_grid(best_of_seeds(table, axes), axes, max_panels)
    canvas, grid = panel_grid(target, 1, len(best), (4.2 * len(best), 3.8))
    for ax, (_, row) in zip(grid[0], best.iterrows()):
        steps = as_array(row["snap_step"])
        C = as_array(row["snap_capacity"])  # S×n
        colors = importance_colors(row["feature_importance"])
        for i in range(C.shape[1]):
            ax.plot(steps, C[:, i], color=colors[i], lw=0.8, alpha=0.8 if C.shape[1] <= 20 else 0.3)
        ax.plot(
            steps,
            C.sum(axis=1) / int(row["n_hidden"]),
            color="k",
            lw=1.5,
            ls="--",
            label="Σ C_i / m",
        )
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("training step")
        ax.set_ylabel("capacity C_i")
        ax.set_title(coord_label(row, axes), fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    title = "Capacity allocation over training (colour: importance, bright = important; best seed)"
    return finish(canvas, stamp, title, layout=(0, 0.02, 1, 0.93))
