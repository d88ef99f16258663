"""2-D geometry panels: each feature's W_i as a vector in the hidden plane (TMS intro figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid
from analysis.figures.panels import draw_vectors, importance_colors
from analysis.seeds import best_of_seeds, ordered_along
from analysis.stored_sweep import as_array, coord_label


def plot_vectors(ax, W_HxF: np.ndarray, importance_F: np.ndarray) -> None:
    """Draw W_i as arrows from the origin, coloured by importance (bright = most important), in a
    fixed ±1.5 frame so panels compare at a glance."""
    draw_vectors(ax, W_HxF, importance_colors(importance_F), size=25, lim=1.5)


def plot_geometry_panels(table: pd.DataFrame, axes: list[str], stamp: str = "", max_panels: int = 40, target=None):
    """One panel per grid point (best seed by loss) for an m=2 sweep, dense on the left as in the
    paper."""
    best = ordered_along(best_of_seeds(table, axes), "density" if "density" in axes else None)
    best = best.head(max_panels)
    cols = min(len(best), 10)
    rows = -(-len(best) // cols)
    canvas, grid = panel_grid(target, rows, cols, (1.9 * cols, 2.3 * rows + 0.6))
    for ax in grid.flat[len(best):]:
        ax.axis("off")
    for ax, (_, row) in zip(grid.flat, best.iterrows()):
        plot_vectors(ax, as_array(row["W"]), as_array(row["feature_importance"]))
        ax.set_title(coord_label(row, axes, ' = ', short=True) + f"\nloss {row['loss']:.4f}", fontsize=8)
    n, m = int(best["n_features"].iloc[0]), int(best["n_hidden"].iloc[0])
    title = (f"Feature directions W_i in the hidden plane (n={n}, m={m}); colour = importance, "
             f"bright = important; best of {table['seed'].nunique()} seed(s) by loss")
    return finish(canvas, stamp, title, layout=(0, 0.02, 1, 0.95))
