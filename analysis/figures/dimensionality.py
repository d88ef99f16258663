"""Dimensionality of superposition against sparsity (TMS "Geometry of superposition").

D* = m/‖W‖_F² per model is sticky at 1 (dense) and 1/2 (antipodal pairs) before it falls with
sparsity; feature dimensionalities C_i cluster at the fractions of uniform polytopes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid
from analysis.seeds import best_of_seeds
from sweeps.store import as_matrix
from toymodels import metrics

# Feature dimensionalities of common configurations: tetrahedron 3/4, triangle 2/3, antipodal
# pair 1/2, pentagon 2/5, square antiprism 3/8.
REFERENCE_FRACTIONS = {"3/4": 0.75, "2/3": 2 / 3, "1/2": 0.5, "2/5": 0.4, "3/8": 0.375}
STICKY = {"1 (dedicated)": 1.0, "1/2 (antipodal)": 0.5}


def plot_dimensionality(table: pd.DataFrame, axes: list[str], stamp: str = "", target=None):
    """Left: D* = m/‖W‖_F² against 1/(1−S), best seed per density. Right: every feature's
    dimensionality C_i against 1/(1−S), with the polytope fractions marked."""
    others = [a for a in axes if a != "density"]
    best = best_of_seeds(table, axes)
    if others:  # one line per setting of the other axes would crowd the figure: take the first
        first = best[others].iloc[0]
        best = best[(best[others] == first).all(axis=1)]
    best = best.sort_values("density")
    W = as_matrix(best["W"])
    inv_p = 1.0 / best["density"].to_numpy(float)
    canvas, ((left, right),) = panel_grid(target, 1, 2, (12, 4.6))

    left.plot(inv_p, metrics.dimensions_per_feature(W), "o-", color="k", ms=4)
    for label, value in STICKY.items():
        left.axhline(value, color="C3", lw=0.8, ls="--")
        left.text(inv_p.min(), value, f" {label}", va="bottom", fontsize=7, color="C3")
    left.set_xscale("log")
    left.set_xlabel("1 / (1 − S) = 1 / density")
    left.set_ylabel("dimensions per feature D* = m / ‖W‖_F²")
    left.set_title("Dimensions per feature (best seed per density)", fontsize=10)

    C = metrics.capacity(W)
    norms = metrics.feature_norms(W)
    for x, c, nrm in zip(inv_p, C, norms):
        learned = nrm >= 0.5
        jitter = x * np.exp(np.random.default_rng(0).normal(0, 0.03, size=c.shape))
        right.scatter(jitter[learned], c[learned], s=4, alpha=0.5, color="C0")
    for label, value in REFERENCE_FRACTIONS.items():
        right.axhline(value, color="0.6", lw=0.7, ls=":")
        right.text(inv_p.max(), value, f" {label}", va="center", fontsize=7, color="0.3")
    right.set_xscale("log")
    right.set_ylim(0, 1.05)
    right.set_xlabel("1 / (1 − S) = 1 / density")
    right.set_ylabel("feature dimensionality C_i")
    right.set_title("Feature dimensionalities of learned features (‖W_i‖ ≥ 0.5)", fontsize=10)
    n, m = int(best["n_features"].iloc[0]), int(best["n_hidden"].iloc[0])
    suffix = f"; other axes at {dict(first)}" if others else ""
    return finish(
        canvas, stamp, f"Geometry of superposition, n={n}, m={m}{suffix}", layout=(0, 0.02, 1, 0.95)
    )
