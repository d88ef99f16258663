"""Capacity figures of Scherlis et al. (docs/science/index.md, docs/science/metrics.md,
docs/science/capacity.md) from a stored sweep's table.

Rows are trained models. Columns used: ``model``, ``seed``, ``loss`` (eval loss without the
penalty), ``capacity`` (C_i), ``feature_importance`` (v_i), ``W`` (m×n), ``capacity_feature``
(−1: no penalty), ``capacity_target``, ``kurtosis`` (input K, NaN for other data), ``density``,
``snap_step`` and ``snap_capacity``, plus whichever grid axes the sweep has. Every figure uses
best-of-seeds by loss (docs/science/models.md) and states the capacity thresholds it classifies with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, ScalarFormatter

from analysis.figures.canvas import FULL, finish, panel_grid, single_panel
from analysis.figures.capacity_phase import plot_capacity_phase
from analysis.figures.panels import importance_colors
from analysis.figures.phase_diagram import _edges, grid_of
from analysis.seeds import best_of_seeds, evenly_spaced
from analysis.stored_sweep import as_array
from analysis.theory import capacity as ct

# The finite-difference marginal benefit changes by more than this fraction of its mean size
# across the held capacities before a curve counts as increasing or decreasing.
SHAPE_TOLERANCE = 0.1
# Achieved capacities closer than this are one point (the lower loss is kept).
MERGE_CAPACITY = 1e-3
THRESHOLDS = ct.CapacityThresholds()
ANALYTIC_KIND = "quadratic"  # the model kind analysis.theory.capacity solves in closed form
SHORT_NAMES = {
    "kurtosis": "K",
    "density": "p",
    "importance_last": "v_last",
    "capacity_target": "C target",
}
SPARSITY_LABELS = {"kurtosis": "input kurtosis K", "density": "feature density p"}


def _hidden_dims(row: pd.Series) -> int:
    return len(list(row["W"]))


def _penalised(table: pd.DataFrame) -> pd.Series:
    if "capacity_feature" not in table:
        return pd.Series(False, index=table.index)
    return table["capacity_feature"].astype(int) >= 0


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


def empirical_marginal_benefit(
    table: pd.DataFrame, group_by: list[str], tolerance: float = SHAPE_TOLERANCE
) -> pd.DataFrame:
    """Per group of penalised models: best-of-seeds loss against the achieved capacity of the held
    feature, −dL/dC and the curve's shape. −dL/dC is each model's own ``penalty_marginal_benefit``
    (2λ(C − target), the penalty's pull at its minimum) when stored, which needs no differences
    between noisy neighbours; else finite differences (``np.gradient``, second order on the uneven
    grid), also returned as ``fd_marginal_benefit``. ``loss`` is the whole model's loss, so −dL/dC is the held feature's
    marginal benefit minus what the capacity it takes costs the others (zero only if the budget
    does not bind). For the n=2, m=1 quadratic model the exact held curve
    (``analysis.theory.capacity.held_loss_two_features``) reads increasing for K < 3 and decreasing inside
    the polysemantic region, but either way for K > 3 outside it: there the shape tests no prediction of
    docs/science/capacity.md
    claim."""
    held = table[_penalised(table)]
    rows = []
    for key, group in held.groupby(group_by, dropna=False, sort=True) if group_by else [((), held)]:
        best = best_of_seeds(group, ["capacity_target"])
        C = np.array(
            [as_array(r["capacity"])[int(r["capacity_feature"])] for _, r in best.iterrows()]
        )
        order = np.argsort(C, kind="stable")
        C, loss = C[order], best["loss"].to_numpy(float)[order]
        pulled = (
            best["penalty_marginal_benefit"].to_numpy(float)[order]
            if "penalty_marginal_benefit" in best
            else np.full_like(C, np.nan)
        )
        keep = np.concatenate([[True], np.diff(C) > MERGE_CAPACITY])
        C, loss, pulled = C[keep], np.minimum.reduceat(loss, np.flatnonzero(keep)), pulled[keep]
        fd = -np.gradient(loss, C) if len(C) >= 2 else np.full_like(C, np.nan)
        mb = pulled if np.isfinite(pulled).all() else fd
        first = best.iloc[0]
        feature = int(first["capacity_feature"])
        rows.append(
            {
                **dict(zip(group_by, key if isinstance(key, tuple) else (key,))),
                "capacity_feature": feature,
                "importance": as_array(first["feature_importance"])[feature],
                "importance_F": as_array(first["feature_importance"]),
                "kurtosis": float(first.get("kurtosis", np.nan)),
                "n_hidden": _hidden_dims(first),
                "model_kind": first["model"],
                "capacity": C,
                "loss": loss,
                "marginal_benefit": mb,
                "fd_marginal_benefit": fd,
                "n_points": len(C),
                "shape": curve_shape_of(C, mb, tolerance),
            }
        )
    return pd.DataFrame(rows)


def shared_marginal_benefit(
    row: pd.Series, K: float | None = None, thresholds: ct.CapacityThresholds = THRESHOLDS
) -> dict:
    """Analytic marginal benefit (docs/science/capacity.md) of each polysemantic feature of a trained
    quadratic model at its trained C_i; at an optimum they are equal (docs/science/metrics.md), so
    ``spread`` = max/min should be near 1 (NaN with fewer than two such features)."""
    K = float(row["kurtosis"]) if K is None else float(K)
    C_F = as_array(row["capacity"])
    partial = np.flatnonzero(
        ct.classify_capacity(C_F, thresholds.mono, thresholds.ignored) == ct.POLYSEMANTIC
    )
    mb = ct.marginal_benefit(C_F[partial], as_array(row["feature_importance"])[partial], K)
    spread = float(mb.max() / mb.min()) if len(mb) >= 2 and mb.min() > 0 else np.nan
    return {"features": partial, "capacity": C_F[partial], "marginal_benefit": mb, "spread": spread}


def analytic_held_curve(curve: pd.Series, C: np.ndarray) -> dict[str, np.ndarray]:
    """Quadratic-model lines for one empirical curve: the held feature's own marginal benefit
    (the relaxation of docs/science/capacity.md) and, for n = 2, m = 1, −dL/dC of the exact
    held-capacity loss."""
    K, v_F, f = curve["kurtosis"], curve["importance_F"], curve["capacity_feature"]
    lines = {"own": ct.marginal_benefit(C, v_F[f], K)}
    if len(v_F) == 2 and curve["n_hidden"] == 1:
        loss = ct.held_loss_two_features(C, v_F[1 - f] / v_F[f], K, v1=v_F[f])
        lines["loss"], lines["exact"] = loss, -np.gradient(loss, C)
    return lines


def plot_marginal_benefit(table: pd.DataFrame, group_by: list[str], stamp: str = "", target=None):
    """Top: best-of-seeds loss against the held feature's achieved capacity; bottom: −dL/dC.
    One column per model kind, one colour per group; quadratic models get analytic lines."""
    curves = empirical_marginal_benefit(table, group_by)
    kinds = list(dict.fromkeys(curves["model_kind"]))
    canvas, grid = panel_grid(target, 2, len(kinds), (5.2 * len(kinds), 7.6))
    for col, kind in enumerate(kinds):
        top, bottom = grid[0, col], grid[1, col]
        for k, (_, curve) in enumerate(curves[curves["model_kind"] == kind].iterrows()):
            color = f"C{k % 10}"
            label = _label(curve, group_by) + f" [{curve['shape']}]"
            top.plot(curve["capacity"], curve["loss"], "o", color=color, ms=4, label=label)
            bottom.plot(
                curve["capacity"], curve["marginal_benefit"], "o-", color=color, ms=4, lw=0.8
            )
            if kind == ANALYTIC_KIND and np.isfinite(curve["kurtosis"]):
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
    title = (
        "Marginal benefit of capacity. Points: trained models.\nQuadratic lines: exact held optimum (n=2, "
        "m=1; solid), held feature's own relaxed benefit 2(K−1)²v²/(2+(K−3)C)² (dotted)"
    )
    return finish(canvas, stamp, title, fontsize=9, wrap=True, layout=(0, 0.02, 1, 0.95))


def _sparsity_axis(table: pd.DataFrame, axes: list[str]) -> str | None:
    """The swept one of kurtosis and density, else whichever of them varies."""
    varies = [
        a
        for a in ("kurtosis", "density")
        if a in table and table[a].notna().all() and table[a].nunique() > 1
    ]
    swept = [a for a in varies if a in axes]
    return next(iter(swept or varies), None)


def _log_axis(ax, which: str = "x") -> None:
    """Log scale with plain tick labels (grids span a decade or two)."""
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def plot_polysemanticity_phase(
    ax, table: pd.DataFrame, x: str, thresholds: ct.CapacityThresholds = THRESHOLDS
) -> None:
    """Class of the second feature (ignored / polysemantic / monosemantic) of the best seed of
    two-feature models over (``x`` = kurtosis or density) × importance ratio v₂/v₁, with the
    analytic boundaries of the quadratic model (docs/science/capacity.md) when ``table`` holds it."""
    cells = table.assign(
        _ratio=[
            as_array(r["feature_importance"])[1] / as_array(r["feature_importance"])[0]
            for _, r in table.iterrows()
        ]
    )
    best = best_of_seeds(cells, [x, "_ratio"])
    best = best.assign(
        _class=[
            int(
                ct.classify_capacity(
                    as_array(r["capacity"])[1], thresholds.mono, thresholds.ignored
                )
            )
            for _, r in best.iterrows()
        ]
    )
    xs, ys, classes = grid_of(best, x, "_ratio", "_class")
    ax.pcolormesh(
        _edges(xs),
        _edges(ys),
        classes,
        cmap=ListedColormap(ct.CAPACITY_COLORS),
        vmin=-0.5,
        vmax=2.5,
    )
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    K_u = (table["kurtosis"] * table["density"]).to_numpy(float)  # the magnitude's kurtosis
    if (table["model"] == ANALYTIC_KIND).all() and np.isfinite(K_u).all() and np.ptp(K_u) < 1e-9:
        fine = np.geomspace(xs.min(), xs.max(), 300)
        lower, upper = ct.polysemantic_boundary(fine if x == "kurtosis" else K_u[0] / fine)
        ax.plot(fine, lower, "k--", lw=1.5, label="analytic boundary (quadratic)")
        ax.plot(fine, upper, "k--", lw=1.5)
    handles = [
        Patch(color=c, label=f"feature 2 {name}")
        for c, name in zip(ct.CAPACITY_COLORS, ct.CAPACITY_CLASSES)
    ]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="lower left")
    ax.set_xlabel(SPARSITY_LABELS[x])
    ax.set_ylabel("importance ratio v₂/v₁")


def plot_capacity_allocation(ax, row: pd.Series, label: str = "") -> None:
    """Trained C_i per feature (bars, coloured by importance) against the analytic optimal
    allocation of the quadratic model (markers), with Σ C_i against m."""
    C_F, v_F, m = as_array(row["capacity"]), as_array(row["feature_importance"]), _hidden_dims(row)
    ax.bar(np.arange(len(C_F)), C_F, color=importance_colors(v_F), width=0.8)
    title = f"{row['model']} {label}\nΣC={C_F.sum():.2f} (m={m})"
    if row["model"] == ANALYTIC_KIND and np.isfinite(row.get("kurtosis", np.nan)):
        optimum, _ = ct.optimal_allocation(v_F, float(row["kurtosis"]), m)
        ax.plot(np.arange(len(C_F)), optimum, "k_", ms=14, mew=2, label="analytic optimum")
        title += f", analytic ΣC={optimum.sum():.2f}"
        ax.legend(fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(np.arange(len(C_F)) if len(C_F) <= 12 else [])
    ax.set_xlabel("feature i")
    ax.set_ylabel("capacity C_i")
    ax.set_title(title, fontsize=8)


def polysemantic_fraction(
    table: pd.DataFrame, keys: list[str], x: str, thresholds: ct.CapacityThresholds = THRESHOLDS
) -> pd.DataFrame:
    """Fraction of polysemantic features of the best seed per grid point (``keys``), averaged
    over the grid points sharing a model kind and ``x``."""
    best = best_of_seeds(table, keys)
    best["poly_fraction"] = [
        np.mean(
            ct.classify_capacity(as_array(r["capacity"]), thresholds.mono, thresholds.ignored)
            == ct.POLYSEMANTIC
        )
        for _, r in best.iterrows()
    ]
    return best.groupby(["model", x], sort=True)["poly_fraction"].mean().reset_index()


def plot_polysemanticity_vs_sparsity(
    ax, table: pd.DataFrame, keys: list[str], x: str, thresholds: ct.CapacityThresholds = THRESHOLDS
) -> None:
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
    steps = as_array(row["snap_step"])
    C_SxF = as_array(row["snap_capacity"])
    held = int(row.get("capacity_feature", -1))
    for i, color in enumerate(importance_colors(as_array(row["feature_importance"]))):
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
        parts.append(
            f"{SHORT_NAMES.get(k, k)}={value:.3g}" if isinstance(value, float) else f"{k}={value}"
        )
    return ", ".join(parts)


def _panels(
    best: pd.DataFrame, draw, keys: list[str], title: str, stamp: str, count: int = 6, target=None
):
    pick = best.iloc[evenly_spaced(len(best), count)]
    canvas, grid = panel_grid(target, 1, len(pick), (3.8 * len(pick), 3.8))
    for ax, (_, row) in zip(grid[0], pick.iterrows()):
        draw(ax, row, _label(row, keys))
    return finish(canvas, stamp, title, fontsize=9, wrap=True, layout=(0, 0.02, 1, 0.92))


def _phase_figure(
    two: pd.DataFrame, x: str, thresholds: ct.CapacityThresholds, stamp: str, target=None
):
    kinds = list(dict.fromkeys(two["model"]))
    canvas, grid = panel_grid(target, 1, len(kinds), (5.4 * len(kinds), 4.8))
    for ax, kind in zip(grid[0], kinds):
        plot_polysemanticity_phase(ax, two[two["model"] == kind], x, thresholds)
        ax.set_title(f"{kind}: class of feature 2 (best of seeds)", fontsize=10)
    title = "Polysemanticity phase diagram, n=2. " + thresholds.describe()
    return finish(canvas, stamp, title, fontsize=9, wrap=True, layout=(0, 0.02, 1, 0.93))


def _sparsity_figure(
    free: pd.DataFrame,
    keys: list[str],
    x: str,
    thresholds: ct.CapacityThresholds,
    stamp: str,
    target=None,
):
    canvas, ax = single_panel(target, (6.4, 4.4))
    plot_polysemanticity_vs_sparsity(ax, free, keys, x, thresholds)
    ax.set_title(
        "Polysemanticity vs sparsity across architectures (best seed per grid point)\n"
        + thresholds.describe(),
        fontsize=9,
    )
    return finish(canvas, stamp, layout=FULL)


def is_capacity_sweep(sweep) -> bool:
    """The capacity figures' sweeps: the quadratic model, a held capacity, or kurtosis data."""
    table = sweep.table
    kurtosis_data = "data_kind" in table and (table["data_kind"] == "kurtosis").any()
    return bool(
        (table["model"] == ANALYTIC_KIND).any() or "capacity_target" in sweep.axes or kurtosis_data
    )


@dataclass(frozen=True)
class Parts:
    """A capacity sweep split the way its figures read it: grid ``keys`` (model first), ``held``
    (penalised) and ``free`` models, the sparsity axis ``x`` of the free ones, and ``two``: the
    free two-feature models with their distinct importance vectors ``ratios``."""

    keys: list
    held: pd.DataFrame
    free: pd.DataFrame
    x: str | None
    two: pd.DataFrame
    ratios: set


def parts(sweep) -> Parts:
    table = sweep.table
    keys = ["model"] + [a for a in sweep.axes if a in table and a not in ("model", "seed")]
    held, free = table[_penalised(table)], table[~_penalised(table)]
    if "mono_penalty" in free:  # a monosemanticity term changes the optimum: not the free model's
        free = free[free["mono_penalty"] == 0]
    x = _sparsity_axis(free, sweep.axes) if len(free) else None
    two = free[[len(list(c)) == 2 for c in free["capacity"]]] if len(free) else free
    ratios = {tuple(np.round(as_array(r["feature_importance"]), 12)) for _, r in two.iterrows()}
    return Parts(keys, held, free, x, two, ratios)


def has_marginal_benefit(sweep) -> bool:
    held = parts(sweep).held
    return bool(len(held) and held["capacity_target"].nunique() >= 3)


def has_phase_diagram(sweep) -> bool:
    p = parts(sweep)
    return bool(p.x and len(p.ratios) > 1)


def draw_marginal_benefit(sweep, target=None):
    """The loss against the held feature's achieved capacity C and its marginal benefit −dL/dC (the
    penalty's pull), with the exact held curve for the n = 2, m = 1 quadratic model and the
    per-feature benefit; the curve's shape (increasing / flat / decreasing) in the legend."""
    p = parts(sweep)
    return plot_marginal_benefit(
        p.held, [k for k in p.keys if k != "capacity_target"], sweep.stamp(), target=target
    )


def draw_phase_diagram(sweep, capacity_thresholds: ct.CapacityThresholds = THRESHOLDS, target=None):
    """The quadratic model over kurtosis: the trained C₂ as a continuous map beside the analytic
    optimum's C₂ over K × v₂/v₁, the boundary 2/(K−1) < v₂/v₁ < (K−1)/2 on both, the degenerate K = 1
    cells hatched and six marked points with their marginal-benefit curves (``capacity_phase``);
    other models: feature 2's class (C ≥ 0.9 / between / C ≤ 0.1) over the sparsity axis."""
    p = parts(sweep)
    if (p.two["model"] == ANALYTIC_KIND).all() and p.two["kurtosis"].notna().all():
        return plot_capacity_phase(p.two, sweep.stamp(), target=target)
    assert p.x is not None, "the figure applies to a sweep with a sparsity axis (has_phase_diagram)"
    return _phase_figure(p.two, p.x, capacity_thresholds, sweep.stamp(), target=target)


def draw_allocation(sweep, target=None):
    """Each feature's trained C_i (best seed per grid point) against the analytic optimal allocation
    (equal marginal benefit, Σ C_i ≤ m)."""
    p = parts(sweep)
    return _panels(
        best_of_seeds(p.free, p.keys),
        plot_capacity_allocation,
        p.keys,
        "Capacity allocation C_i (best seed per grid point)",
        sweep.stamp(),
        target=target,
    )


def draw_vs_sparsity(sweep, capacity_thresholds: ct.CapacityThresholds = THRESHOLDS, target=None):
    """The fraction of polysemantic features (capacity between the thresholds) against density or
    kurtosis, one line per model kind."""
    p = parts(sweep)
    assert p.x is not None, "the figure applies to a sweep with a sparsity axis (catalog)"
    return _sparsity_figure(p.free, p.keys, p.x, capacity_thresholds, sweep.stamp(), target=target)


def draw_over_training(sweep, target=None):
    """C_i(t) of the best seeds, penalised models first (their target is drawn)."""
    p = parts(sweep)
    shown = (
        best_of_seeds(p.held, list(dict.fromkeys(p.keys + ["capacity_target"])))
        if len(p.held)
        else best_of_seeds(p.free, p.keys)
    )
    return _panels(
        shown,
        plot_capacity_over_training,
        p.keys,
        "Capacity C_i over training (best seed)",
        sweep.stamp(),
        count=4,
        target=target,
    )
