"""2-D geometry panels: each feature's W_i as a vector in the hidden plane (TMS intro figure)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, region, width_inches, wrapped
from analysis.figures.panels import draw_vectors, importance_colors
from analysis.seeds import best_of_seeds, ordered_along
from analysis.stored_sweep import as_array, coord_label

LIM = 1.5  # the panels' frame ±LIM, unless a vector is longer
TITLE_SIZE = 10
PANEL_WIDTH = 1.9  # inches per panel of a figure of its own (up to 10 panels a row)


def frame_limit(Ws: list[np.ndarray]) -> float:
    """One frame for every panel, so that they compare at a glance: ±1.5, or wider when a vector
    (its tip's dot included) would leave it."""
    longest = max((float(np.abs(W).max(initial=0.0)) for W in Ws), default=0.0)
    return max(LIM, 1.1 * longest)


def plot_vectors(ax, W_HxF: np.ndarray, importance_F: np.ndarray, lim: float = LIM) -> None:
    """Draw W_i as arrows from the origin, coloured by importance (bright = most important), in a
    frame of ±``lim``."""
    draw_vectors(ax, W_HxF, importance_colors(importance_F), size=25, lim=lim)


def columns_for(n_panels: int, width: float, height: float) -> int:
    """The columns that make ``n_panels`` square panels largest in a ``width``×``height`` area
    (inches, the title's lines already taken off; each panel also needs room for its own two-line
    title)."""

    def side(cols: int) -> float:
        rows = math.ceil(n_panels / cols)
        return min(width / cols, height / rows - 0.35)

    return max(range(1, n_panels + 1), key=lambda cols: (side(cols), -cols))


def plot_geometry_panels(
    table: pd.DataFrame, axes: list[str], stamp: str = "", max_panels: int = 40, target=None
):
    """One panel per grid point (best seed by loss) for an m=2 sweep, dense on the left as in the
    paper. Given a Figure, SubFigure or Axes, the panels are laid out to fill it (fewer columns
    in a narrow place); every vector stays inside its panel."""
    best = ordered_along(best_of_seeds(table, axes), "density" if "density" in axes else None)
    best = best.head(max_panels)
    n, m = int(best["n_features"].iloc[0]), int(best["n_hidden"].iloc[0])
    title = (
        f"Feature directions W_i in the hidden plane (n={n}, m={m}); colour = importance, "
        f"bright = important; best of {table['seed'].nunique()} seed(s) by loss"
    )
    if target is None:
        cols = min(len(best), 10)
        width = max(PANEL_WIDTH * cols, 5.5)  # room for the title, even for one or two panels
        lines = wrapped(title, width, TITLE_SIZE).count("\n") + 1
        title_h = 0.15 + 0.18 * lines
        side = min(width / cols, PANEL_WIDTH) * 0.8  # a square panel
        canvas = region(None, (width, (side + 0.5) * math.ceil(len(best) / cols) + title_h + 0.25))
    else:
        canvas = region(target, (PANEL_WIDTH * 10, 5.0))
        width = width_inches(canvas.figure)
        lines = wrapped(title, width, TITLE_SIZE).count("\n") + 1
        title_h = 0.15 + 0.18 * lines
        cols = columns_for(
            len(best), width, canvas.figure.bbox.height / canvas.figure.dpi - title_h - 0.2
        )
    rows = math.ceil(len(best) / cols)
    grid = canvas.figure.add_gridspec(rows, cols).subplots(squeeze=False)
    for ax in grid.flat[len(best) :]:
        ax.remove()
    Ws = [as_array(W) for W in best["W"]]
    lim = frame_limit(Ws)
    for ax, W, (_, row) in zip(grid.flat, Ws, best.iterrows()):
        plot_vectors(ax, W, as_array(row["feature_importance"]), lim)
        ax.set_title(
            coord_label(row, axes, " = ", short=True) + f"\nloss {row['loss']:.4f}", fontsize=8
        )
    height = canvas.figure.bbox.height / canvas.figure.dpi
    return finish(
        canvas,
        stamp,
        title,
        fontsize=TITLE_SIZE,
        wrap=True,
        layout=(0, 0.02, 1, 1 - title_h / height),
    )
