"""The capacity phase diagram of two features in one dimension (Scherlis et al.; docs/science/capacity.md),
drawn as what it measures (issue 17 item 3): the trained C₂ as a continuous map beside the
analytic optimum's C₂, the polysemantic boundary 2/(K−1) < v₂/v₁ < (K−1)/2 on both, the degenerate
K = 1 cells (x² ≡ 1: the loss does not depend on the features' norms, so nothing is learned and no
class is meaningful) hatched, the axes fitted to the swept range, and six marked points A–F with
their marginal-benefit curves: feature 1's −∂L₁/∂C at C₁ = C against feature 2's at C₂ = 1 − C. The
optimum sits where they cross when they cross inside (0, 1) with feature 1's curve falling through
feature 2's, else at a corner; increasing curves (K < 3) always give a corner, so those points must
sit in monosemantic cells.

Thresholded classes (C ≤ 0.1 "ignored") are what the older figure coloured; the analytic C₂ goes to
0 continuously at the lower boundary, so a map of C₂ itself is the faithful comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, region
from analysis.figures.phase_diagram import _edges
from analysis.seeds import best_of_seeds
from analysis.theory import capacity as ct

# (name, K, v₂/v₁): two increasing-returns points, a decreasing-returns one left monosemantic, two
# polysemantic ones and one very sparse monosemantic one; placed inside capacity_phase's range
# (K 1–50, v₂/v₁ 0.02–1) and checked against the boundary by the tests.
MARKED = (
    ("A", 2.0, 0.5),
    ("B", 2.6, 0.85),
    ("C", 6.0, 0.25),
    ("D", 6.0, 0.7),
    ("E", 30.0, 0.12),
    ("F", 30.0, 0.04),
)
DEGENERATE_K = 1.0 + 1e-9  # x_i² ≡ 1 at K = 1 (sign inputs at density 1)


def cells(table: pd.DataFrame) -> pd.DataFrame:
    """The best seed per (K, v₂/v₁) cell of two-feature models, with its trained C₂ and the
    analytic optimum's C₂ (``capacity_theory.optimal_allocation`` with m = 1)."""
    two = table.assign(
        ratio=[float(v[1]) / float(v[0]) for v in table["feature_importance"]],
        C2=[float(list(c)[1]) for c in table["capacity"]],
    )
    best = best_of_seeds(two, ["kurtosis", "ratio"])
    analytic = [
        ct.optimal_allocation(np.array([1.0, r]), K, 1.0)[0][1] if K > DEGENERATE_K else np.nan
        for K, r in zip(best["kurtosis"], best["ratio"])
    ]
    # At v₂ = v₁ and K ≤ 3 the two corners tie: either feature alone is optimal.
    tie = np.isclose(best["ratio"], 1.0) & (best["kurtosis"] <= 3.0)
    return best.assign(analytic_C2=analytic, degenerate=best["kurtosis"] <= DEGENERATE_K, tie=tie)


def _grid(best: pd.DataFrame, column: str):
    """(K values, ratios, ratio × K values) of ``column``, keeping all-NaN columns (K = 1)."""
    pivot = best.pivot_table(
        index="ratio", columns="kurtosis", values=column, aggfunc="first", dropna=False
    )
    pivot = pivot.sort_index().sort_index(axis=1)
    return pivot.columns.to_numpy(float), pivot.index.to_numpy(float), pivot.to_numpy(float)


def _mesh(ax, xs, ys, values, degenerate_x):
    ex, ey = _edges(xs), _edges(ys)
    mesh = ax.pcolormesh(ex, ey, values, cmap="viridis", vmin=0.0, vmax=1.0)
    for i, x in enumerate(xs):
        if degenerate_x[i]:
            ax.fill_between(
                [ex[i], ex[i + 1]],
                ey[0],
                ey[-1],
                facecolor="white",
                edgecolor="0.3",
                hatch="///",
                lw=0,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(ex[0], ex[-1])
    ax.set_ylim(ey[0], ey[-1])
    return mesh


def _boundary_and_points(ax, xs, ys) -> None:
    K = np.geomspace(max(xs.min(), 3.0 + 1e-6), xs.max(), 300)
    lower, upper = ct.polysemantic_boundary(K)
    ax.plot(K, lower, "w--", lw=1.5)
    ax.plot(K, upper, "w--", lw=1.5, label="boundary 2/(K−1), (K−1)/2")
    for name, K_p, r in MARKED:
        if xs.min() <= K_p <= xs.max() and ys.min() <= r <= ys.max():
            ax.plot(K_p, r, "o", ms=7, mfc="white", mec="k")
            ax.annotate(
                name, (K_p, r), xytext=(4, 3), textcoords="offset points", fontsize=9, weight="bold"
            )
    ax.set_xlabel("input kurtosis K")
    ax.set_ylabel("importance ratio v₂/v₁")


def marginal_curves(K: float, ratio: float, C=None) -> dict:
    """Feature 1's −∂L₁/∂C at C₁ = C and feature 2's at C₂ = 1 − C (docs/science/capacity.md, v₁ = 1),
    and the analytic
    optimum's C₁."""
    C = np.linspace(0.0, 1.0, 201) if C is None else np.asarray(C, float)
    return {
        "C": C,
        "first": ct.marginal_benefit(C, 1.0, K),
        "second": ct.marginal_benefit(1.0 - C, ratio, K),
        "optimum_C1": float(ct.optimal_allocation(np.array([1.0, ratio]), K, 1.0)[0][0]),
        "shape": ct.curve_shape(K),
    }


def _marginal_panel(ax, name: str, K: float, ratio: float) -> None:
    curves = marginal_curves(K, ratio)
    ax.plot(curves["C"], curves["first"], "C0-", lw=1.5, label="feature 1 at C₁ = C")
    ax.plot(curves["C"], curves["second"], "C1-", lw=1.5, label="feature 2 at C₂ = 1 − C")
    ax.axvline(curves["optimum_C1"], color="k", ls=":", lw=1)
    region = ct.two_feature_region(ratio, K)
    ax.set_title(f"{name}: K={K:g}, v₂/v₁={ratio:g}\n{curves['shape']}, {region}", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("C = C₁", fontsize=7)
    ax.tick_params(labelsize=6)


def plot_capacity_phase(table: pd.DataFrame, stamp: str = "", target=None):
    """Trained C₂ | analytic C₂ (same extent) | the marginal-benefit curves of A–F."""
    best = cells(table)
    xs, ys, trained = _grid(best, "C2")
    _, _, analytic = _grid(best, "analytic_C2")
    degenerate_x = xs <= DEGENERATE_K
    canvas = region(target, (17, 6.2))
    fig = canvas.figure
    grid = fig.add_gridspec(
        2, 5, width_ratios=[1.25, 1.25, 0.62, 0.62, 0.62], wspace=0.45, hspace=0.6
    )
    for col, (values, title) in enumerate(
        (
            (trained, f"trained C₂ (best of {table['seed'].nunique()} seeds)"),
            (analytic, "analytic optimum's C₂ (m = 1)"),
        )
    ):
        ax = fig.add_subplot(grid[:, col])
        mesh = _mesh(ax, xs, ys, values, degenerate_x)
        _boundary_and_points(ax, xs, ys)
        ax.set_title(title, fontsize=10)
        if col == 1:
            fig.colorbar(mesh, ax=ax, label="C₂ (0: feature 2 ignored, 1: it alone)")
    ax.legend(fontsize=7, loc="lower right")
    for k, (name, K, ratio) in enumerate(MARKED):
        panel = fig.add_subplot(grid[k // 3, 2 + k % 3])
        _marginal_panel(panel, name, K, ratio)
        if k == 0:
            panel.legend(fontsize=5)
    score = agreement(best)
    return finish(
        canvas,
        stamp,
        "Two features in one dimension, quadratic model: C₂ trained and analytic; white dashed: "
        "the polysemantic boundary; hatched: K = 1 (x² ≡ 1, nothing to learn); at v₂/v₁ = 1, K ≤ 3 "
        f"either corner is optimal. Trained within 0.05 of analytic in {score['share_within']:.0%} of "
        f"{score['cells']} cells. Right: marginal benefit −∂L_i/∂C_i of each feature along the budget "
        "C₁ + C₂ = 1; dotted: the analytic optimum.",
        wrap=True,
        layout=dict(top=0.84, bottom=0.1, left=0.05, right=0.98),
    )


def agreement(best: pd.DataFrame, within: float = 0.05) -> dict:
    """Over the cells that are neither degenerate nor a tie: the median |trained C₂ − analytic C₂|
    and the share of cells within ``within``."""
    ok = ~(best["degenerate"] | best["tie"])
    gap = np.abs(best.loc[ok, "C2"] - best.loc[ok, "analytic_C2"])
    return {
        "median": float(np.median(gap)),
        "share_within": float(np.mean(gap < within)),
        "cells": int(ok.sum()),
    }
