"""Figures of compressed computation (``model.kind=cc_residual``; docs/science/compressed-computation.md):
the trained models' loss against the naive baseline as a function of p (``cc_advantage``) and against
the size of the label mixing, with and without it (``cc_mixing``), with the p → 0 theory
(``analysis.theory.compressed``) and the published numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid
from analysis.measures.compressed import is_cc, measure_table, seed_summary
from analysis.stored_sweep import per_sweep

LABEL_COLORS = {"embed": "C0", "clean": "0.15", "mixing": "C3"}
LABEL_NAMES = {
    "embed": "embed: y = x + ReLU(x) (the papers; mixing M − I in the labels)",
    "clean": "clean: no mixing in the labels",
    "mixing": "mixing: random symmetric S, ‖S‖ = ‖M − I‖",
}
STYLES = (
    ("-", "o"),
    ("--", "s"),
    (":", "^"),
    ("-.", "D"),
)  # line style and marker per n/m, layers, param
# Bhagat et al. (arXiv 2606.14673; LessWrong, June 2025), read off their figures: n = 100, m = 50,
# d = 1,000, trained at p = 0.01 (their Figure 2 left): L/p of the embedding-like labels and of clean labels.
PUBLISHED = {"embed": 0.064, "clean": 0.0833}
PUBLISHED_SETTING = {"n_features": 100, "n_hidden": 50, "d_embed": 1000, "density": 0.01}


def is_cc_sweep(sweep) -> bool:
    return bool(is_cc(sweep.table).any())


def has_mixing_axis(sweep) -> bool:
    axes = [a for a in ("labels", "d_embed") if a in sweep.axes and sweep.table[a].nunique() > 1]
    return is_cc_sweep(sweep) and bool(axes)


@per_sweep
def measured(sweep) -> pd.DataFrame:
    return measure_table(sweep.table)


def cc_inputs(sweep) -> tuple:
    return measured(sweep), sweep.stamp()


def _variants(measured: pd.DataFrame) -> list[str]:
    """The static settings that differ between the sweep's models, besides p."""
    return [
        k
        for k in ("labels", "layers", "d_embed", "n_over_m", "param", "n_features")
        if k in measured and measured[k].nunique() > 1
    ]


def _label(keys: list[str], values) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return (
        ", ".join(
            f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
            for k, v in zip(keys, values)
        )
        or "trained"
    )


def plot_cc_advantage(measured: pd.DataFrame, stamp: str = "", target=None):
    """Left: loss per feature L/p against p (seed mean, band: min to max), each variant's naive
    baseline on its own labels (dashed) and without mixing (dotted, (n − m)/n · 1/6), the p → 0
    bound (triangle at the left edge) and Bhagat et al.'s published values. Right: L / naive."""
    keys = _variants(measured)
    groups = list(measured.groupby(keys, sort=True)) if keys else [((), measured)]
    canvas, grid = panel_grid(target, 1, 2, (14, 5.2))
    left, right = grid[0]
    p_min = measured["density"].min()
    for k, (values, rows) in enumerate(groups):
        color = (
            LABEL_COLORS.get(rows["labels"].iloc[0], f"C{k}")
            if keys == ["labels"]
            else f"C{k % 10}"
        )
        s = seed_summary(rows, ["density"]).sort_values("density")
        name = _label(keys, values)
        for ax, column, naive in ((left, "loss_per_p", "naive"), (right, "ratio", None)):
            ax.plot(s["density"], s[f"{column}_mean"], "o-", color=color, ms=4, lw=1.2, label=name)
            ax.fill_between(
                s["density"],
                s[f"{column}_min"],
                rows.groupby("density")[column].max().sort_index(),
                color=color,
                alpha=0.15,
                lw=0,
            )
        left.plot(s["density"], s["naive"] / s["density"], "--_", color=color, lw=1, ms=14)
        left.plot([p_min * 0.6], [s["p0_bound"].iloc[0]], ">", color=color, ms=7, mfc="none")
        right.plot([p_min * 0.6], [s["bound_ratio"].iloc[0]], ">", color=color, ms=7, mfc="none")
    n, m = int(measured["n_features"].iloc[0]), int(measured["n_hidden"].iloc[0])
    if measured["n_over_m"].nunique() == 1:
        left.axhline(
            (n - m) / n / 6.0,
            color="k",
            ls=":",
            lw=1,
            label=f"naive without mixing, (n−m)/n·1/6 = {(n - m) / n / 6:.4f}",
        )
    published = measured
    for key, value in PUBLISHED_SETTING.items():
        published = published[np.isclose(published[key], value)]
    for labels, value in PUBLISHED.items():
        if (published["labels"] == labels).any():
            left.plot(
                [0.01],
                [value],
                "*",
                color=LABEL_COLORS[labels],
                ms=13,
                mec="k",
                label=f"Bhagat et al., {labels} labels (read off their figure): {value}",
            )
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("feature probability p")
        ax.grid(alpha=0.3)
    left.set_yscale("log")
    left.set_ylabel("loss per feature L/p (eval)")
    right.axhline(1.0, color="k", lw=0.8)
    right.set_ylabel("L / naive baseline on the same labels (exact)")
    left.legend(fontsize=6, loc="best")
    return finish(
        canvas,
        stamp,
        f"Compressed computation (cc_residual, n={n}, m={m}): trained loss against the "
        "naive baseline (one neuron per feature, the rest ignored; dashed: on each model's labels, exact). "
        "Triangles: the p → 0 Eckart–Young bound no bias-free residual MLP can beat. "
        f"{measured['seed'].nunique()} seed(s): line the mean, band min to max.",
        wrap=True,
        layout=(0, 0.02, 1, 1),
    )


def plot_cc_mixing(measured: pd.DataFrame, stamp: str = "", target=None):
    """Columns: p. Top row: L / naive on the model's own labels; bottom: L / naive without
    mixing ((n − m)/n · p/6, Bhagat et al.'s reference). Against the mixing size ‖M − I‖_F/√n
    (≈ √(n/d)): embed, clean and mixing labels by colour, n/m, layers and parameterisation (those
    that vary) by line style; seed mean ± standard deviation; thin lines the p → 0 bound of the
    embed and mixing labels, thick pale ones the best one-layer p → 0 solution found."""
    densities = sorted(measured["density"].unique())
    variants = [k for k in ("n_over_m", "layers", "param") if measured[k].nunique() > 1]
    combos = (
        sorted({tuple(row) for row in measured[variants].itertuples(index=False)})
        if variants
        else [()]
    )
    styles = {combo: STYLES[i % len(STYLES)] for i, combo in enumerate(combos)}
    canvas, grid = panel_grid(
        target, 2, len(densities), (max(11.0, 3.3 * len(densities) + 1), 7.6), sharey="row"
    )
    for c, p in enumerate(densities):
        rows = measured[np.isclose(measured["density"], p)]
        keys = ["labels"] + variants
        for values, group in rows.groupby(keys, sort=True):
            setting = dict(zip(keys, values))
            labels, ratio_nm = setting["labels"], float(group["n_over_m"].iloc[0])
            s = seed_summary(group, ["mixing_size"]).sort_values("mixing_size")
            ls, marker = styles[tuple(setting[k] for k in variants)]
            color = LABEL_COLORS.get(labels, "C7")
            name = _label(keys, tuple(setting[k] for k in keys))
            for r, column in enumerate(("ratio", "ratio_clean")):
                ax = grid[r, c]
                ax.errorbar(
                    s["mixing_size"],
                    s[f"{column}_mean"],
                    yerr=s[f"{column}_std"],
                    fmt=marker + ls,
                    color=color,
                    ms=3.5,
                    lw=1,
                    capsize=2,
                    label=name,
                )
                if labels != "clean":
                    clean_p0 = (1.0 - 1.0 / ratio_nm) / 6.0
                    bound = s["bound_ratio"] if column == "ratio" else s["p0_bound"] / clean_p0
                    ax.plot(s["mixing_size"], bound, ls, color=color, lw=0.6, alpha=0.6)
                    opt = s["opt_ratio"] if column == "ratio" else s["p0_opt"] / clean_p0
                    if np.isfinite(opt).any():
                        ax.plot(s["mixing_size"], opt, ls, color=color, lw=2.5, alpha=0.2)
        for r in range(2):
            ax = grid[r, c]
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(f"p = {p:g}", fontsize=9)
            else:
                ax.set_xlabel("mixing size ‖M − I‖_F/√n (≈ √(n/d))", fontsize=8)
    grid[0, 0].set_ylabel("L / naive on the same labels", fontsize=8)
    grid[1, 0].set_ylabel("L / naive without mixing, (n−m)/n·p/6", fontsize=8)
    grid[0, -1].legend(fontsize=6)
    n = int(measured["n_features"].iloc[0])
    seeds = measured["seed"].nunique()
    return finish(
        canvas,
        stamp,
        f"Where the compressed-computation advantage comes from (n={n}): loss relative to the "
        "naive baseline against the size of the label mixing. embed: the papers' labels (mixing M − I = "
        "W_E W_Eᵀ − I); clean: none; mixing: a random symmetric S of the same size. Below 1: better than "
        f"naive. Mean ± sd over {seeds} seed(s), {len(measured):,} models; thin lines: the p → 0 bound (no model goes below it as "
        "p → 0; without mixing it is 1).",
        wrap=True,
        layout=(0, 0.02, 1, 1),
    )


def mixing_notes(sweep) -> dict:
    """Per label construction, the lowest and highest seed-mean L / naive without mixing at the
    sparsest p; the lowest p at which clean labels beat the naive baseline by 2% (NaN: never)."""
    m = measured(sweep)
    out = {}
    p_min = m["density"].min()
    sparse = m[np.isclose(m["density"], p_min)]
    for labels, rows in sparse.groupby("labels"):
        means = rows.groupby(["mixing_size", "n_over_m"])["ratio_clean"].mean()
        out[f"cc_{labels}_min_ratio_clean_at_p{p_min:g}"] = round(float(means.min()), 4)
        out[f"cc_{labels}_max_ratio_clean_at_p{p_min:g}"] = round(float(means.max()), 4)
    clean = m[m["labels"] == "clean"]
    if not clean.empty:
        means = clean.groupby("density")["ratio"].mean()
        beating = means[means < 0.98]
        out["cc_clean_beats_naive_from_p"] = (
            float(beating.index.min()) if len(beating) else float("nan")
        )
    return out


def advantage_notes(sweep) -> dict:
    m = measured(sweep)
    keys = ["density"] + _variants(m)
    s = m.groupby(keys)["ratio"].mean()
    return {"cc_best_ratio": round(float(s.min()), 4), "cc_worst_ratio": round(float(s.max()), 4)}
