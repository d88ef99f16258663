"""The ``target_noise`` figure: a ``random_target`` sweep's trained models
(``analysis.measures.target_noise``) against the linear model's exact optimum
(``analysis.theory.target_noise``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps

from analysis.figures.canvas import finish, region
from analysis.figures.panels import draw_vectors, set_log_scale
from analysis.measures.target_noise import best_per_point, linear_agreement, measure_table
from analysis.stored_sweep import per_sweep
from sweeps.store import nested_array

PANELS = (
    ("loss", "target-only loss (eval)", "theory_loss", True),
    ("norm2_mean", "mean ‖W_i‖²", "theory_norm2", False),
    ("frame_deviation", "‖WWᵀ/c − I‖_F/√m (0: tight frame)", None, True),
    ("full_mse", "full-reconstruction MSE", "even_full_mse", True),
    ("onehot_accuracy", "one-hot accuracy (argmax x' = t)", "even_onehot_accuracy", False),
)
MARKERS = {"linear": "o", "relu": "x"}


def _curves(
    ax, best: pd.DataFrame, column: str, theory: str | None, log_y: bool, colors: dict
) -> None:
    for (model, p), line in best.groupby(["model", "density"], sort=True):
        line = line.sort_values("n_features")
        ax.plot(
            line["n_features"],
            line[column],
            MARKERS.get(model, "s") + ("-" if model == "linear" else ":"),
            color=colors[p],
            ms=4,
            lw=0.8,
            mfc="none" if model != "linear" else colors[p],
            label=f"{model}, p={p:.3g}",
        )
        if theory and model == "linear" and theory in line:
            ax.plot(line["n_features"], line[theory], "-", color=colors[p], lw=2.5, alpha=0.35)
    set_log_scale(ax, best["n_features"])
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("n features (m = 2)")


def _geometry_row(axes_row, best: pd.DataFrame, model: str, density: float) -> None:
    rows = best[(best["model"] == model) & np.isclose(best["density"], density)].sort_values(
        "n_features"
    )
    rows = rows[rows["n_features"] <= 50]
    for ax in axes_row:
        ax.axis("off")
    for ax, (_, row) in zip(axes_row, rows.iterrows()):
        ax.axis("on")
        W = nested_array(row["W"])
        draw_vectors(ax, W, ["C0"] * W.shape[1])
        ax.set_title(
            f"{model}, n={int(row['n_features'])}, p={density:.3g}\nuneven {row['unevenness']:.2f}, "
            f"acc {row['onehot_accuracy']:.2f}",
            fontsize=7,
        )


def plot_target_noise(measured: pd.DataFrame, stamp: str = "", target=None):
    """Top: against n per (model, density), best seed: the target-only loss and mean ‖W_i‖² beside
    the linear model's exact optimum (thick pale lines), the tight-frame deviation ‖WWᵀ/c − I‖_F/√m,
    the full-reconstruction MSE and the one-hot accuracy (argmax x' = t). Bottom: the best seed's W_i in the plane for the linear and ReLU models at one
    background density (uneven = spread of the doubled-angle gaps / even gap)."""
    best = best_per_point(measured)
    densities = sorted(best["density"].unique())
    colors = {
        p: colormaps["viridis"](0.85 * i / max(len(densities) - 1, 1))
        for i, p in enumerate(densities)
    }
    models = [m for m in ("linear", "relu") if m in set(best["model"])] or sorted(
        set(best["model"])
    )
    canvas = region(target, (19, 4.2 + 2.4 * len(models)))
    fig = canvas.figure
    grid = fig.add_gridspec(1 + len(models), 6, height_ratios=[1.7] + [1.0] * len(models))
    for k, (column, label, theory, log_y) in enumerate(PANELS):
        ax = fig.add_subplot(grid[0, k])
        _curves(ax, best, column, theory, log_y, colors)
        ax.set_title(label, fontsize=9)
    ax.legend(fontsize=6, loc="lower left")
    shown = [p for p in densities if p > 0]
    density = shown[len(shown) // 2] if shown else densities[0]
    for r, model in enumerate(models):
        _geometry_row([fig.add_subplot(grid[1 + r, c]) for c in range(6)], best, model, density)
    return finish(
        canvas,
        stamp,
        "A new target every sample, loss on x_t only (random_target): best of "
        f"{measured['seed'].nunique()} seed(s). Thick pale lines: the linear model's exact optimum "
        "(1/12)k/(1+k), ‖W‖² = 1/(1+k), k = ρ(n/m − 1), reached by every equal-norm tight frame; in the "
        "last two panels, that optimum as evenly spaced vectors (same loss). "
        f"Largest |linear/closed form − 1| = {linear_agreement(best):.3f}.",
        wrap=True,
        layout=dict(top=0.86, bottom=0.06, hspace=0.55, wspace=0.35, left=0.04, right=0.99),
    )


def has_random_target(sweep) -> bool:
    table = sweep.table
    return "data_kind" in table and bool((table["data_kind"] == "random_target").any())


@per_sweep
def measured(sweep) -> pd.DataFrame:
    """The sweep's ``random_target`` models, measured at the sweep's ``noise_scale``."""
    noise_scale = float(sweep.config.get("data", {}).get("options", {}).get("noise_scale", 0.1))
    table = sweep.table[sweep.table["data_kind"] == "random_target"]
    if "density" not in table:
        table = table.assign(density=[float(d[0]) for d in table["feature_density"]])
    return measure_table(table, noise_scale)


def target_noise_inputs(sweep) -> tuple:
    return measured(sweep), sweep.stamp()


def target_noise_notes(sweep) -> dict:
    """The linear models' largest relative distance from the closed form."""
    return {
        "target_noise_linear_max_rel_error": round(
            linear_agreement(best_per_point(measured(sweep))), 4
        )
    }
