"""Figures of buying monosemanticity (``analysis.measures.monosemanticity``, against
``analysis.theory.monosemanticity``): the polysemantic share against
the loss it costs, one curve per intervention, and for the n = 2, m = 1 quadratic model the trained
capacity against μ beside the exact penalised optimum and its switch point μ_c."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid
from analysis.measures import monosemanticity as mono
from analysis.seeds import best_of_seeds
from analysis.theory import monosemanticity as theory
from analysis.theory.capacity import quadratic_loss
from sweeps.store import nested_array

SHORT = {
    "kurtosis": "K",
    "density": "p",
    "importance_last": "v₂/v₁",
    "mono_start": "start",
    "n_hidden": "m",
}


def _label(row: pd.Series, keys: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, (int, float, np.floating)) and not pd.isna(v) else str(v)

    return ", ".join(f"{SHORT.get(k, k)}={fmt(row[k])}" for k in keys if not _is_nan(row[k]))


def _is_nan(value) -> bool:
    return isinstance(value, (float, np.floating)) and np.isnan(value)


def _panel_keys(points: pd.DataFrame) -> list[str]:
    """Panels: one per model kind, and per kurtosis (density) when it varies."""
    keys = ["model"]
    for axis in ("kurtosis", "density"):
        if axis in points and points[axis].nunique() > 1:
            keys.append(axis)
            break
    return keys


def plot_polysemantic_vs_loss(table: pd.DataFrame, axes: list[str], stamp: str = "", target=None):
    """Polysemantic share of features (top) and, for privileged models, of live neurons (bottom)
    against the loss without penalty; one curve per intervention and setting of the other axes,
    along increasing strength (the first point annotated with its strength, the last too)."""
    points = mono.intervention_points(table, axes)
    panel_keys = _panel_keys(points)
    panels = list(points.groupby(panel_keys, sort=True))
    neurons = points["poly_neurons"].notna().any()
    rows = 2 if neurons else 1
    canvas, grid = panel_grid(target, rows, len(panels), (5.2 * len(panels), 4.3 * rows))
    for col, (key, panel) in enumerate(panels):
        others = [
            c
            for c in panel.columns
            if c
            not in (
                "intervention",
                "strength",
                "loss",
                "objective",
                "poly_features",
                "poly_neurons",
                *panel_keys,
                *mono.INTERVENTIONS,
                "density",
                "kurtosis",
            )
        ]
        curves = list(panel.groupby(["intervention", *others], dropna=False, sort=True))
        for k, (ckey, curve) in enumerate(curves):
            curve = curve.sort_values("strength", key=lambda s: s.astype(float).fillna(0.0).abs())
            name = mono.INTERVENTIONS[curve["intervention"].iloc[0]]
            setting = _label(curve.iloc[0], others)
            label = name + (f" ({setting})" if setting else "")
            style = ["o-", "s--", "^-.", "d:"][
                list(mono.INTERVENTIONS).index(curve["intervention"].iloc[0])
            ]
            for r, column in enumerate(["poly_features", "poly_neurons"][:rows]):
                ax = grid[r, col]
                ax.plot(
                    curve["loss"], curve[column], style, color=f"C{k % 10}", ms=4, lw=1, label=label
                )
                for idx in (0, len(curve) - 1):
                    strength = curve["strength"].iloc[idx]
                    text = "none" if _is_nan(strength) or strength is None else f"{strength:.3g}"
                    ax.annotate(
                        text,
                        (curve["loss"].iloc[idx], curve[column].iloc[idx]),
                        fontsize=6,
                        xytext=(3, 3),
                        textcoords="offset points",
                        color=f"C{k % 10}",
                    )
        title = _label(panel.iloc[0], panel_keys)
        for r, what in enumerate(["features (0.1 < C_i < 0.9)", "live neurons"][:rows]):
            ax = grid[r, col]
            if panel["loss"].max() > 10 * panel["loss"].min():
                ax.set_xscale("log")
            ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel("loss (penalty excluded)")
            ax.set_ylabel(f"polysemantic share of {what}")
            ax.set_title(title, fontsize=9)
        grid[0, col].legend(fontsize=6)
    return finish(
        canvas,
        stamp,
        "Buying monosemanticity: polysemantic share against loss, one curve per "
        "intervention (the others off), along increasing strength (first and last strength written). Best "
        "seed by the optimised objective (penalty included).",
        wrap=True,
        layout=(0, 0.02, 1, 0.93),
    )


def is_two_feature_quadratic(table: pd.DataFrame) -> bool:
    return bool(
        (table["model"] == "quadratic").all()
        and (table["n_features"] == 2).all()
        and (table["n_hidden"] == 1).all()
        and table["kurtosis"].notna().all()
    )


def switch_table(table: pd.DataFrame) -> pd.DataFrame:
    """Best seed (by objective) per (K, v₂/v₁, start, μ): trained C₁, loss, and the exact optimum."""
    ranked = table.assign(
        _objective=mono.objective(table),
        ratio=[float(v[1]) / float(v[0]) for v in table["feature_importance"]],
        C1=[float(next(iter(c))) for c in table["capacity"]],
        # the exact expected loss of the trained W and b: no evaluation noise, which
        # at K = 30 moves the sampled loss by several per cent
        exact_loss=[
            float(
                quadratic_loss(
                    nested_array(r["W"]),
                    nested_array(r["feature_importance"]),
                    r["kurtosis"],
                    float(nested_array(r["b"])[0]),
                )
            )
            for _, r in table.iterrows()
        ],
    )
    if "mono_start" not in ranked:
        ranked = ranked.assign(mono_start=0)
    keys = ["kurtosis", "ratio", "mono_start", "mono_penalty"]
    best = best_of_seeds(ranked, keys, loss="_objective")
    optimum = np.array(
        [
            theory.penalised_optimum(r, K, mu)
            for r, K, mu in zip(best["ratio"], best["kurtosis"], best["mono_penalty"])
        ]
    )
    # At v₂ = v₁ the features are interchangeable: C₁ and 1 − C₁ are the same optimum.
    mirrored = np.isclose(best["ratio"], 1.0) & (
        np.abs(best["C1"] - (1 - optimum)) < np.abs(best["C1"] - optimum)
    )
    return best.assign(theory_C1=np.where(mirrored, 1 - optimum, optimum))


def plot_mono_switch(table: pd.DataFrame, stamp: str = "", target=None):
    """n = 2, m = 1 quadratic: trained C₁ (top) and exact expected loss relative to the unpenalised
    optimum (bottom) against μ, per kurtosis (panels) and importance ratio (colours); solid markers from
    scratch, open ones fine-tuned; lines: the exact penalised optimum, μ_c dashed, the bistable
    window shaded."""
    best = switch_table(table)
    Ks = sorted(best["kurtosis"].unique())
    canvas, grid = panel_grid(target, 2, len(Ks), (5.0 * len(Ks), 7.6))
    mus = np.geomspace(best["mono_penalty"].min(), best["mono_penalty"].max(), 120)
    starts = sorted(best["mono_start"].unique())
    for col, K in enumerate(Ks):
        top, bottom = grid[0, col], grid[1, col]
        for k, (ratio, group) in enumerate(best[np.isclose(best["kurtosis"], K)].groupby("ratio")):
            color = f"C{k}"
            L0 = float(np.min(theory.held_loss(theory.INTERIOR_C, ratio, K)))
            theory_C = [theory.penalised_optimum(ratio, K, mu) for mu in mus]
            top.plot(mus, theory_C, "-", color=color, lw=1.2, alpha=0.7)
            theory_loss = [float(theory.held_loss(c, ratio, K)) / L0 for c in theory_C]
            bottom.plot(mus, theory_loss, "-", color=color, lw=1.2, alpha=0.7)
            mu_c = theory.switch_point(ratio, K)
            lower, upper = theory.bistable_window(ratio, K)
            for ax in (top, bottom):
                if mu_c > 0:
                    ax.axvline(mu_c, color=color, ls="--", lw=0.8)
                if upper > lower:
                    ax.axvspan(lower, upper, color=color, alpha=0.1)
            for s, start in enumerate(starts):
                line = group[group["mono_start"] == start].sort_values("mono_penalty")
                kw = dict(color=color, ms=4, mfc=color if s == 0 else "none", lw=0)
                label = (
                    f"v₂/v₁={ratio:.2g}"
                    + (f", start {int(start)}" if len(starts) > 1 else "")
                    + (f", μ_c={mu_c:.3g}" if s == 0 and mu_c > 0 else "")
                )
                top.plot(line["mono_penalty"], line["C1"], "o", label=label, **kw)
                bottom.plot(line["mono_penalty"], line["exact_loss"] / L0, "o", **kw)
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_xlabel("μ")
        bottom.set_yscale("log")
        top.set_ylabel("trained C₁ (1: monosemantic)")
        bottom.set_ylabel("exact loss (penalty excluded) / unpenalised optimum")
        top.set_title(f"K = {K:.3g}", fontsize=10)
        top.legend(fontsize=6)
    return finish(
        canvas,
        stamp,
        "μ·Σ C(1−C) on the quadratic model, n=2, m=1: best seed by objective; filled "
        "from scratch, open fine-tuned. Lines: exact penalised optimum; dashed: switch point μ_c; shaded: "
        "both the corner and an interior optimum are local minima.",
        wrap=True,
        layout=(0, 0.02, 1, 0.93),
    )


def has_mono_penalty(sweep) -> bool:
    """A sweep over ``train.mono_penalty`` (``mono_vs_loss``; ``mono_switch`` too for the
    two-feature quadratic model)."""
    return "mono_penalty" in sweep.axes and "mono_penalty" in sweep.table
