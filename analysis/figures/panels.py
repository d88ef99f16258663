"""Shared pieces of the figures: which grid axis a figure runs along, the best seed at each point
of it, colours by importance, 2-D panels of feature vectors in caller-chosen colours, and a row of
small panels above wider plots."""

from __future__ import annotations

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.patches import Circle

from analysis.figures.canvas import Canvas, region
from analysis.phases import PhaseThresholds
from analysis.seeds import best_of_seeds, evenly_spaced, ordered_along

# ‖W_i‖ at or above which a feature counts as represented: the phase figures' default threshold.
REPRESENTED = PhaseThresholds.represented


def swept_axis(table: pd.DataFrame, axes: list[str], prefer: tuple[str, ...] = ()) -> str | None:
    """The grid axis a figure runs along: the first of ``prefer`` that varies, else the first
    numeric axis that varies, else None (a single grid point)."""
    varying = [a for a in axes if a in table and table[a].nunique() > 1]
    for name in (*prefer, *varying):
        if name in varying and pd.api.types.is_numeric_dtype(table[name]):
            return name
    return None


def best_along(
    table: pd.DataFrame, axes: list[str], axis: str | None, max_points: int = 8
) -> pd.DataFrame:
    """Best seed (lowest loss) per grid point, ordered along ``axis`` (densest first for a density
    axis, as in the papers), thinned evenly to at most ``max_points`` rows."""
    best = ordered_along(best_of_seeds(table, axes), axis)
    return best.iloc[evenly_spaced(len(best), max_points)]


def importance_colors(importance_F, cmap="viridis") -> np.ndarray:
    """One colour per feature, from dark (least important) to bright (most important)."""
    imp = np.asarray(importance_F, dtype=float)
    span = np.ptp(imp)
    shade = (imp - imp.min()) / span if span > 0 else np.ones_like(imp)
    return matplotlib.colormaps[cmap](0.15 + 0.8 * shade)


def sweep_x_axis(ax, axis: str, values) -> None:
    """The swept axis along x: log when it spans decades, and density decreasing (dense on the
    left, as in the papers)."""
    set_log_scale(ax, values)
    ax.set_xlabel(axis + (" (dense on the left)" if "density" in axis else ""))
    if "density" in axis:
        ax.invert_xaxis()


def set_log_scale(ax, values, which: str = "x") -> None:
    """Log scale on one axis when every value is positive and they span more than a factor 5."""
    values = np.asarray(values, dtype=float)
    if not (len(values) and np.all(values > 0) and values.max() / values.min() > 5):
        return
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    ticks = np.unique(values)
    if len(ticks) <= 6:  # label the swept values themselves, not powers of ten
        axis.set_ticks(ticks, [f"{v:.2g}" for v in ticks])
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def draw_vectors(
    ax,
    W_2xF: np.ndarray,
    colors,
    styles=None,
    labels=None,
    size: float = 22,
    lim: float | None = None,
) -> None:
    """Each column of a 2×n W as a line from the origin with a dot (area ``size``) at its tip, in
    ``colors[i]`` and line style ``styles[i]``; the unit circle dotted. The limits are ±``lim``,
    by default fitting the longest vector."""
    n = W_2xF.shape[1]
    styles = styles if styles is not None else ["-"] * n
    for i in range(n):
        x, y = W_2xF[:, i]
        ax.plot([0, x], [0, y], color=colors[i], lw=2, ls=styles[i])
        ax.scatter([x], [y], color=colors[i], s=size, zorder=3)
        if labels is not None:
            ax.annotate(labels[i], (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
    ax.add_patch(Circle((0, 0), 1.0, fill=False, ls=":", color="0.7"))
    square_frame(ax, max(1.3, 1.15 * float(np.abs(W_2xF).max(initial=0.0))) if lim is None else lim)


def square_frame(ax, lim: float) -> None:
    """A square frame ±``lim`` on both axes, equal aspect, no ticks: for vectors in a plane."""
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def panels_over_plots(
    n_panels: int, n_plots: int, panel_size: float = 2.0, plot_height: float = 3.4, target=None
) -> tuple[Canvas, list, list]:
    """A row of ``n_panels`` small panels (none when 0) above a row of ``n_plots`` wider plots, on
    ``target`` (``canvas.region``): (canvas, panel axes, plot axes)."""
    width = max(panel_size * n_panels, 5.5 * n_plots, 8.0)
    heights = ([panel_size + 0.8] if n_panels else []) + [plot_height]
    canvas = region(target, (width, sum(heights) + 0.8))
    fig = canvas.figure
    outer = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    panels = []
    if n_panels:
        top = outer[0].subgridspec(1, n_panels)
        panels = [fig.add_subplot(top[0, k]) for k in range(n_panels)]
    bottom = outer[-1].subgridspec(1, n_plots, wspace=0.45)
    return canvas, panels, [fig.add_subplot(bottom[0, k]) for k in range(n_plots)]


def panel_title(row: pd.Series, axis: str | None) -> str:
    names = {"density": "p", "density_last": "p_last", "l1_hidden": "λ", "n_features": "n"}
    head = f"{names.get(axis, axis)} = {row[axis]:.3g}\n" if axis is not None else ""
    return head + f"loss {row['loss']:.2e}"
