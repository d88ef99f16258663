"""2-D geometry panels: each feature's W_i as a vector in the hidden plane (TMS intro figure)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.seeds import best_of_seeds
from analysis.sweep import coord_label, stamp_figure


def importance_colors(importance_F, cmap="viridis") -> np.ndarray:
    """One colour per feature, from dark (least important) to bright (most important)."""
    imp = np.asarray(importance_F, dtype=float)
    span = np.ptp(imp)
    shade = (imp - imp.min()) / span if span > 0 else np.ones_like(imp)
    return plt.get_cmap(cmap)(0.15 + 0.8 * shade)


def plot_vectors(ax, W_HxF: np.ndarray, importance_F: np.ndarray) -> None:
    """Draw W_i as arrows from the origin, coloured by importance (bright = most important)."""
    colors = importance_colors(importance_F)
    for i in range(W_HxF.shape[1]):
        x, y = W_HxF[:, i]
        ax.plot([0, x], [0, y], color=colors[i], lw=2)
        ax.scatter([x], [y], color=colors[i], s=25, zorder=3)
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, ls=":", color="0.7"))
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_geometry_panels(table: pd.DataFrame, axes: list[str], stamp: str = "", max_panels: int = 40):
    """One panel per grid point (best seed by loss) for an m=2 sweep."""
    best = best_of_seeds(table, axes)
    if "density" in axes:  # dense on the left, as in the paper
        best = best.sort_values("density", ascending=False, kind="stable")
    best = best.head(max_panels)
    cols = min(len(best), 10)
    rows = -(-len(best) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.3 * rows + 0.6), squeeze=False)
    for ax in grid.flat[len(best):]:
        ax.axis("off")
    for ax, (_, row) in zip(grid.flat, best.iterrows()):
        W = np.asarray(list(row["W"]), dtype=float)
        plot_vectors(ax, W, np.asarray(row["feature_importance"], dtype=float))
        ax.set_title(coord_label(row, axes, ' = ', short=True) + f"\nloss {row['loss']:.4f}", fontsize=8)
    n, m = int(best["n_features"].iloc[0]), int(best["n_hidden"].iloc[0])
    fig.suptitle(f"Feature directions W_i in the hidden plane (n={n}, m={m}); colour = importance, "
                 f"bright = important; best of {table['seed'].nunique()} seed(s) by loss", fontsize=10)
    stamp_figure(fig, stamp)
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    return fig
