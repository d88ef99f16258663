"""Noise features with a target-only loss (docs/science/models.md): feature 0 is the target (U[0, 1] when
active), features 1..n-1 are noise (``data.rest_scale``·U[0, 1]), and the loss covers only the
target coordinate.

Only the target's readout matters: x'_0 = act(‖W_0‖² x_0 + Σ_j (W_0·W_j) x_j + b_0), so noise
reaches the loss only through its overlap W_0·W_j with the target. Two measures per model: how many
noise features still have a large norm (``‖W_j‖ ≥ 0.5``: present in the hidden space) and how much
of them leaks onto the target's direction (max_j |Ŵ_0·W_j|). A noise feature with a large norm but
no leak sits in the target's null direction: it costs nothing and is not pushed away, so its norm
is what is left of its initialisation, not something learned.

The target here is always feature 0, so only one feature has a reason to be represented; the
``random_target`` data kind (``analysis.target_noise``) makes every feature the target in turn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish
from analysis.figures.panels import (
    REPRESENTED,
    best_along,
    draw_vectors,
    panel_title,
    panels_over_plots,
    set_log_scale,
    swept_axis,
)
from analysis.stored_sweep import as_array

TARGET_COLOR, NOISE_COLOR = "red", "0.45"


LEAK = 0.05  # |Ŵ_0·W_j| at or above which noise feature j counts as interfering with the target


def is_noise_setting(config: dict) -> bool:
    """The noise-features setting: a target-only loss or rescaled non-target features."""
    data = config.get("data", {})
    return (
        data.get("importance", {}).get("kind") == "target_only"
        or float(data.get("rest_scale", 1.0)) != 1.0
    )


def noise_measures(W_HxF: np.ndarray, represented: float = REPRESENTED, leak: float = LEAK) -> dict:
    """Target norm ‖W_0‖; the number of noise features with ‖W_j‖ ≥ ``represented`` (present in
    the hidden space) and with |Ŵ_0·W_j| ≥ ``leak`` (interfering with the target); the noise
    features' mean norm and their largest leak |Ŵ_0·W_j|."""
    W_HxF = np.asarray(W_HxF, dtype=float)
    norms_F = np.linalg.norm(W_HxF, axis=0)
    target = W_HxF[:, 0] / max(norms_F[0], 1e-12)
    leaks = np.abs(target @ W_HxF[:, 1:])
    return {
        "target_norm": float(norms_F[0]),
        "noise_present": int(np.sum(norms_F[1:] >= represented)),
        "noise_interfering": int(np.sum(leaks >= leak)),
        "noise_norm_mean": float(norms_F[1:].mean()) if len(leaks) else 0.0,
        "noise_leak_max": float(leaks.max(initial=0.0)),
    }


def noise_table(
    table: pd.DataFrame, represented: float = REPRESENTED, leak: float = LEAK
) -> pd.DataFrame:
    measures = pd.DataFrame(
        [noise_measures(as_array(row["W"]), represented, leak) for _, row in table.iterrows()],
        index=table.index,
    )
    return pd.concat([table, measures], axis=1)


def _others(axes: list[str], axis: str | None, table: pd.DataFrame) -> list[str]:
    """The other swept axes: one curve per combination of their values."""
    return [a for a in axes if a != axis and a in table and table[a].nunique() > 1]


def _curves(ax, measured: pd.DataFrame, axes: list[str], axis: str | None, columns: dict) -> None:
    """Seed mean (markers and line) and min–max over seeds (bars) of each column, along ``axis``,
    one colour per combination of the other axes. Every seed counts: the target-only loss reaches
    ~0 for all of them, so a best seed would be picked by rounding."""
    others = _others(axes, axis, measured)
    groups = measured.groupby(others) if others else [((), measured)]
    for k, (key, group) in enumerate(groups):
        tag = (
            ""
            if not others
            else " ("
            + ", ".join(
                f"{a}={v:.3g}" if isinstance(v, (int, float, np.number)) else f"{a}={v}"
                for a, v in zip(others, np.atleast_1d(key))
            )
            + ")"
        )
        stats = group.groupby(axis)[list(columns)].agg(["mean", "min", "max"]) if axis else None
        for column, (label, style) in columns.items():
            if stats is None:
                continue
            mean, low, high = stats[column]["mean"], stats[column]["min"], stats[column]["max"]
            ax.errorbar(
                stats.index,
                mean,
                yerr=[mean - low, high - mean],
                fmt=style,
                color=f"C{k}",
                ms=4,
                capsize=2,
                label=label + tag,
            )
    if axis:
        set_log_scale(ax, measured[axis])
        ax.set_xlabel(axis)
    ax.legend(fontsize=6)


def plot_noise(
    table: pd.DataFrame, axes: list[str], stamp: str = "", max_panels: int = 8, target=None
):
    """Top: the best seed's feature directions (target red, noise grey; m = 2 only) along the
    sweep. Bottom: noise features present in the hidden space and interfering with the target
    (left), the target's and the noise features' norms and the largest leak (right)."""
    axis = swept_axis(table, axes, prefer=("n_features", "density"))
    measured = noise_table(table)
    shown = best_along(measured, axes, axis, max_panels)
    two_d = bool((measured["n_hidden"] == 2).all())
    canvas, panels, (count_ax, norm_ax) = panels_over_plots(
        len(shown) if two_d else 0, 2, target=target
    )
    for ax, (_, row) in zip(panels, shown.iterrows()):
        W = as_array(row["W"])
        draw_vectors(ax, W, [TARGET_COLOR] + [NOISE_COLOR] * (W.shape[1] - 1))
        others = ", ".join(f"{a}={row[a]:.3g}" for a in _others(axes, axis, measured))
        ax.set_title(panel_title(row, axis) + (f"\n{others}" if others else ""), fontsize=7)
    _curves(
        count_ax,
        measured,
        axes,
        axis,
        {
            "noise_present": (f"noise features with ‖W_j‖ ≥ {REPRESENTED}", "o-"),
            "noise_interfering": (f"noise features with |Ŵ_0·W_j| ≥ {LEAK}", "x--"),
        },
    )
    count_ax.set_ylabel("count (seed mean; bars: min–max)")
    _curves(
        norm_ax,
        measured,
        axes,
        axis,
        {
            "target_norm": ("‖W_0‖ (target)", "s-"),
            "noise_norm_mean": ("mean ‖W_j‖ of noise", "o:"),
            "noise_leak_max": ("max_j |Ŵ_0·W_j|", "x--"),
        },
    )
    norm_ax.set_yscale("log")
    scale = table["feature_density"].iloc[0]
    title = (
        f"Noise features, loss on the target only (m={int(measured['n_hidden'].iloc[0])}): target feature 0 in "
        f"red, noise features in grey; best of {table['seed'].nunique()} seed(s). A noise feature with a large "
        f"norm but no overlap with the target sits in the target's null direction, where the loss does not see "
        f"it (density of feature 0: {scale[0]:.3g})."
    )
    return finish(
        canvas, stamp, title, fontsize=9, wrap=True, layout=dict(top=0.84, bottom=0.1, hspace=0.5)
    )
