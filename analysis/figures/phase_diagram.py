"""Phase diagrams of polysemanticity over two swept axes (TMS n=2, m=1 and n=3, m=2).

Panels: the best-of-k phase of one feature, the fraction of seeds in superposition, and (for
n=2, m=1) the analytic boundaries and a loss-crossover panel through the diagram.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from analysis.figures.canvas import finish, panel_grid
from analysis.phases import PHASE_COLORS, PHASES, SUPERPOSED, PhaseThresholds
from analysis.seeds import summarize, with_phases
from analysis.theory import n2m1 as theory

# The axes a phase diagram can run over: the first two of them that the sweep varies.
DIAGRAM_AXES = ("importance_decay", "importance_last", "density", "lr", "weight_decay")
AXIS_LABELS = {
    "importance_decay": "relative importance r (I_i = r^i; for n=2 the second feature's)",
    "importance_last": "importance of the last feature (others 1)",
    "density": "feature density p = 1 − S",
    "lr": "learning rate",
    "weight_decay": "weight decay",
}


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around sorted grid values: geometric midpoints for positive values."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return (
            np.array([v[0] / 1.5, v[0] * 1.5]) if v[0] > 0 else np.array([v[0] - 0.5, v[0] + 0.5])
        )
    if np.all(v > 0):
        mid = np.sqrt(v[1:] * v[:-1])
        return np.concatenate([[v[0] ** 2 / mid[0]], mid, [v[-1] ** 2 / mid[-1]]])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def grid_of(summary: pd.DataFrame, x: str, y: str, column: str):
    """Pivot ``column`` onto the (y, x) grid."""
    pivot = (
        summary.pivot_table(index=y, columns=x, values=column, aggfunc="first")
        .sort_index()
        .sort_index(axis=1)
    )
    return pivot.columns.to_numpy(float), pivot.index.to_numpy(float), pivot.to_numpy(float)


def _setup_axes(ax, x: str, y: str, xs, ys) -> None:
    if np.all(xs > 0):
        ax.set_xscale("log")
    if np.all(ys > 0):
        ax.set_yscale("log")
    ax.set_xlabel(AXIS_LABELS.get(x, x))
    ax.set_ylabel(AXIS_LABELS.get(y, y))


def is_n2m1_diagram(table: pd.DataFrame, x: str, y: str) -> bool:
    return (
        (table["n_features"] == 2).all()
        and (table["n_hidden"] == 1).all()
        and {x, y} == {"importance_decay", "density"}
        and (table["model"] == "relu").all()
    )


def overlay_theory(ax, x: str, xs: np.ndarray) -> None:
    """Analytic n=2, m=1 boundaries (docs/science/n2m1.md) on axes (r, p) or (p, r)."""
    r = np.geomspace(
        xs.min() if x == "importance_decay" else 0.1,
        xs.max() if x == "importance_decay" else 10,
        400,
    )
    p = theory.superposition_boundary(r)
    r_tp, p_tp = theory.TRIPLE_POINT
    style = dict(color="k", lw=1.5, ls="--")
    if x == "importance_decay":
        ax.plot(r, p, **style, label="analytic boundaries")
        ax.plot([r_tp, r_tp], [p_tp, ax.get_ylim()[1]], **style)
        ax.plot([r_tp], [p_tp], "k*", ms=10, label="triple point (r=1, p=4/7)")
    else:
        ax.plot(p, r, **style, label="analytic boundaries")
        ax.plot([p_tp, ax.get_xlim()[1]], [r_tp, r_tp], **style)
        ax.plot([p_tp], [r_tp], "k*", ms=10, label="triple point (r=1, p=4/7)")


def agreement_with_theory(summary: pd.DataFrame, margin: float = 1.25) -> dict:
    """Cells whose best-of-k phase matches the analytic n=2, m=1 phase, counting only cells away
    from every boundary: p off the superposition boundary by more than a factor ``margin``, and r
    off 1 by more than that factor where the dedicated/not-learned boundary applies."""
    r = summary["importance_decay"].to_numpy(float)
    p = summary["density"].to_numpy(float)
    predicted = theory.predicted_phase(p, r)
    boundary = theory.superposition_boundary(r)
    near = (p > boundary / margin) & (p < boundary * margin)
    near |= (p > theory.TRIPLE_POINT[1] / margin) & (r > 1 / margin) & (r < margin)
    away = ~near
    agree = summary["phase_best"].to_numpy() == predicted
    return {
        "cells": int(away.sum()),
        "agree": int((agree & away).sum()),
        "fraction": float((agree & away).sum() / max(away.sum(), 1)),
        "all_cells": len(summary),
        "agree_all": int(agree.sum()),
    }


def plot_phase_diagram(
    table: pd.DataFrame,
    summary: pd.DataFrame,
    x: str,
    y: str,
    feature: int,
    thresholds: PhaseThresholds,
    stamp: str = "",
    crossover_at: float | None = None,
    target=None,
):
    theory_ok = is_n2m1_diagram(table, x, y)
    n_panels = 3 if theory_ok else 2
    canvas, (axes,) = panel_grid(target, 1, n_panels, (5.6 * n_panels, 5.0))
    xs, ys, phase = grid_of(summary, x, y, "phase_best")
    cmap = ListedColormap(PHASE_COLORS)

    ax = axes[0]
    ax.pcolormesh(_edges(xs), _edges(ys), phase, cmap=cmap, vmin=-0.5, vmax=2.5)
    _setup_axes(ax, x, y, xs, ys)
    ax.set_title(f"Phase of feature {feature + 1} (best of k seeds by loss)", fontsize=10)
    handles = [Patch(color=c, label=name) for c, name in zip(PHASE_COLORS, PHASES)]
    if theory_ok:
        overlay_theory(ax, x, xs)
        ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="lower left")
    else:
        ax.legend(handles=handles, fontsize=7, loc="lower left")

    ax = axes[1]
    _, _, frac = grid_of(summary, x, y, "frac_superposed")
    mesh = ax.pcolormesh(_edges(xs), _edges(ys), frac, cmap="magma", vmin=0, vmax=1)
    canvas.figure.colorbar(mesh, ax=ax, label="fraction of seeds")
    _setup_axes(ax, x, y, xs, ys)
    ax.set_title(f"Fraction of seeds with feature {feature + 1} superposed", fontsize=10)
    if theory_ok:
        overlay_theory(ax, x, xs)

    if theory_ok:
        plot_loss_crossover(axes[2], table, summary, x, y, thresholds, crossover_at)
    n, m = int(table["n_features"].iloc[0]), int(table["n_hidden"].iloc[0])
    title = (
        f"Phase diagram, n={n}, m={m}, {summary['n_seeds'].max()} seeds per cell. "
        + thresholds.describe()
    )
    return finish(canvas, stamp, title, fontsize=9, layout=(0, 0.02, 1, 0.94))


def diagram_axes(sweep) -> tuple[str, str] | None:
    """(x, y): the first two varying ``DIAGRAM_AXES`` of a sweep with one n, else None."""
    table = sweep.table
    varying = [a for a in sweep.axes if a in DIAGRAM_AXES and table[a].nunique() > 1]
    if len(varying) < 2 or table["n_features"].nunique() != 1:
        return None
    return varying[0], varying[1]


def _summary(sweep, feature: int | None, thresholds: PhaseThresholds):
    """(x, y, the feature drawn (default the last), its per-cell summary)."""
    axes = diagram_axes(sweep)
    assert axes is not None, "a phase diagram needs two varying axes (diagram_axes)"
    x, y = axes
    feature = int(sweep.table["n_features"].max()) - 1 if feature is None else feature
    return x, y, feature, summarize(sweep.table, [x, y], feature, thresholds)


def draw_phase_diagram(
    sweep,
    feature: int | None = None,
    thresholds: PhaseThresholds = PhaseThresholds(),
    crossover_at: float | None = None,
    target=None,
):
    """The phase diagram of ``feature`` (0-based, default the last) over the sweep's first two
    varying ``DIAGRAM_AXES``: the best-of-k seed's phase (not learned, dedicated, superposed) and the
    fraction of seeds in superposition; for n = 2, m = 1 over (r, p) also the analytic boundaries,
    the triple point and a loss-crossover panel, and the agreement with theory is printed."""
    x, y, feature, summary = _summary(sweep, feature, thresholds)
    return plot_phase_diagram(
        sweep.table, summary, x, y, feature, thresholds, sweep.stamp(), crossover_at, target=target
    )


def agreement_note(
    sweep, feature: int | None = None, thresholds: PhaseThresholds = PhaseThresholds(), **_
) -> dict:
    """``agreement_with_theory`` of an n=2, m=1 diagram over (r, p); nothing for another diagram."""
    x, y, feature, summary = _summary(sweep, feature, thresholds)
    return (
        {"agreement_with_theory": agreement_with_theory(summary)}
        if is_n2m1_diagram(sweep.table, x, y)
        else {}
    )


def plot_loss_crossover(
    ax,
    table: pd.DataFrame,
    summary: pd.DataFrame,
    x: str,
    y: str,
    thresholds: PhaseThresholds,
    r_target: float | None = None,
) -> None:
    """Along density at one relative importance r: the lowest loss among seeds that ended in
    superposition and among those that did not, against the closed-form losses of the three
    solutions. The branches cross at the transition (a first-order one: the minimum jumps)."""
    rs = np.sort(table["importance_decay"].unique())
    r = rs[np.argmin(np.abs(np.log(rs) - np.log(r_target or 0.5)))]
    line = with_phases(table[np.isclose(table["importance_decay"], r)], thresholds)
    line["_sup"] = [int(ph[1]) == SUPERPOSED for ph in line["phase"]]
    ps = np.sort(line["density"].unique())
    for flag, label, color in (
        (True, "trained, feature 2 superposed", PHASE_COLORS[2]),
        (False, "trained, not superposed", PHASE_COLORS[1]),
    ):
        best = line[line["_sup"] == flag].groupby("density")["loss"].min()
        ax.plot(best.index, best.to_numpy(), "o", color=color, ms=5, label=label)
    dense = np.geomspace(ps.min(), ps.max(), 300)
    losses = theory.solution_losses(dense, np.full_like(dense, r), reduction="mean")
    for (name, values), style in zip(losses.items(), ("-", "--", ":", "-.")):
        ax.plot(dense, values, style, color="k", lw=1, label=f"theory: {name.replace('_', ' ')}")
    ax.axvline(float(theory.superposition_boundary(r)), color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(AXIS_LABELS["density"])
    ax.set_ylabel("loss (importance-weighted MSE, mean over features)")
    ax.set_title(f"Loss crossover at r = {r:.3g}", fontsize=10)
    ax.legend(fontsize=7)
