"""How often Stochastic Parameter Decomposition recovers a toy model's features (docs/spd.md,
docs/results/spd.md). Reads an SPD sweep (``+spd=toy``): one row per decomposition, ``seed`` the
decomposition's, ``source_uid`` its toy model's, ``recovered`` whether every feature has its own
alive subcomponent of the right direction and length."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid
from toymodels.spd.anchors import PAPER_TABLE_1

# The paper's Table 1 ML2R range over its TMS rows (Bushnaq et al. 2025).
PAPER_ML2R = (0.99, 1.03)


def paper_row(rows: pd.DataFrame):
    """The paper's (ML2R mean, sd) for the target and size these decompositions share, or None."""
    keys = {
        (str(t), int(n), int(m))
        for t, n, m in zip(rows["target"], rows["toy_n_features"], rows["toy_n_hidden"])
    }
    if len(keys) != 1:
        return None
    row = PAPER_TABLE_1.get(keys.pop())
    return None if row is None else row[1]


def is_spd_sweep(sweep) -> bool:
    return sweep.config.get("spd") is not None


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a fraction k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _groups(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One group per decomposed target and setting (every column that varies among the SPD
    settings), the toy models within it apart."""
    settings = [
        c
        for c in (
            "target",
            "C",
            "steps",
            "batch_size",
            "lr",
            "minimality",
            "p",
            "faithfulness",
            "recon",
            "layerwise",
        )
        if c in table and table[c].nunique() > 1
    ]
    keys = ["target", *[c for c in settings if c != "target"]]
    out = []
    for values, rows in table.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        out.append(
            (
                ", ".join(str(v) if k == "target" else f"{k}={v:g}" for k, v in zip(keys, values)),
                rows,
            )
        )
    return out


def recovery_notes(sweep) -> dict:
    """The fraction of decompositions that recover every feature, per target and setting."""
    return {
        f"recovered ({name}, {len(rows)} decompositions)": round(float(rows["recovered"].mean()), 3)
        for name, rows in _groups(sweep.table)
    }


def plot_spd_recovery(table: pd.DataFrame, stamp: str = "", target=None):
    """Left: the fraction of decompositions that recover every feature, per toy model (95% Wilson
    intervals) and over all; middle: ML2R of every decomposition, recovered or not, beside the
    paper's range; right: the alive subcomponents at the first scored site."""
    canvas, axs = panel_grid(target, 1, 3, (15, 4.5))
    groups = _groups(table)
    colors = dict(zip([g for g, _ in groups], ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"] * 8))
    ax = axs[0, 0]
    ticks, labels = [], []
    x = 0
    for name, rows in groups:
        for uid, per in [*rows.groupby("source_uid", sort=True), ("all", rows)]:
            k, n = int(per["recovered"].sum()), len(per)
            lo, hi = wilson(k, n)
            ax.errorbar(
                [x],
                [k / n],
                yerr=[[k / n - lo], [hi - k / n]],
                fmt="o" if uid != "all" else "s",
                color=colors[name],
                ms=5 if uid != "all" else 7,
                capsize=3,
            )
            ticks.append(x)
            labels.append("all" if uid == "all" else f"toy {per['toy_seed'].iloc[0]}")
            x += 1
        x += 1
    ax.set_xticks(ticks, labels, rotation=60, fontsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fraction recovering every feature")
    ax.set_title("recovered, per toy model (95% interval)", fontsize=10)
    ax = axs[0, 1]
    bins = np.linspace(0, max(1.1, float(table["ml2r"].max()) + 0.02), 45)
    for name, rows in groups:
        ax.hist(rows["ml2r"], bins=bins, histtype="step", color=colors[name], label=f"{name}: all")
        recovered = rows.loc[rows["recovered"], "ml2r"]
        ax.hist(
            recovered,
            bins=bins,
            color=colors[name],
            alpha=0.35,
            label=f"{name}: recovered"
            + (f", {recovered.mean():.3f} ± {recovered.std():.3f}" if len(recovered) > 1 else ""),
        )
        paper = paper_row(rows)
        if paper is not None:
            # The paper's row for this target (mean ± sd over one decomposition's features), at
            # the top of the panel: where the recovered runs' mean lies against it is the claim.
            ax.errorbar(
                [paper[0]],
                [0.97],
                xerr=[[paper[1]], [paper[1]]],
                fmt="v",
                color=colors[name],
                capsize=3,
                transform=ax.get_xaxis_transform(),
                label=f"paper, {name}: {paper[0]:.3f} ± {paper[1]:.3f}",
            )
    ax.axvspan(*PAPER_ML2R, color="k", alpha=0.12, label="paper's Table 1, all TMS rows")
    ax.set_xlabel("ML2R (mean over features)")
    ax.set_ylabel("decompositions")
    ax.set_title("ML2R", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax = axs[0, 2]
    first = np.array([a[0] for a in table["n_alive"]])
    for (name, rows), offset in zip(groups, np.linspace(-0.3, 0.3, len(groups))):
        alive = np.array([a[0] for a in rows["n_alive"]])
        values, counts = np.unique(alive, return_counts=True)
        ax.bar(
            values + offset, counts, width=0.6 / max(len(groups), 1), color=colors[name], label=name
        )
    n = int(table["toy_n_features"].max())
    ax.axvline(n, color="k", ls=":", lw=1, label=f"n = {n} features")
    ax.set_xlabel(
        f"alive subcomponents at {str(table['scored'].iloc[0]).split(',')[0]} (importance > 0.1)"
    )
    ax.set_ylabel("decompositions")
    ax.set_title("alive subcomponents", fontsize=10)
    ax.set_xticks(np.unique(first))
    ax.legend(fontsize=7, frameon=False)
    title = (
        f"SPD of {table['source_uid'].nunique()} toy model(s) × {table['seed'].nunique()} decomposition seed(s): "
        f"{table['recovered'].mean():.2f} recover every feature"
    )
    return finish(canvas, stamp, title, layout=(0, 0.02, 1, 0.93))
