"""Neurons of a privileged hidden basis (TMS "Privileged basis" and "Computation in
superposition"; docs/science/models.md, docs/science/index.md) and the cost of monosemanticity under an
L1 penalty on the
hidden activations.

Neuron k is row k of W (its input weights W_{k,i} over features i; for the ``abs`` model, the
first layer). The papers draw each neuron's weights stacked by feature and call a neuron
monosemantic when one feature dominates; the threshold is ours and counts only the weights through
which a feature alone moves the neuron: R_ki = max(W_ki, 0) when inputs are ≥ 0 and the hidden
layer has a ReLU (a negative weight only inhibits: ReLU(W_ki x_i) = 0), R_ki = |W_ki| for signed
inputs (``signed``, ``kurtosis`` data) or a linear hidden layer. Neuron k is **monosemantic** when
its largest R_ki² carries at least ``MONO_SHARE`` of Σ_i R_ki², **dead** when ‖R_k‖ is below
``DEAD_NORM`` (no feature alone moves it), else **polysemantic**; feature i is **represented**
when its column ‖R_i‖ reaches 0.5.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd

from analysis.figures.canvas import finish
from analysis.figures.panels import (
    REPRESENTED,
    best_along,
    importance_colors,
    panels_over_plots,
    set_log_scale,
    sweep_x_axis,
    swept_axis,
)
from analysis.kind_traits import privileged_model, signed_data
from analysis.stored_sweep import as_array

MONO_SHARE = 0.9
DEAD_NORM = 0.1
NEURON_CLASSES = ("monosemantic", "polysemantic", "dead")


def response_weights(W_HxF: np.ndarray, signed: bool) -> np.ndarray:
    """The weights through which each feature alone moves each neuron: |W| when a neuron responds
    to both signs (``signed``), max(W, 0) for non-negative inputs into a ReLU."""
    W_HxF = np.asarray(W_HxF, dtype=float)
    return np.abs(W_HxF) if signed else np.clip(W_HxF, 0.0, None)


def top_share(R_HxF: np.ndarray) -> np.ndarray:
    """max_i R_{k,i}² / Σ_i R_{k,i}² per neuron k (NaN for an all-zero row): 1 for a neuron that
    responds to one feature, 1/n for one that responds to n features equally."""
    sq = np.asarray(R_HxF, dtype=float) ** 2
    total = sq.sum(axis=-1)
    return np.where(total > 0, sq.max(axis=-1) / np.where(total > 0, total, 1.0), np.nan)


def neuron_classes(
    W_HxF: np.ndarray,
    signed: bool = False,
    mono_share: float = MONO_SHARE,
    dead_norm: float = DEAD_NORM,
) -> np.ndarray:
    """Per neuron: "monosemantic", "polysemantic" or "dead" (see the module docstring)."""
    R_HxF = response_weights(W_HxF, signed)
    dead = np.linalg.norm(R_HxF, axis=-1) < dead_norm
    mono = np.nan_to_num(top_share(R_HxF)) >= mono_share
    return np.where(dead, "dead", np.where(mono, "monosemantic", "polysemantic"))


def neuron_counts(
    W_HxF: np.ndarray,
    signed: bool = False,
    mono_share: float = MONO_SHARE,
    dead_norm: float = DEAD_NORM,
) -> dict:
    classes = neuron_classes(W_HxF, signed, mono_share, dead_norm)
    return {name: int(np.sum(classes == name)) for name in NEURON_CLASSES}


def is_signed(row: pd.Series) -> bool:
    """Whether a neuron of this model responds to both signs of a feature's weight: signed inputs,
    or a hidden layer without a ReLU."""
    return signed_data(row.get("data_kind", "sparse")) or not privileged_model(row["model"])


def neuron_table(
    table: pd.DataFrame, mono_share: float = MONO_SHARE, dead_norm: float = DEAD_NORM
) -> pd.DataFrame:
    """``table`` plus neuron counts per class and ``represented`` (features with ‖R_i‖ ≥ 0.5)."""
    out = table.copy()
    counts, represented = [], []
    for _, row in table.iterrows():
        W, signed = as_array(row["W"]), is_signed(row)
        counts.append(neuron_counts(W, signed, mono_share, dead_norm))
        represented.append(
            int(np.sum(np.linalg.norm(response_weights(W, signed), axis=0) >= REPRESENTED))
        )
    for name in NEURON_CLASSES:
        out[name] = [c[name] for c in counts]
    out["represented"] = represented
    return out


def threshold_text(mono_share: float = MONO_SHARE, dead_norm: float = DEAD_NORM) -> str:
    return (
        f"R_ki = max(W_ki, 0) (inputs ≥ 0 into a ReLU) or |W_ki| (signed inputs; linear h): neuron k "
        f"monosemantic if max_i R_ki² ≥ {mono_share:g}·Σ_i R_ki², dead if ‖R_k‖ < {dead_norm:g}, "
        f"else polysemantic; feature i represented if ‖R_i‖ ≥ {REPRESENTED}"
    )


def feature_colors(importance_F) -> list:
    """Distinct colours for up to 20 features (tab10 / tab20); beyond that, importance shades
    (bright = important) since no palette separates a hundred features."""
    n = len(importance_F)
    if n <= 20:
        cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
        return [cmap(i) for i in range(n)]
    return list(importance_colors(importance_F))


def plot_neuron_bars(
    ax,
    W_HxF: np.ndarray,
    importance_F,
    signed: bool = False,
    mono_share: float = MONO_SHARE,
    dead_norm: float = DEAD_NORM,
) -> None:
    """One bar per neuron: its weights W_{k,i} stacked by feature, positive upwards and negative
    downwards, one colour per feature (``feature_colors``); "M" marks a monosemantic neuron, "d"
    a dead one."""
    W_HxF = np.asarray(W_HxF, dtype=float)
    colors = feature_colors(importance_F)
    x = np.arange(W_HxF.shape[0])
    up, down = np.zeros(len(x)), np.zeros(len(x))
    for i in range(W_HxF.shape[1]):
        w = W_HxF[:, i]
        pos, neg = np.clip(w, 0, None), np.clip(w, None, 0)
        ax.bar(
            x,
            pos,
            bottom=up,
            color=colors[i],
            width=0.8,
            edgecolor="white",
            linewidth=0.3,
            label=str(i),
        )
        ax.bar(x, neg, bottom=down, color=colors[i], width=0.8, edgecolor="white", linewidth=0.3)
        up, down = up + pos, down + neg
    top = max(float(up.max(initial=0.0)), 1e-9)
    for k, kind in enumerate(neuron_classes(W_HxF, signed, mono_share, dead_norm)):
        if kind != "polysemantic":
            ax.text(
                k,
                up[k] + 0.04 * top,
                "M" if kind == "monosemantic" else "d",
                ha="center",
                fontsize=6,
            )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(min(float(down.min(initial=0.0)) * 1.1, -0.05), top * 1.18)
    ax.set_xticks(x if len(x) <= 12 else x[::5])
    ax.set_xlabel("neuron", fontsize=7)
    ax.tick_params(labelsize=6)


def _counts_plot(ax, counted: pd.DataFrame, axis: str | None, best: pd.DataFrame) -> None:
    """Neuron classes (best seed: lines; seed mean: dotted) and represented features along the sweep."""
    best = best.sort_values(axis) if axis else best
    x = best[axis].to_numpy(float) if axis else np.zeros(len(best))
    means = counted.groupby(axis)[list(NEURON_CLASSES)].mean().sort_index() if axis else None
    for name, color in zip(NEURON_CLASSES, ("C0", "C3", "0.5")):
        ax.plot(x, best[name], "o-", color=color, label=f"{name} neurons")
        if means is not None:
            ax.plot(means.index, means[name], ":", color=color)
    ax.plot(x, best["represented"], "s--", color="C2", label="represented features")
    ax.set_ylabel("count (best seed; dotted: seed mean)")
    if axis:
        sweep_x_axis(ax, axis, x)
    ax.legend(fontsize=7)


def privileged(table: pd.DataFrame) -> pd.Series:
    """The models whose hidden layer has a privileged basis (a neuron is a meaningful unit)."""
    return table["model"].map(privileged_model).astype(bool)


def plot_neurons(
    table: pd.DataFrame,
    axes: list[str],
    stamp: str = "",
    mono_share: float = MONO_SHARE,
    dead_norm: float = DEAD_NORM,
    max_panels: int = 6,
    target=None,
):
    """Top: per-neuron stacked weight bars of the best seed at up to ``max_panels`` points of the
    sweep. Bottom: monosemantic / polysemantic / dead neuron counts and represented features. Only
    the models with a privileged basis are drawn."""
    table = table[privileged(table)]
    axis = swept_axis(table, axes, prefer=("density", "l1_hidden"))
    counted = neuron_table(table, mono_share, dead_norm)
    shown = best_along(counted, axes, axis, max_panels)
    canvas, panels, (plot,) = panels_over_plots(len(shown), 1, panel_size=2.6, target=target)
    for ax, (_, row) in zip(panels, shown.iterrows()):
        plot_neuron_bars(
            ax, as_array(row["W"]), row["feature_importance"], is_signed(row), mono_share, dead_norm
        )
        head = f"{axis} = {row[axis]:.3g}\n" if axis else ""
        ax.set_title(
            head + f"{row['monosemantic']} mono / {row['polysemantic']} poly / {row['dead']} dead",
            fontsize=7,
        )
    n_features = len(shown["feature_importance"].iloc[0])
    if n_features <= 20:
        panels[-1].legend(
            title="feature",
            fontsize=5 if n_features > 10 else 6,
            title_fontsize=6,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    _counts_plot(plot, counted, axis, best_along(counted, axes, axis, len(counted)))
    models = "/".join(sorted(table["model"].unique()))
    n, m = int(table["n_features"].max()), int(table["n_hidden"].max())
    colour = "feature" if n <= 20 else "importance, bright = important"
    title = (
        f"Neurons of the {models} model (n={n}, m={m}): each neuron's weights W_ki stacked by feature "
        f"(colour = {colour}), best of {table['seed'].nunique()} seed(s).\n"
        f"{threshold_text(mono_share, dead_norm)}"
    )
    return finish(
        canvas, stamp, title, fontsize=9, wrap=True, layout=dict(top=0.84, bottom=0.1, hspace=0.6)
    )


def plot_l1_cost(
    table: pd.DataFrame,
    axes: list[str],
    stamp: str = "",
    mono_share: float = MONO_SHARE,
    dead_norm: float = DEAD_NORM,
    target=None,
):
    """The price of monosemanticity: the model's loss (penalty excluded) against the L1 coefficient
    λ, next to monosemantic neurons and represented features against λ (best seed per point; one
    colour per value of any other swept axis)."""
    counted = neuron_table(table, mono_share, dead_norm)
    others = [a for a in axes if a != "l1_hidden" and counted[a].nunique() > 1]
    canvas, _, (loss_ax, count_ax) = panels_over_plots(0, 2, plot_height=3.8, target=target)
    loss_ax.scatter(counted["l1_hidden"], counted["loss"], color="0.75", s=10, label="every seed")
    best = best_along(counted, axes, "l1_hidden", len(counted))
    for k, (key, group) in enumerate(best.groupby(others) if others else [((), best)]):
        group = group.sort_values("l1_hidden")
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
        color = "k" if not others else f"C{k}"
        loss_ax.plot(group["l1_hidden"], group["loss"], "o-", color=color, label="best seed" + tag)
        count_ax.plot(
            group["l1_hidden"],
            group["monosemantic"],
            "o-",
            color=color,
            label="monosemantic neurons" + tag,
        )
        count_ax.plot(
            group["l1_hidden"],
            group["polysemantic"],
            "^:",
            color=color,
            label="polysemantic neurons" + tag,
        )
        count_ax.plot(
            group["l1_hidden"], group["dead"], "x-.", color=color, label="dead neurons" + tag
        )
        count_ax.plot(
            group["l1_hidden"],
            group["represented"],
            "s--",
            color=color,
            label="represented features" + tag,
        )
    for ax in (loss_ax, count_ax):
        ax.set_xlabel("L1 coefficient λ on hidden activations")
        set_log_scale(ax, counted["l1_hidden"][counted["l1_hidden"] > 0])
        ax.legend(fontsize=6)
    loss_ax.set_ylabel("loss (without the penalty)")
    loss_ax.set_yscale("log")
    count_ax.set_ylabel("count (best seed)")
    models = "/".join(sorted(table["model"].unique()))
    n, m = int(table["n_features"].max()), int(table["n_hidden"].max())
    title = (
        f"Cost of monosemanticity ({models}, n={n}, m={m}): + λ·mean‖h‖₁ during training.\n"
        f"{threshold_text(mono_share, dead_norm)}"
    )
    return finish(canvas, stamp, title, fontsize=9, wrap=True, layout=dict(top=0.8, bottom=0.15))
