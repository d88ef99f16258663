"""How well sparse autoencoders recover a toy model's features, against how much it superposes
(Sharkey et al. 2022; docs/science/index.md, docs/science/metrics.md). Reads an SAE sweep on toy
models (``+sae=toy``, which ``toymodels-sae`` runs): one row per SAE, ``uid`` and ``seed`` the SAE's,
``source_uid`` its toy model's. A ``sae.parquet`` written by ``toymodels-sae`` before it ran that sweep
is read too, its columns renamed to the sweep's once on read (``legacy_sae_table``).
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid
from analysis.figures.sae_sweep import with_sparsity_names
from analysis.seeds import evenly_spaced

LINE_KEYS = ["kind", "dict_size", "sparsity"]  # sparsity: λ, or k for the top-k kinds
MAX_L1_LINES = 4
MAX_DICT_SIZES = 2
PANELS = (
    ("mmcs", "MMCS, true features → dictionary"),
    ("mmcs_reverse", "MMCS, live units → true features"),
    ("fvu", "fraction of variance unexplained"),
    ("l0", "L0 (active units per input)"),
    ("dead_fraction", "dead fraction of units"),
    ("dims_per_feature", "toy model D* = m / ‖W‖_F²"),
)
# On a D* axis the last panel would plot D* against itself: show interference instead.
D_STAR_LAST_PANEL = ("interference_mean", "toy model mean interference")
TOY_COLUMNS = ("dims_per_feature", "interference_mean")
X_BINS = 8
KIND_STYLE = {
    "plain": "-",
    "gated": "--",
    "rescaled": "-.",
    "topk": ":",
    "batchtopk": ":",
    "matryoshka": ":",
}
DICT_MARKERS = ("o", "s")


def with_x_axis(table: pd.DataFrame) -> tuple[pd.DataFrame, str, bool]:
    """The table with an ``x`` column, the superposition axis: 1/density when the sweep varies
    density (sparser inputs, more superposition), else each toy model's D* (fewer dimensions per
    feature, more superposition), averaged within up to 8 equal-width bins so lines stay lines."""
    table = table.copy()
    if "density" in table and table["density"].nunique() > 1:
        table["x"] = 1.0 / table["density"].astype(float)
        return table, "1 / (1 − S) = 1 / density", True
    bins = pd.cut(table["dims_per_feature"], bins=min(X_BINS, table["dims_per_feature"].nunique()))
    table["x"] = table.groupby(bins, observed=True)["dims_per_feature"].transform("mean")
    return table, "toy model D* = m / ‖W‖_F² (bin means)", False


def evenly(values, k: int) -> list:
    """At most ``k`` of the sorted distinct ``values``, spread from the first to the last."""
    values = sorted(set(values))
    return [values[i] for i in evenly_spaced(len(values), k)]


def line_subset(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Keep the figure readable: at most 4 λ (or k) values and 2 dictionary sizes (every kind)."""
    l1s, sizes = evenly(table["sparsity"], MAX_L1_LINES), evenly(table["dict_size"], MAX_DICT_SIZES)
    kept = table[table["sparsity"].isin(l1s) & table["dict_size"].isin(sizes)]
    note = "" if len(kept) == len(table) else f"; showing λ or k ∈ {l1s}, d ∈ {sizes}"
    return kept, note


def line_means(table: pd.DataFrame, x: str) -> pd.DataFrame:
    """Each score averaged over toy-model seeds and SAE seeds at each x, per line."""
    columns = [c for c, _ in PANELS] + ["interference_mean", "true_l0", "mmcs_chance"]
    return table.groupby(LINE_KEYS + ["sparsity_name", x], sort=True)[columns].mean().reset_index()


def draw_lines(ax, means: pd.DataFrame, x: str, column: str, colors: dict, sizes: list) -> None:
    """One line per (kind, d, λ or k): colour λ or k, dash kind, marker d; each kind's sparsity
    setting named as its declaration names it (``sparsity_name``)."""
    for (kind, d, l1, name), line in means.groupby(LINE_KEYS + ["sparsity_name"], sort=True):
        ax.plot(
            line[x],
            line[column],
            KIND_STYLE.get(kind, ":"),
            marker=DICT_MARKERS[sizes.index(d) % 2],
            ms=3.5,
            lw=1.2,
            color=colors[l1],
            label=f"{kind}, d={d}, {name}={l1:g}",
        )


def draw_reference(ax, means: pd.DataFrame, x: str, column: str, sizes: list) -> None:
    """What a score is read against: MMCS of random dictionaries (per d), the toy model's active
    represented features per input (for L0)."""
    if column == "mmcs":
        for d, rows in means.groupby("dict_size", sort=True):
            level = rows.groupby(x, sort=True)["mmcs_chance"].mean()
            ax.plot(
                level.index,
                level.to_numpy(),
                color="0.5",
                lw=0.9,
                ls=":",
                marker=DICT_MARKERS[sizes.index(d) % 2],
                ms=2.5,
                label=f"random dictionary, d={d}",
            )
    if column == "l0":
        truth = means.groupby(x, sort=True)["true_l0"].mean()
        ax.plot(
            truth.index,
            truth.to_numpy(),
            color="k",
            lw=1.2,
            ls=":",
            label="active true features per input",
        )


def plot_sae_recovery(table: pd.DataFrame, stamp: str = "", target=None):
    """Panels of MMCS (both directions), FVU, L0 and dead fraction of the SAEs, and the toy model's
    own superposition, against the toy model's superposition (1/density or D*)."""
    table, x_label, log_x = with_x_axis(with_sparsity_names(table))
    x = "x"
    shown, note = line_subset(table)
    means = line_means(shown, x)
    l1s, sizes = sorted(means["sparsity"].unique()), sorted(means["dict_size"].unique())
    colors = dict(zip(l1s, matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(l1s)))))
    panels = PANELS if log_x else PANELS[:-1] + (D_STAR_LAST_PANEL,)
    canvas, axs = panel_grid(target, 2, 3, (15, 7.5))
    for ax, (column, title) in zip(axs.flat, panels):
        if column in TOY_COLUMNS:  # a property of the toy model: one line
            toy = (
                shown.drop_duplicates("source_uid").groupby(x, sort=True)[column].mean()
            )  # over toy seeds
            ax.plot(toy.index, toy.to_numpy(), "o-", color="k", ms=3.5, lw=1.2)
        else:
            draw_lines(ax, means, x, column, colors, sizes)
            draw_reference(ax, means, x, column, sizes)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x_label, fontsize=8)
        if log_x:
            ax.set_xscale("log")
    for ax in axs[0, :2]:  # MMCS: from just below the lowest line or chance level, to 1
        ax.set_ylim(max(-1.0, ax.get_ylim()[0] - 0.02), 1.01)
    handles = (
        axs[0, 0].get_legend_handles_labels()[0] + axs[1, 0].get_legend_handles_labels()[0][-1:]
    )
    canvas.figure.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    shapes = ", ".join(
        f"n={n}, m={m}" for n, m in sorted(set(zip(table["n_features"], table["n_hidden"])))
    )
    title = (
        f"SAE recovery of toy-model features ({shapes}); mean over {table['toy_seed'].nunique()} toy seed(s) × "
        f"{table['seed'].nunique()} SAE seed(s){note}"
    )
    return finish(canvas, stamp, title, layout=(0, 0.02, 0.84, 0.95))


SAE_TABLE = "sae.parquet"  # what toymodels-sae wrote beside a sweep before it ran an SAE sweep


def legacy_sae_table(table: pd.DataFrame) -> pd.DataFrame:
    """A sae.parquet of the old toymodels-sae (``uid`` its toy model's, ``sae_seed`` the SAE's) in
    the SAE sweep's names."""
    return table.rename(columns={"uid": "source_uid", "sae_seed": "seed"})


def sae_inputs(sweep) -> tuple:
    """``plot_sae_recovery``'s inputs: an SAE sweep on toy models, or an old sae.parquet."""
    if (sweep.root / SAE_TABLE).is_file() and not sweep.table.columns.isin(["source_uid"]).any():
        return legacy_sae_table(pd.read_parquet(sweep.root / SAE_TABLE)), sweep.stamp()
    return sweep.table, sweep.stamp()
