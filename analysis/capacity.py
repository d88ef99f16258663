"""Capacity figures of Scherlis et al. (SCIENCE.md §1, §5, §6) from a stored sweep's table.

Rows are trained models. Columns used: ``model``, ``seed``, ``loss`` (eval loss without the
penalty), ``capacity`` (C_i), ``feature_importance`` (v_i), ``W`` (m×n), ``capacity_feature``
(−1: no penalty), ``capacity_target``, ``kurtosis`` (input K, NaN for other data), ``density``,
``snap_step`` and ``snap_capacity``, plus whichever grid axes the sweep has. Every figure uses
best-of-seeds by loss (SCIENCE.md §4) and states the capacity thresholds it classifies with.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, ScalarFormatter

from analysis import capacity_theory as ct
from analysis.capacity_phase import plot_capacity_phase
from analysis.geometry import importance_colors
from analysis.phase_diagram import _edges, grid_of
from analysis.sweep import stamp_figure, wrapped_suptitle

# The finite-difference marginal benefit changes by more than this fraction of its mean size
# across the held capacities before a curve counts as increasing or decreasing.
SHAPE_TOLERANCE = 0.1
# Achieved capacities closer than this are one point (the lower loss is kept).
MERGE_CAPACITY = 1e-3
THRESHOLDS = ct.CapacityThresholds()
SHORT_NAMES = {"kurtosis": "K", "density": "p", "importance_last": "v_last", "capacity_target": "C target"}
SPARSITY_LABELS = {"kurtosis": "input kurtosis K", "density": "feature density p"}


def _vector(row: pd.Series, column: str) -> np.ndarray:
    return np.asarray(list(row[column]), dtype=np.float64)


def _hidden_dims(row: pd.Series) -> int:
    return len(list(row["W"]))


def _penalised(table: pd.DataFrame) -> pd.Series:
    if "capacity_feature" not in table:
        return pd.Series(False, index=table.index)
    return table["capacity_feature"].astype(int) >= 0


def best_rows(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The lowest-loss seed per combination of ``keys`` (NaN, e.g. kurtosis of other data, is a key)."""
    if not keys:
        return table.loc[[table["loss"].idxmin()]]
    return table.loc[table.groupby(keys, dropna=False, sort=True)["loss"].idxmin()]


def curve_shape_of(C: np.ndarray, mb: np.ndarray, tolerance: float = SHAPE_TOLERANCE) -> str:
    """Trend of a sampled marginal-benefit curve: the least-squares slope times the span of C,
    relative to the mean |MB|, beyond ±``tolerance`` is increasing/decreasing, else flat."""
    if len(C) < 3:
        return "undetermined"
    # Theil–Sen (median of pairwise slopes): one unconverged point must not flip the reading.
    i, j = np.triu_indices(len(C), k=1)
    ok = C[j] > C[i]
    slope = np.median((mb[j] - mb[i])[ok] / (C[j] - C[i])[ok]) if ok.any() else 0.0
    change = slope * np.ptp(C) / max(np.mean(np.abs(mb)), 1e-12)
    return "increasing" if change > tolerance else "decreasing" if change < -tolerance else "flat"


def empirical_marginal_benefit(table: pd.DataFrame, group_by: list[str],
                               tolerance: float = SHAPE_TOLERANCE) -> pd.DataFrame:
    """Per group of penalised models: best-of-seeds loss against the achieved capacity of the held
    feature, −dL/dC and the curve's shape. −dL/dC is each model's own ``penalty_marginal_benefit``
    (2λ(C − target), the penalty's pull at its minimum) when stored, which needs no differences
    between noisy neighbours; else finite differences (``np.gradient``, second order on the uneven
    grid), also returned as ``fd_marginal_benefit``. ``loss`` is the whole model's loss, so −dL/dC is the held feature's
    marginal benefit minus what the capacity it takes costs the others (zero only if the budget
    does not bind). For the n=2, m=1 quadratic model the exact held curve
    (``capacity_theory.held_loss_two_features``) reads increasing for K < 3 and decreasing inside
    the polysemantic region, but either way for K > 3 outside it: there the shape tests no §6
    claim."""
    held = table[_penalised(table)]
    rows = []
    for key, group in held.groupby(group_by, dropna=False, sort=True) if group_by else [((), held)]:
        best = best_rows(group, ["capacity_target"])
        C = np.array([_vector(r, "capacity")[int(r["capacity_feature"])] for _, r in best.iterrows()])
        order = np.argsort(C, kind="stable")
        C, loss = C[order], best["loss"].to_numpy(float)[order]
        pulled = (best["penalty_marginal_benefit"].to_numpy(float)[order] if "penalty_marginal_benefit" in best
                  else np.full_like(C, np.nan))
        keep = np.concatenate([[True], np.diff(C) > MERGE_CAPACITY])
        C, loss, pulled = C[keep], np.minimum.reduceat(loss, np.flatnonzero(keep)), pulled[keep]
        fd = -np.gradient(loss, C) if len(C) >= 2 else np.full_like(C, np.nan)
        mb = pulled if np.isfinite(pulled).all() else fd
        first = best.iloc[0]
        feature = int(first["capacity_feature"])
        rows.append({**dict(zip(group_by, key if isinstance(key, tuple) else (key,))),
                     "capacity_feature": feature,
                     "importance": _vector(first, "feature_importance")[feature],
                     "importance_F": _vector(first, "feature_importance"),
                     "kurtosis": float(first.get("kurtosis", np.nan)),
                     "n_hidden": _hidden_dims(first), "model_kind": first["model"],
                     "capacity": C, "loss": loss, "marginal_benefit": mb, "fd_marginal_benefit": fd, "n_points": len(C),
                     "shape": curve_shape_of(C, mb, tolerance)})
    return pd.DataFrame(rows)


def shared_marginal_benefit(row: pd.Series, K: float | None = None,
                            thresholds: ct.CapacityThresholds = THRESHOLDS) -> dict:
    """Analytic marginal benefit (SCIENCE.md §6) of each polysemantic feature of a trained
    quadratic model at its trained C_i; at an optimum they are equal (SCIENCE.md §5), so
    ``spread`` = max/min should be near 1 (NaN with fewer than two such features)."""
    K = float(row["kurtosis"]) if K is None else float(K)
    C_F = _vector(row, "capacity")
    partial = np.flatnonzero(ct.classify_capacity(C_F, thresholds.mono, thresholds.ignored) == ct.POLYSEMANTIC)
    mb = ct.marginal_benefit(C_F[partial], _vector(row, "feature_importance")[partial], K)
    spread = float(mb.max() / mb.min()) if len(mb) >= 2 and mb.min() > 0 else np.nan
    return {"features": partial, "capacity": C_F[partial], "marginal_benefit": mb, "spread": spread}


def analytic_held_curve(curve: pd.Series, C: np.ndarray) -> dict[str, np.ndarray]:
    """Quadratic-model lines for one empirical curve: the held feature's own marginal benefit
    (§6 relaxation) and, for n = 2, m = 1, −dL/dC of the exact held-capacity loss."""
    K, v_F, f = curve["kurtosis"], curve["importance_F"], curve["capacity_feature"]
    lines = {"own": ct.marginal_benefit(C, v_F[f], K)}
    if len(v_F) == 2 and curve["n_hidden"] == 1:
        loss = ct.held_loss_two_features(C, v_F[1 - f] / v_F[f], K, v1=v_F[f])
        lines["loss"], lines["exact"] = loss, -np.gradient(loss, C)
    return lines


def plot_marginal_benefit(table: pd.DataFrame, group_by: list[str], stamp: str = ""):
    """Top: best-of-seeds loss against the held feature's achieved capacity; bottom: −dL/dC.
    One column per model kind, one colour per group; quadratic models get analytic lines."""
    curves = empirical_marginal_benefit(table, group_by)
    kinds = list(dict.fromkeys(curves["model_kind"]))
    fig, grid = plt.subplots(2, len(kinds), figsize=(5.2 * len(kinds), 7.6), squeeze=False)
    for col, kind in enumerate(kinds):
        top, bottom = grid[0, col], grid[1, col]
        for k, (_, curve) in enumerate(curves[curves["model_kind"] == kind].iterrows()):
            color = f"C{k % 10}"
            label = _label(curve, group_by) + f" [{curve['shape']}]"
            top.plot(curve["capacity"], curve["loss"], "o", color=color, ms=4, label=label)
            bottom.plot(curve["capacity"], curve["marginal_benefit"], "o-", color=color, ms=4, lw=0.8)
            if kind == "quadratic" and np.isfinite(curve["kurtosis"]):
                C = np.linspace(0.02, 0.98, 200)
                lines = analytic_held_curve(curve, C)
                bottom.plot(C, lines["own"], ":", color=color, lw=1)
                if "exact" in lines:
                    top.plot(C, lines["loss"], "-", color=color, lw=1)
                    bottom.plot(C, lines["exact"], "-", color=color, lw=1)
        bottom.axhline(0, color="0.6", lw=0.6)
        top.set_title(f"{kind}: loss vs held capacity (best of seeds)", fontsize=10)
        top.set_ylabel("eval loss (no penalty)")
        bottom.set_ylabel("marginal benefit −dL/dC")
        bottom.set_xlabel("achieved capacity C of the held feature")
        top.legend(fontsize=7)
    wrapped_suptitle(fig, "Marginal benefit of capacity. Points: trained models.\nQuadratic lines: exact held "
                     "optimum (n=2, m=1; solid), held feature's own §6 benefit 2(K−1)²v²/(2+(K−3)C)² (dotted)")
    stamp_figure(fig, stamp)
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    return fig


def _sparsity_axis(table: pd.DataFrame, axes: list[str]) -> str | None:
    """The swept one of kurtosis and density, else whichever of them varies."""
    varies = [a for a in ("kurtosis", "density") if a in table and table[a].notna().all() and table[a].nunique() > 1]
    swept = [a for a in varies if a in axes]
    return (swept or varies or [None])[0]


def _log_axis(ax, which: str = "x") -> None:
    """Log scale with plain tick labels (grids span a decade or two)."""
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def plot_polysemanticity_phase(ax, table: pd.DataFrame, x: str,
                               thresholds: ct.CapacityThresholds = THRESHOLDS) -> None:
    """Class of the second feature (ignored / polysemantic / monosemantic) of the best seed of
    two-feature models over (``x`` = kurtosis or density) × importance ratio v₂/v₁, with the
    analytic boundaries of the quadratic model (SCIENCE.md §6) when ``table`` holds it."""
    cells = table.assign(_ratio=[_vector(r, "feature_importance")[1] / _vector(r, "feature_importance")[0]
                                 for _, r in table.iterrows()])
    best = best_rows(cells, [x, "_ratio"])
    best = best.assign(_class=[int(ct.classify_capacity(_vector(r, "capacity")[1], thresholds.mono,
                                                        thresholds.ignored)) for _, r in best.iterrows()])
    xs, ys, classes = grid_of(best, x, "_ratio", "_class")
    ax.pcolormesh(_edges(xs), _edges(ys), classes, cmap=ListedColormap(ct.CAPACITY_COLORS),
                  vmin=-0.5, vmax=2.5)
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    K_u = (table["kurtosis"] * table["density"]).to_numpy(float)  # the magnitude's kurtosis
    if (table["model"] == "quadratic").all() and np.isfinite(K_u).all() and np.ptp(K_u) < 1e-9:
        fine = np.geomspace(xs.min(), xs.max(), 300)
        lower, upper = ct.polysemantic_boundary(fine if x == "kurtosis" else K_u[0] / fine)
        ax.plot(fine, lower, "k--", lw=1.5, label="analytic boundary (quadratic)")
        ax.plot(fine, upper, "k--", lw=1.5)
    handles = [Patch(color=c, label=f"feature 2 {name}") for c, name in zip(ct.CAPACITY_COLORS, ct.CAPACITY_CLASSES)]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="lower left")
    ax.set_xlabel(SPARSITY_LABELS[x])
    ax.set_ylabel("importance ratio v₂/v₁")


def plot_capacity_allocation(ax, row: pd.Series, label: str = "") -> None:
    """Trained C_i per feature (bars, coloured by importance) against the analytic optimal
    allocation of the quadratic model (markers), with Σ C_i against m."""
    C_F, v_F, m = _vector(row, "capacity"), _vector(row, "feature_importance"), _hidden_dims(row)
    ax.bar(np.arange(len(C_F)), C_F, color=importance_colors(v_F), width=0.8)
    title = f"{row['model']} {label}\nΣC={C_F.sum():.2f} (m={m})"
    if row["model"] == "quadratic" and np.isfinite(row.get("kurtosis", np.nan)):
        optimum, _ = ct.optimal_allocation(v_F, float(row["kurtosis"]), m)
        ax.plot(np.arange(len(C_F)), optimum, "k_", ms=14, mew=2, label="analytic optimum")
        title += f", analytic ΣC={optimum.sum():.2f}"
        ax.legend(fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(np.arange(len(C_F)) if len(C_F) <= 12 else [])
    ax.set_xlabel("feature i")
    ax.set_ylabel("capacity C_i")
    ax.set_title(title, fontsize=8)


def polysemantic_fraction(table: pd.DataFrame, keys: list[str], x: str,
                          thresholds: ct.CapacityThresholds = THRESHOLDS) -> pd.DataFrame:
    """Fraction of polysemantic features of the best seed per grid point (``keys``), averaged
    over the grid points sharing a model kind and ``x``."""
    best = best_rows(table, keys).copy()
    best["poly_fraction"] = [np.mean(ct.classify_capacity(_vector(r, "capacity"), thresholds.mono,
                                                          thresholds.ignored) == ct.POLYSEMANTIC)
                             for _, r in best.iterrows()]
    return best.groupby(["model", x], sort=True)["poly_fraction"].mean().reset_index()


def plot_polysemanticity_vs_sparsity(ax, table: pd.DataFrame, keys: list[str], x: str,
                                     thresholds: ct.CapacityThresholds = THRESHOLDS) -> None:
    fractions = polysemantic_fraction(table, keys, x, thresholds)
    for kind, line in fractions.groupby("model"):
        ax.plot(line[x], line["poly_fraction"], "o-", ms=4, label=kind)
    _log_axis(ax, "x")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(SPARSITY_LABELS[x])
    ax.set_ylabel("fraction of polysemantic features")
    ax.legend(fontsize=8)


def plot_capacity_over_training(ax, row: pd.Series, label: str = "") -> None:
    """C_i(t) from the snapshots, coloured by importance; the held feature thick, its target dashed."""
    steps = np.asarray(list(row["snap_step"]), dtype=float)
    C_SxF = np.stack([np.asarray(list(s), dtype=float) for s in row["snap_capacity"]])
    held = int(row.get("capacity_feature", -1))
    for i, color in enumerate(importance_colors(_vector(row, "feature_importance"))):
        ax.plot(steps, C_SxF[:, i], color=color, lw=2.2 if i == held else 0.9)
    if held >= 0:
        ax.axhline(float(row["capacity_target"]), color="k", ls="--", lw=0.8, label="target")
        ax.legend(fontsize=7)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("training step")
    ax.set_ylabel("capacity C_i")
    ax.set_title(f"{row['model']} {label}", fontsize=8)


def _label(row: pd.Series, keys: list[str]) -> str:
    """``K=6, v_last=0.8``: the grid coordinates of a row, NaN ones left out."""
    parts = []
    for k in keys:
        value = row[k]
        if k == "model" or (isinstance(value, float) and np.isnan(value)):
            continue
        parts.append(f"{SHORT_NAMES.get(k, k)}={value:.3g}" if isinstance(value, float) else f"{k}={value}")
    return ", ".join(parts)


def _panels(best: pd.DataFrame, draw, keys: list[str], title: str, stamp: str, count: int = 6):
    pick = best.iloc[np.unique(np.linspace(0, len(best) - 1, min(count, len(best))).round().astype(int))]
    fig, grid = plt.subplots(1, len(pick), figsize=(3.8 * len(pick), 3.8), squeeze=False)
    for ax, (_, row) in zip(grid[0], pick.iterrows()):
        draw(ax, row, _label(row, keys))
    wrapped_suptitle(fig, title)
    stamp_figure(fig, stamp)
    fig.tight_layout(rect=(0, 0.02, 1, 0.92))
    return fig


def _phase_figure(two: pd.DataFrame, x: str, thresholds: ct.CapacityThresholds, stamp: str):
    kinds = list(dict.fromkeys(two["model"]))
    fig, grid = plt.subplots(1, len(kinds), figsize=(5.4 * len(kinds), 4.8), squeeze=False)
    for ax, kind in zip(grid[0], kinds):
        plot_polysemanticity_phase(ax, two[two["model"] == kind], x, thresholds)
        ax.set_title(f"{kind}: class of feature 2 (best of seeds)", fontsize=10)
    wrapped_suptitle(fig, "Polysemanticity phase diagram, n=2. " + thresholds.describe())
    stamp_figure(fig, stamp)
    fig.tight_layout(rect=(0, 0.02, 1, 0.93))
    return fig


def _sparsity_figure(free: pd.DataFrame, keys: list[str], x: str, thresholds: ct.CapacityThresholds, stamp: str):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    plot_polysemanticity_vs_sparsity(ax, free, keys, x, thresholds)
    ax.set_title("Polysemanticity vs sparsity across architectures (best seed per grid point)\n"
                 + thresholds.describe(), fontsize=9)
    stamp_figure(fig, stamp)
    fig.tight_layout()
    return fig


def capacity_figures(sweep, thresholds: ct.CapacityThresholds = THRESHOLDS) -> dict:
    """Every capacity figure the stored sweep (``analysis.sweep.StoredSweep``) supports, by name:
    marginal benefit (≥ 3 held capacity targets), phase diagram (two-feature models over a
    varying kurtosis or density and importance ratio), allocation, polysemanticity vs sparsity
    (kurtosis or density varies) and C_i(t) (snapshots stored)."""
    table, stamp = sweep.table, sweep.stamp()
    keys = ["model"] + [a for a in sweep.axes if a in table and a not in ("model", "seed")]
    held, free = table[_penalised(table)], table[~_penalised(table)]
    if "mono_penalty" in free:  # a monosemanticity term changes the optimum: not the free model's
        free = free[free["mono_penalty"] == 0]
    figures = {}
    if len(held) and held["capacity_target"].nunique() >= 3:
        group_by = [k for k in keys if k != "capacity_target"]
        figures["capacity_marginal_benefit"] = plot_marginal_benefit(held, group_by, stamp)
    x = _sparsity_axis(free, sweep.axes) if len(free) else None
    two = free[[len(list(c)) == 2 for c in free["capacity"]]] if len(free) else free
    ratios = {tuple(np.round(_vector(r, "feature_importance"), 12)) for _, r in two.iterrows()}
    if x and len(ratios) > 1:
        quadratic = (two["model"] == "quadratic").all() and two["kurtosis"].notna().all()
        figures["capacity_phase_diagram"] = (plot_capacity_phase(two, stamp) if quadratic
                                             else _phase_figure(two, x, thresholds, stamp))
    if len(free):
        figures["capacity_allocation"] = _panels(best_rows(free, keys), plot_capacity_allocation, keys,
                                                 "Capacity allocation C_i (best seed per grid point)", stamp)
    if x:
        figures["capacity_vs_sparsity"] = _sparsity_figure(free, keys, x, thresholds, stamp)
    if "snap_capacity" in table and "snap_step" in table and len(held) + len(free):  # penalised first: their target is drawn
        shown = best_rows(held, list(dict.fromkeys(keys + ["capacity_target"]))) if len(held) else best_rows(free, keys)
        figures["capacity_over_training"] = _panels(shown, plot_capacity_over_training, keys,
                                                    "Capacity C_i over training (best seed)", stamp, count=4)
    return figures
