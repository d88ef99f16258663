"""WᵀW heatmaps with feature-norm bars coloured by polysemanticity (TMS's larger-model figure)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from analysis.figures.canvas import finish, panel_grid
from analysis.seeds import best_of_seeds, spread_over_grid
from analysis.stored_sweep import as_array, coord_label
from toymodels import metrics


def plot_wtw(
    table: pd.DataFrame, axes: list[str], stamp: str = "", max_panels: int = 6, target=None
):
    """For up to ``max_panels`` grid points spread over the sweep (best seed each): WᵀW and the
    norms ‖W_i‖ as bars, coloured by polysemanticity sqrt(Σ_j≠i (Ŵ_i·W_j)²)."""
    best = spread_over_grid(best_of_seeds(table, axes), axes, max_panels)
    canvas, grid = panel_grid(target, 2, len(best), (3.2 * len(best), 6.4), height_ratios=[1, 1.4])
    cmap = matplotlib.colormaps["viridis"]
    for col, (_, row) in enumerate(best.iterrows()):
        W = as_array(row["W"])
        norms = metrics.feature_norms(W)
        poly = np.clip(metrics.polysemanticity(W), 0, 1)
        bars = grid[0, col]
        bars.bar(np.arange(W.shape[1]), norms, color=cmap(poly), width=1.0)
        bars.set_ylim(0, max(1.2, norms.max() * 1.05))
        bars.set_xlim(-0.5, W.shape[1] - 0.5)
        bars.set_xticks([])
        label = coord_label(row, axes)
        bars.set_title(f"{label}\n‖W_i‖ (colour: polysemanticity)", fontsize=8)
        heat = grid[1, col]
        G = metrics.gram(W)
        lim = max(np.abs(G).max(), 1e-9)
        heat.imshow(G, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        heat.set_title("WᵀW", fontsize=8)
        heat.set_xticks([])
        heat.set_yticks([])
    sm = ScalarMappable(cmap=cmap, norm=Normalize(0, 1))
    canvas.figure.colorbar(sm, ax=grid[0, :].tolist(), label="polysemanticity", shrink=0.8)
    n, m = int(best["n_features"].iloc[0]), int(best["n_hidden"].iloc[0])
    return finish(
        canvas, stamp, f"Feature norms and overlaps WᵀW, n={n}, m={m}, best seed per grid point"
    )
