"""Figures of capacity across layers (``analysis.circuits``): capacity heatmaps over training, the
per-layer stacked capacity of every feature, and the economics (mean-ablation per layer, features
learned then dropped, the value-per-capacity cut-off over training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.image import AxesImage

from analysis.figures.canvas import finish, panel_grid
from analysis.measures import circuits as circ
from analysis.stored_sweep import per_sweep
from sweeps.store import nested_array

KINDS = (
    "residual_mlp",
    "residual_mlp_groups",
)  # the economics read |x|'s value and residual.py's ablation
LAYER_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def _thresholds() -> str:
    return (
        f"held: Σ_l C_i ≥ {circ.HELD_CAPACITY} and ‖R_i‖ ≥ {circ.HELD_NORM_SHARE}·max_j ‖R_j‖; dropped: held "
        f"≥ {circ.PERSIST} snapshots in a row, not at the end"
    )


def _run_label(row: pd.Series) -> str:
    return f"L={int(row['layers'])}, p={row['density']:.3g}"


def _kinds(best: pd.DataFrame) -> str:
    return " and ".join(sorted(best["model"].unique()))


def plot_heatmaps(best: pd.DataFrame, stamp: str = "", target=None):
    """One row per run (kind, layers, density), one column per layer: C_i^l over training
    (features on the vertical axis, most important at the top)."""
    L_max = int(best["layers"].max())
    several = best["model"].nunique() > 1
    canvas, grid = panel_grid(target, len(best), L_max, (2.9 * L_max + 1, 1.9 * len(best) + 1))
    image: AxesImage | None = None
    for r, (_, row) in enumerate(best.iterrows()):
        steps, C, _ = circ.layer_series(row)
        for layer in range(L_max):
            ax = grid[r, layer]
            if layer >= C.shape[1]:
                ax.axis("off")
                continue
            image = ax.imshow(
                C[:, layer].T,
                aspect="auto",
                origin="upper",
                vmin=0,
                vmax=1,
                cmap="magma",
                extent=(steps[0], steps[-1], C.shape[2] - 0.5, -0.5),
            )
            kind = f"{row['model']} " if several else ""
            ax.set_title(
                f"{kind}{_run_label(row)}: layer {layer + 1}, ΣC={C[-1, layer].sum():.2f}",
                fontsize=7,
            )
            ax.tick_params(labelsize=6)
            if layer == 0:
                ax.set_ylabel("feature i", fontsize=7)
            if r == len(best) - 1:
                ax.set_xlabel("step", fontsize=7)
    if canvas.whole:  # before the colour bar, which takes its room from the panels
        canvas.figure.subplots_adjust(
            hspace=0.75, wspace=0.3, top=0.9, bottom=0.06, left=0.07, right=0.85
        )
    assert image is not None  # every run has a layer
    canvas.figure.colorbar(
        image,
        ax=grid.ravel().tolist(),
        shrink=0.6,
        label="capacity C_i of the read vector W_in·E_i",
    )
    return finish(
        canvas,
        stamp,
        f"{_kinds(best)}: each layer's capacity of every feature over training "
        f"(best seed per run, m={int(best['n_hidden'].iloc[0])} units in all)",
        wrap=True,
    )


def plot_stacked(best: pd.DataFrame, stamp: str = "", target=None):
    """Final C_i stacked by layer for every feature; rows: kind and density, columns: number of
    layers."""
    from matplotlib.patches import Patch

    rows = sorted(
        {(m, d) for m, d in zip(best["model"], best["density"])}, key=lambda r: (r[0], -r[1])
    )
    layer_counts = sorted(best["layers"].unique())
    canvas, grid = panel_grid(
        target,
        len(rows),
        len(layer_counts),
        (4.4 * len(layer_counts), 2.6 * len(rows) + 1),
        sharey=True,
    )
    for _, row in best.iterrows():
        ax = grid[rows.index((row["model"], row["density"])), layer_counts.index(row["layers"])]
        C = nested_array(row["layer_capacity"])  # L×n
        bottom = np.zeros(C.shape[1])
        for layer in range(C.shape[0]):
            ax.bar(
                np.arange(C.shape[1]),
                C[layer],
                bottom=bottom,
                color=LAYER_COLORS[layer % 6],
                width=0.85,
            )
            bottom += C[layer]
        held = circ.held_mask(circ.layer_series(row)[1][-1:], circ.layer_series(row)[2][-1:])[0]
        ax.plot(np.flatnonzero(held), np.full(held.sum(), -0.08), "k^", ms=3)
        k = int(row["n_hidden"]) // int(row["layers"])
        sums = ", ".join(f"{s:.1f}" for s in C.sum(axis=1))
        kind = f"{row['model']} " if len(rows) > best["density"].nunique() else ""
        ax.set_title(f"{kind}{_run_label(row)}: ΣC per layer {sums} (width {k})", fontsize=7)
        ax.set_xlabel("feature i", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in grid[:, 0]:
        ax.set_ylabel("capacity stacked by layer", fontsize=7)
    handles = [
        Patch(color=LAYER_COLORS[i], label=f"layer {i + 1}") for i in range(int(max(layer_counts)))
    ]
    grid[0, -1].legend(handles=handles, fontsize=6)
    weighted = "; ".join(
        f"{kind}: "
        + (
            "importance 0.9^i, falls to the right"
            if kind == "residual_mlp"
            else "every output weighs 1"
        )
        for kind in sorted(best["model"].unique())
    )
    return finish(
        canvas,
        stamp,
        f"{_kinds(best)}: final capacity of each feature's read vectors, by layer "
        f"({weighted}; triangles: held; {_thresholds()})",
        wrap=True,
        layout=(0, 0.02, 1, 0.92),
    )


def plot_economics(measured: pd.DataFrame, stamp: str = "", target=None):
    """Mean-ablation loss increase per layer (relative to the clean loss); learned-then-dropped and
    held counts; the cut-off over training (value per capacity of the cheapest held feature)."""
    canvas, grid = panel_grid(target, 1, 3, (17, 4.8))
    ab, counts, cut = grid[0]
    labels = []
    for i, (_, row) in enumerate(measured.iterrows()):
        increase = np.asarray(row["ablation_increase"]) / max(row["clean_loss"], 1e-12)
        for layer, value in enumerate(increase):
            ab.bar(
                i + 0.8 * (layer - (len(increase) - 1) / 2) / max(len(increase), 1),
                value,
                width=0.8 / max(len(increase), 1),
                color=LAYER_COLORS[layer % 6],
            )
        labels.append(f"{row['model'].replace('residual_mlp', 'r')}\n{_run_label(row)}")
        counts.bar(i - 0.2, row["n_held"], width=0.4, color="C0")
        counts.bar(i + 0.2, row["n_dropped"], width=0.4, color="C3")
    for ax in (ab, counts):
        ax.set_xticks(range(len(labels)), labels, fontsize=5, rotation=90)
    ab.set_yscale("log")
    ab.set_ylabel("loss increase when a layer is mean-ablated / clean loss")
    counts.set_ylabel("features held at the end (blue), learned then dropped (red)")
    for k, (_, row) in enumerate(measured[measured["model"] == "residual_mlp"].iterrows()):
        series = circ.cutoff_series(row)
        cut.plot(
            series["step"],
            series["cutoff_per_capacity"],
            "-",
            color=f"C{k % 10}",
            lw=1,
            label=_run_label(row),
        )
        cut.plot(series["step"], series["dearest_dropped_value"], ":", color=f"C{k % 10}", lw=1)
    cut.set_yscale("log")
    cut.set_xlabel("step")
    cut.set_ylabel(
        "value per capacity of the cheapest held feature (solid)\nvalue of the dearest one not held (dotted)"
    )
    cut.legend(fontsize=6)
    return finish(
        canvas,
        stamp,
        "Circuit economics (best seed per run): which layer matters, which features are kept, "
        f"and the price of capacity over training (residual_mlp; value v_i = I_i p_i·2/3). {_thresholds()}",
        wrap=True,
        layout=(0, 0.02, 1, 0.9),
    )


def has_layers(sweep) -> bool:
    """Residual-MLP models (``residual_mlp``, ``residual_mlp_groups``) with per-layer capacity snapshots."""
    table = sweep.table
    return (
        "snap_layer_capacity" in table
        and (table["snap_layer_capacity"].notna() & table["model"].isin(KINDS)).any()
    )


@per_sweep
def measured(sweep) -> pd.DataFrame:
    """``circuits.circuit_table`` of the best seed per run, ordered by kind, layers, density."""
    table = sweep.table[
        sweep.table["snap_layer_capacity"].notna() & sweep.table["model"].isin(KINDS)
    ]
    if "layers" not in table:
        table = table.assign(layers=[len(c) for c in table["layer_capacity"]])
    if "density" not in table:
        table = table.assign(density=[float(d[0]) for d in table["feature_density"]])
    return circ.circuit_table(table).sort_values(
        ["model", "layers", "density"], ascending=[True, True, False]
    )


def circuit_inputs(sweep) -> tuple:
    return measured(sweep), sweep.stamp()


def circuit_notes(sweep) -> dict:
    return {"circuit_dropped_features": int(measured(sweep)["n_dropped"].sum())}
