"""Figures of capacity across layers (``analysis.circuits``): capacity heatmaps over training, the
per-layer stacked capacity of every feature, and the economics (mean-ablation per layer, features
learned then dropped, the value-per-capacity cut-off over training)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import circuits as circ

LAYER_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def _thresholds() -> str:
    return (f"held: Σ_l C_i ≥ {circ.HELD_CAPACITY} and ‖R_i‖ ≥ {circ.HELD_NORM_SHARE}·max_j ‖R_j‖; dropped: held "
            f"≥ {circ.PERSIST} snapshots in a row, not at the end")


def _run_label(row: pd.Series) -> str:
    return f"L={int(row['layers'])}, p={row['density']:.3g}"


def plot_heatmaps(best: pd.DataFrame, stamp: str = ""):
    """One row per run (layers, density), one column per layer: C_i^l over training (features on
    the vertical axis, most important at the top)."""
    import matplotlib.pyplot as plt

    from analysis.sweep import stamp_figure, wrapped_suptitle

    L_max = int(best["layers"].max())
    fig, grid = plt.subplots(len(best), L_max, figsize=(2.9 * L_max + 1, 1.9 * len(best) + 1), squeeze=False)
    image = None
    for r, (_, row) in enumerate(best.iterrows()):
        steps, C, _ = circ.layer_series(row)
        for layer in range(L_max):
            ax = grid[r, layer]
            if layer >= C.shape[1]:
                ax.axis("off")
                continue
            image = ax.imshow(C[:, layer].T, aspect="auto", origin="upper", vmin=0, vmax=1, cmap="magma",
                              extent=(steps[0], steps[-1], C.shape[2] - 0.5, -0.5))
            ax.set_title(f"{_run_label(row)}: layer {layer + 1}, ΣC={C[-1, layer].sum():.2f}", fontsize=7)
            ax.tick_params(labelsize=6)
            if layer == 0:
                ax.set_ylabel("feature i", fontsize=7)
            if r == len(best) - 1:
                ax.set_xlabel("step", fontsize=7)
    fig.subplots_adjust(hspace=0.75, wspace=0.3, top=0.9, bottom=0.06, left=0.07, right=0.85)
    fig.colorbar(image, ax=grid.ravel().tolist(), shrink=0.6, label="capacity C_i of the read vector W_in·E_i")
    wrapped_suptitle(fig, f"{best['model'].iloc[0]}: each layer's capacity of every feature over training "
                     f"(best seed per run, m={int(best['n_hidden'].iloc[0])} units in all)")
    stamp_figure(fig, stamp)
    return fig


def plot_stacked(best: pd.DataFrame, stamp: str = ""):
    """Final C_i stacked by layer for every feature; rows: density, columns: number of layers."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from analysis.sweep import stamp_figure, wrapped_suptitle

    densities = sorted(best["density"].unique(), reverse=True)
    layer_counts = sorted(best["layers"].unique())
    fig, grid = plt.subplots(len(densities), len(layer_counts), figsize=(4.4 * len(layer_counts), 2.6 * len(densities) + 1),
                             squeeze=False, sharey=True)
    for (_, row) in best.iterrows():
        ax = grid[densities.index(row["density"]), layer_counts.index(row["layers"])]
        C = circ.stacked(row["layer_capacity"])  # L×n
        bottom = np.zeros(C.shape[1])
        for layer in range(C.shape[0]):
            ax.bar(np.arange(C.shape[1]), C[layer], bottom=bottom, color=LAYER_COLORS[layer % 6], width=0.85)
            bottom += C[layer]
        held = circ.held_mask(circ.layer_series(row)[1][-1:], circ.layer_series(row)[2][-1:])[0]
        ax.plot(np.flatnonzero(held), np.full(held.sum(), -0.08), "k^", ms=3)
        k = int(row["n_hidden"]) // int(row["layers"])
        sums = ", ".join(f"{s:.1f}" for s in C.sum(axis=1))
        ax.set_title(f"{_run_label(row)}: ΣC per layer {sums} (width {k})", fontsize=7)
        ax.set_xlabel("feature i", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in grid[:, 0]:
        ax.set_ylabel("capacity stacked by layer", fontsize=7)
    handles = [Patch(color=LAYER_COLORS[i], label=f"layer {i + 1}") for i in range(int(max(layer_counts)))]
    grid[0, -1].legend(handles=handles, fontsize=6)
    weighted = "importance 0.9^i: falls to the right" if best["model"].iloc[0] == "residual_mlp" else "every output weighs 1"
    wrapped_suptitle(fig, f"{best['model'].iloc[0]}: final capacity of each feature's read vectors, by layer "
                     f"({weighted}; triangles: held; {_thresholds()})")
    stamp_figure(fig, stamp)
    fig.tight_layout(rect=(0, 0.02, 1, 0.92))
    return fig


def plot_economics(measured: pd.DataFrame, stamp: str = ""):
    """Mean-ablation loss increase per layer (relative to the clean loss); learned-then-dropped and
    held counts; the cut-off over training (value per capacity of the cheapest held feature)."""
    import matplotlib.pyplot as plt

    from analysis.sweep import stamp_figure, wrapped_suptitle

    fig, (ab, counts, cut) = plt.subplots(1, 3, figsize=(17, 4.8))
    labels = []
    for i, (_, row) in enumerate(measured.iterrows()):
        increase = np.asarray(row["ablation_increase"]) / max(row["clean_loss"], 1e-12)
        for layer, value in enumerate(increase):
            ab.bar(i + 0.8 * (layer - (len(increase) - 1) / 2) / max(len(increase), 1), value,
                   width=0.8 / max(len(increase), 1), color=LAYER_COLORS[layer % 6])
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
        cut.plot(series["step"], series["cutoff_per_capacity"], "-", color=f"C{k % 10}", lw=1, label=_run_label(row))
        cut.plot(series["step"], series["dearest_dropped_value"], ":", color=f"C{k % 10}", lw=1)
    cut.set_yscale("log")
    cut.set_xlabel("step")
    cut.set_ylabel("value per capacity of the cheapest held feature (solid)\nvalue of the dearest one not held (dotted)")
    cut.legend(fontsize=6)
    wrapped_suptitle(fig, "Circuit economics (best seed per run): which layer matters, which features are kept, and "
                     f"the price of capacity over training (residual_mlp; value v_i = I_i p_i·2/3). {_thresholds()}")
    stamp_figure(fig, stamp)
    fig.tight_layout(rect=(0, 0.02, 1, 0.9))
    return fig


def circuit_figures(sweep) -> dict:
    """``circuit_heatmaps_<kind>``, ``circuit_capacity_<kind>`` per residual kind, and
    ``circuit_economics``; for a sweep whose models record per-layer snapshots."""
    table = sweep.table
    if "snap_layer_capacity" not in table:
        return {}
    table = table[table["snap_layer_capacity"].notna()]
    if "layers" not in table:
        table = table.assign(layers=[len(c) for c in table["layer_capacity"]])
    if "density" not in table:
        table = table.assign(density=[float(d[0]) for d in table["feature_density"]])
    measured = circ.circuit_table(table)
    figures = {}
    for kind, best in measured.groupby("model", sort=True):
        best = best.sort_values(["layers", "density"], ascending=[True, False])
        figures[f"circuit_heatmaps_{kind}"] = plot_heatmaps(best, sweep.stamp())
        figures[f"circuit_capacity_{kind}"] = plot_stacked(best, sweep.stamp())
    figures["circuit_economics"] = plot_economics(measured, sweep.stamp())
    sweep.notes["circuit_dropped_features"] = int(measured["n_dropped"].sum())
    return figures
