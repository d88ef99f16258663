"""Figures of SAE sweeps (a config with an ``sae:`` section; issue 16 item 5), from the store's rows:
one row per SAE with its scores (``sweeps.sae.execute``).

Which MCC: every figure here shows SAELens's MCC, the ``mcc`` column: |cos| between decoder
columns and the true directions, matched one-to-one (Hungarian), averaged over the matched pairs.
It is a decoder score, not the activation-correlation MCC of the ICA literature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid

MCC_NAME = "MCC (SAELens: decoder |cos|, one-to-one Hungarian matching)"
KIND_ORDER = ("plain", "gated", "rescaled", "jumprelu", "topk", "batchtopk", "matryoshka")
WORLD_AXES = (
    "density",
    "magnitude",
    "cosine",
    "together",
    "world_seed",
    "n_features",
    "n_hidden",
    "directions",
    "active",
)
MAX_WORLD_ROWS = 3


def is_sae_sweep(sweep) -> bool:
    return sweep.config.get("sae") is not None


# Tables written before rows named their kind's sparsity setting: the built-in kinds with k then.
LEGACY_TOP_K = ("topk", "batchtopk", "matryoshka")


def with_sparsity_names(table: pd.DataFrame) -> pd.DataFrame:
    """The table with ``sparsity_axis`` and ``sparsity_name`` (stored by each SAE kind's
    declaration since they existed; before, k for rows with k > 0, or of the kinds that had k,
    else λ)."""
    if (
        "sparsity_axis" in table
        and "sparsity_name" in table
        and not table["sparsity_axis"].isna().any()
    ):
        return table
    top_k = (
        table["k"].fillna(0).astype(float) > 0 if "k" in table else table["kind"].isin(LEGACY_TOP_K)
    )
    old_axis, old_name = np.where(top_k, "k", "l1"), np.where(top_k, "k", "λ")

    def given(column, old):
        return table[column].fillna(pd.Series(old, index=table.index)) if column in table else old

    axis, name = given("sparsity_axis", old_axis), given("sparsity_name", old_name)
    return table.assign(sparsity_axis=axis, sparsity_name=name)


def own_axes(rows: pd.DataFrame, axes: list[str]) -> list[str]:
    """Grid axes that vary among one kind's SAEs besides its sparsity setting, the world's, seeds and
    dictionary size: a kind's other hyperparameters (JumpReLU's ε, a user kind's own), one line each."""
    skip = set(WORLD_AXES) | {"kind", "dict_size", "seed"} | set(rows["sparsity_axis"])
    return [a for a in axes if a not in skip and a in rows and rows[a].nunique(dropna=True) > 1]


def kinds_in(table: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(table["kind"]))
    return [k for k in KIND_ORDER if k in present] + [k for k in present if k not in KIND_ORDER]


def kind_colors(kinds: list[str]) -> dict:
    return {k: f"C{KIND_ORDER.index(k) if k in KIND_ORDER else 7 + i}" for i, k in enumerate(kinds)}


def world_groups(table: pd.DataFrame, axes: list[str], keep=()) -> list[tuple[str, pd.DataFrame]]:
    """The sweep's worlds (its world axes' values, less ``keep``), each with its SAEs; at most 3."""
    by = [a for a in axes if a in WORLD_AXES and a not in keep and a in table]
    if not by:
        return [("", table)]
    groups = [
        (", ".join(f"{a}={v}" for a, v in zip(by, key if isinstance(key, tuple) else (key,))), rows)
        for key, rows in table.groupby(by, sort=True)
    ]
    return groups[:MAX_WORLD_ROWS]


def front(rows: pd.DataFrame, y: str) -> pd.DataFrame:
    """One kind's (L0, y) per sparsity setting, mean over seeds, in order of L0."""
    return rows.groupby("sparsity", sort=True)[["l0", y]].mean().sort_values("l0")


def plot_sae_pareto(table: pd.DataFrame, axes: list[str], stamp: str = "", target=None):
    """L0 against FVU and against MCC, one line per SAE kind (and dictionary size, and value of its
    other swept hyperparameters) through its sparsity settings (λ, k: each kind's declared one);
    one row of panels per world. The true L0 (firing features per input) is dotted."""
    table = with_sparsity_names(table)
    kinds = kinds_in(table)
    colors, worlds = kind_colors(kinds), world_groups(table, axes)
    sizes = sorted(table["dict_size"].unique())
    canvas, axs = panel_grid(target, len(worlds), 2, (11, 4.2 * len(worlds)))
    for row, (label, rows) in zip(axs, worlds):
        for ax, (y, name) in zip(
            row, (("fvu", "FVU (fraction of variance unexplained)"), ("mcc", MCC_NAME))
        ):
            for (kind, d), part in rows.groupby(["kind", "dict_size"], sort=False):
                extra = own_axes(part, axes)
                lines = part.groupby(extra, sort=True) if extra else [((), part)]
                for n, (values, line) in enumerate(lines):
                    values = values if isinstance(values, tuple) else (values,)
                    points = front(line, y)
                    line_label = (
                        f"{kind} ({line['sparsity_name'].iloc[0]})"
                        + (f", d={d}" if len(sizes) > 1 else "")
                        + "".join(
                            f", {a}={v:g}" if isinstance(v, float) else f", {a}={v}"
                            for a, v in zip(extra, values)
                        )
                    )
                    ax.plot(
                        points["l0"],
                        points[y],
                        marker="os^vD"[n % 5],
                        ms=3.5,
                        lw=1.3,
                        color=colors[kind],
                        ls="-" if sizes.index(d) == 0 else "--",
                        label=line_label,
                    )
            ax.axvline(rows["true_l0"].mean(), color="k", ls=":", lw=1, label="true L0")
            ax.set_xscale("log")
            ax.set_xlabel("L0 (active latents per input)", fontsize=8)
            ax.set_title(f"{name}" + (f"\n{label}" if label else ""), fontsize=9)
        row[0].set_yscale("log")
    axs[0, 1].legend(fontsize=7, frameon=False)
    title = (
        f"Pareto fronts of {len(kinds)} SAE kinds ({len(table)} SAEs, mean over "
        f"{table['seed'].nunique()} seed(s)); MCC = SAELens's decoder MCC"
    )
    return finish(canvas, stamp, title, wrap=True, layout=(0, 0.02, 1, 0.92))


def plot_score_lines(
    table: pd.DataFrame,
    x: str,
    lines: str,
    panels: str,
    scores: tuple,
    title: str,
    stamp: str = "",
    target=None,
    log_x: bool = False,
):
    """Each score (a row of panels) against ``x``, one line per value of ``lines``, one column of
    panels per value of ``panels``; means over seeds and whatever else varies."""
    columns = sorted(table[panels].unique(), key=str)
    canvas, axs = panel_grid(
        target, len(scores), len(columns), (4.8 * len(columns), 3.9 * len(scores) + 0.8)
    )
    line_values = sorted(
        table[lines].unique(),
        key=lambda v: (KIND_ORDER.index(v) if v in KIND_ORDER else 99, str(v)),
    )
    for j, column in enumerate(columns):
        part = table[table[panels] == column]
        for i, (score, name) in enumerate(scores):
            ax = axs[i, j]
            for n, value in enumerate(line_values):
                means = part[part[lines] == value].groupby(x, sort=True)[score].mean()
                if len(means):
                    ax.plot(
                        means.index,
                        means.to_numpy(),
                        "o-",
                        ms=3.5,
                        lw=1.3,
                        color=f"C{n}",
                        label=f"{lines}={value}",
                    )
            ax.set_title(f"{name}, {panels}={column}", fontsize=9)
            ax.set_xlabel(x, fontsize=8)
            if log_x and (table[x] > 0).all():
                ax.set_xscale("log")
            elif log_x:  # a zero (no penalty) among the values
                ax.set_xscale("symlog", linthresh=min(v for v in table[x] if v > 0))
    axs[0, -1].legend(fontsize=7, frameon=False)
    return finish(canvas, stamp, title, wrap=True, layout=(0, 0.02, 1, 0.92))


def plot_sae_shrinkage(table: pd.DataFrame, stamp: str = "", target=None):
    """FVU and γ = E‖ĥ‖²/E[ĥ·h] against λ per kind, U[0, 1] against fixed magnitudes. Predicted
    (docs/science/saes.md): with U[0, 1] magnitudes FVU orders gated < rescaled < plain; fixed: rescaled
    ≈ gated."""
    return plot_score_lines(
        table,
        "l1",
        "kind",
        "magnitude",
        (("fvu", "FVU"), ("gamma", "γ (relative reconstruction bias)"), ("mcc", "MCC (SAELens)")),
        "Shrinkage: plain (a−θ)₊, rescaled r(a−θ)₊, gated a·1[a>θ]\npredicted FVU "
        "gated < rescaled < plain for U[0,1] magnitudes, rescaled ≈ gated for fixed ones\n"
        + MCC_NAME,
        stamp,
        target,
        log_x=True,
    )


def shrinkage_note(sweep) -> dict:
    """The fraction of (λ, magnitude) settings at which mean FVU orders gated < rescaled < plain."""
    table = sweep.table
    means = table.groupby(["magnitude", "l1", "kind"])["fvu"].mean().unstack("kind")
    if not {"plain", "gated", "rescaled"} <= set(means.columns):
        return {}
    ordered = (means["gated"] < means["rescaled"]) & (means["rescaled"] < means["plain"])
    return {
        f"fvu gated < rescaled < plain ({magnitude} magnitudes)": f"{int(ok.sum())}/{len(ok)} λ values"
        for magnitude, ok in ordered.groupby(level="magnitude")
    }


def plot_sae_composition(table: pd.DataFrame, stamp: str = "", target=None):
    """The fraction of SAEs with a latent along (f1 + f2)/√2 (cos ≥ 0.95), against how often f1 and
    f2 fire together (c), one line per λ; fixed against U[0, 1] magnitudes. Predicted (docs/science/saes.md):
    with fixed magnitudes for any c > 0; with U[0, 1] ones only for λ ≳ 0.28."""
    table = table.assign(composed=(table["n_composed"] > 0).astype(float))
    return plot_score_lines(
        table,
        "together",
        "l1",
        "magnitude",
        (("composed", "SAEs with a composed latent"), ("fvu", "FVU")),
        "Composition: a latent along f1+f2 costs √2 instead of 2 in L1\npredicted to win for any "
        "c > 0 with fixed magnitudes, only for λ ≳ 0.28 with U[0, 1]",
        stamp,
        target,
    )


def plot_sae_orthogonality(table: pd.DataFrame, stamp: str = "", target=None):
    """MCC and FVU against the decoder orthogonality weight λ_o, per world directions (or on the
    toy models of an SAE sweep on a stored sweep: their trained W as the world)."""
    if "directions" in table:
        worlds = table["directions"].astype(str) + np.where(
            table["directions"] == "pairs", " cos=" + table["cosine"].astype(str), ""
        )
    else:
        worlds = (
            "toy models (n="
            + table["n_features"].astype(str)
            + ", m="
            + table["n_hidden"].astype(str)
            + ")"
        )
    return plot_score_lines(
        table.assign(world=worlds),
        "ortho",
        "kind",
        "world",
        (("mcc", "MCC (SAELens)"), ("fvu", "FVU")),
        "Orthogonality penalty λ_o·mean_{j≠k}(d_j·d_k)²: does it raise MCC on spread-out "
        f"features and lower it on clustered pairs?\n{MCC_NAME}",
        stamp,
        target,
        log_x=True,
    )


def sae_sweep_inputs(sweep) -> tuple:
    return sweep.table, sweep.stamp()


def sae_grid_inputs(sweep) -> tuple:
    return sweep.table, sweep.axes, sweep.stamp()


def varies(sweep, axis: str) -> bool:
    return is_sae_sweep(sweep) and axis in sweep.table and sweep.table[axis].nunique() > 1


def has_fronts(sweep) -> bool:
    """Some kind trained at more than one λ or k on one world (not k = l, one k per world: sae_active)."""
    if not is_sae_sweep(sweep):
        return False
    table = sweep.table
    by = ["kind"] + [a for a in WORLD_AXES if a in table]
    return table.groupby(by, dropna=False)["sparsity"].nunique().max() > 1


def has_shrinkage(sweep) -> bool:
    """Several λ, both magnitudes, and at least two of plain, gated, rescaled."""
    kinds = (
        set(sweep.table["kind"]) & {"plain", "gated", "rescaled"} if is_sae_sweep(sweep) else set()
    )
    return len(kinds) > 1 and varies(sweep, "magnitude") and varies(sweep, "l1")
