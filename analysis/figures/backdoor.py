"""Figures of backdoor detection (issue 17 item 1) from DIR/backdoor.parquet, which
``toymodels-backdoor`` writes (``sweeps.backdoor.evaluate``, ``sweeps.backdoor.detect``): detectors that see
only hidden vectors h = W x and a trusted set D with the backdoor off.

Every AUROC and TPR is over models whose backdoor is represented (‖W_bd‖ ≥ 0.5); the figure
states that fraction. Finite data: the repeated point against fresh points sharing half its active
features, against R/(T/n) with the memorisation threshold R ≈ 0.4 T/n.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid

BACKDOOR_TABLE = "backdoor.parquet"
DETECTOR_LABELS = {
    "norm": "‖h‖",
    "mahalanobis": "Mahalanobis",
    "mahalanobis_uncentred": "Mahal. uncentred",
    "dimensionality": "data dim.",
    "oracle": "oracle pursuit",
    "sae_error": "SAE error",
    "sae_l1": "SAE ‖f‖₁/‖h‖",
    "sae_pursuit": "SAE pursuit",
}
NEGATIVE_LABELS = {"fresh": "fresh D", "dense": "benign at 3p", "mimic": "mimics"}


def _log_ticks(ax, values) -> None:
    """Log x with the plotted values as tick labels (no overlapping minor labels)."""
    from matplotlib.ticker import NullFormatter

    values = np.unique(np.asarray(values, float))
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:.2g}" for v in values], fontsize=7)
    ax.xaxis.set_minor_formatter(NullFormatter())


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max AUROC and TPR at 1% FPR per (positive, negative, detector) over models
    whose backdoor is represented."""
    shown = table[table["represented"]]
    return shown.groupby(["positive", "negative", "detector"], sort=False)[
        ["auroc", "tpr_at_1pct"]
    ].agg(["mean", "min", "max", "count"])


def represented_fraction(table: pd.DataFrame) -> float:
    return float(table.groupby("uid")["represented"].first().mean())


def _bars(ax, table: pd.DataFrame, positive: str, column: str) -> None:
    stats = summary(table)
    detectors = [d for d in DETECTOR_LABELS if d in set(table["detector"])]
    negatives = [n for n in NEGATIVE_LABELS if n in set(table["negative"])]
    width = 0.8 / len(negatives)
    for j, neg in enumerate(negatives):
        for i, det in enumerate(detectors):
            if (positive, neg, det) not in stats.index:
                continue
            s = stats.loc[(positive, neg, det), column]
            x = i + (j - (len(negatives) - 1) / 2) * width
            ax.bar(
                x,
                s["mean"],
                width=width,
                color=f"C{j}",
                label=NEGATIVE_LABELS[neg] if i == 0 else None,
            )
            ax.plot([x, x], [s["min"], s["max"]], color="k", lw=0.8)
    ax.set_xticks(
        range(len(detectors)),
        [DETECTOR_LABELS[d] for d in detectors],
        rotation=35,
        ha="right",
        fontsize=7,
    )
    ax.set_ylim(0, 1.02)


def _along_superposition(ax, table: pd.DataFrame) -> None:
    shown = table[
        table["represented"] & (table["positive"] == "alone") & (table["negative"] == "fresh")
    ]
    shown = shown.assign(ratio=(shown["n_features"] - 1) / shown["n_hidden"])
    for k, (det, group) in enumerate(shown.groupby("detector", sort=False)):
        line = group.groupby("ratio")["auroc"].mean()
        ax.plot(
            line.index,
            line.to_numpy(),
            "o-",
            ms=3,
            color=f"C{k}",
            label=DETECTOR_LABELS.get(det, det),
        )
    _log_ticks(ax, shown["ratio"].unique())
    ax.set_xlabel("benign features per dimension n_b/m")
    ax.set_ylabel("AUROC, backdoor alone vs fresh D")
    ax.legend(fontsize=6)


def _against_mmcs(ax, table: pd.DataFrame) -> None:
    shown = table[
        table["represented"] & (table["positive"] == "alone") & (table["negative"] == "fresh")
    ]
    for k, det in enumerate(("sae_error", "sae_l1", "sae_pursuit")):
        part = shown[shown["detector"] == det]
        ax.scatter(part["sae_mmcs"], part["auroc"], s=8, color=f"C{k}", label=DETECTOR_LABELS[det])
    ax.set_xlabel("SAE MMCS against the benign directions")
    ax.set_ylabel("AUROC, backdoor alone vs fresh D")
    ax.legend(fontsize=6)


def plot_backdoor(table: pd.DataFrame, stamp: str = "", target=None):
    """AUROC and TPR at 1% FPR of every detector for the backdoor alone and on a trusted input,
    against fresh trusted inputs, benign features at 3p and mimics (mean and min–max over the
    models whose backdoor is represented); AUROC against n_b/m and against the SAE's MMCS."""
    canvas, grid = panel_grid(target, 2, 3, (17, 9))
    for col, positive in enumerate(("alone", "background")):
        _bars(grid[0, col], table, positive, "auroc")
        grid[0, col].set_title(
            f"AUROC: backdoor {positive if positive == 'alone' else 'on a D input'} vs …",
            fontsize=9,
        )
        grid[0, col].axhline(0.5, color="0.5", lw=0.6, ls=":")
        _bars(grid[1, col], table, positive, "tpr_at_1pct")
        grid[1, col].set_title(f"TPR at 1% FPR: backdoor {positive} vs …", fontsize=9)
    grid[0, 0].legend(fontsize=7)
    _along_superposition(grid[0, 2], table)
    _against_mmcs(grid[1, 2], table)
    n_models = table["uid"].nunique()
    return finish(
        canvas,
        stamp,
        f"Detecting a backdoor feature from hidden vectors alone: mean over the "
        f"{represented_fraction(table):.0%} of {n_models} models whose backdoor is represented "
        "(‖W_bd‖ ≥ 0.5); bars: min–max over models. Detectors are fitted on a trusted set D "
        "(backdoor off); the oracle knows the true benign directions, the SAE learns them from D.",
        wrap=True,
        layout=(0, 0.02, 1, 0.92),
    )


def plot_backdoor_finite(table: pd.DataFrame, stamp: str = "", target=None):
    """AUROC and TPR at 1% FPR of each detector against R/(T/n), one line style per m."""
    table = table.assign(x=table["repeats"] * table["n_features"] / table["n_train"])
    canvas, grid = panel_grid(target, 1, 2, (13, 4.8))
    for c, column in enumerate(("auroc", "tpr_at_1pct")):
        ax = grid[0, c]
        for k, (det, group) in enumerate(table.groupby("detector", sort=False)):
            for s, (m, line) in enumerate(group.groupby("n_hidden")):
                line = line.groupby("x")[column].mean()
                ax.plot(
                    line.index,
                    line.to_numpy(),
                    ["o-", "s--", "^:"][s % 3],
                    color=f"C{k}",
                    ms=4,
                    label=f"{DETECTOR_LABELS.get(det, det)}, m={m}",
                )
        memorised = table[table["repeated_memorised"]].groupby("x").size()
        for x in memorised.index:
            ax.axvline(x, color="0.85", lw=6, zorder=0)
        ax.axvline(0.4, color="k", ls="--", lw=1, label="R = 0.4 T/n")
        _log_ticks(ax, np.append(table["x"].unique(), 0.4))
        ax.set_xlabel("R / (T/n)")
        ax.set_ylabel({"auroc": "AUROC", "tpr_at_1pct": "TPR at 1% FPR"}[column])
        ax.set_ylim(0, 1.02)
    grid[0, 0].legend(fontsize=6, ncol=2)
    return finish(
        canvas,
        stamp,
        "A point repeated R times among T: positives are it with magnitudes ×U[0.9, 1.1], negatives "
        "fresh points sharing half its active features; grey: some model memorised it (dimensionality in "
        "the top 0.1%).",
        wrap=True,
        layout=(0, 0.02, 1, 0.9),
    )


def backdoor_table(sweep) -> pd.DataFrame | None:
    """What ``toymodels-backdoor`` wrote beside the sweep, or None."""
    path = Path(sweep.root) / BACKDOOR_TABLE
    return pd.read_parquet(path) if path.is_file() else None


def has_backdoor(sweep, finite: bool) -> bool:
    """``toymodels-backdoor`` has scored the sweep: a finite-data one (``finite``) or not."""
    table = backdoor_table(sweep)
    return table is not None and ("n_train" in table) == finite


def backdoor_inputs(sweep) -> tuple:
    return backdoor_table(sweep), sweep.stamp()


def backdoor_notes(sweep) -> dict:
    """The share of models whose backdoor is represented and each detector's mean AUROC (backdoor
    alone against fresh trusted data)."""
    table = backdoor_table(sweep)
    notes: dict[str, float | dict[str, float]] = {
        "backdoor_represented_fraction": round(represented_fraction(table), 3)
    }
    stats = summary(table)
    if ("alone", "fresh", "oracle") in stats.index:
        notes["backdoor_auroc_alone_vs_fresh"] = {
            d: round(float(stats.loc[("alone", "fresh", d), ("auroc", "mean")]), 3)
            for d in DETECTOR_LABELS
            if ("alone", "fresh", d) in stats.index
        }
    return notes
