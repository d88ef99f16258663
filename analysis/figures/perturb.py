"""Non-uniform superposition: one feature's density perturbed (TMS "Non-uniform superposition";
docs/science/index.md).

n features in m=2 form a regular polygon at equal density (a pentagon for n=5). Making the last
feature sparser makes it worth less; at some ratio the model switches to two digons (two antipodal
pairs) with that feature dropped. Each seed's solution is classified by its geometry, so the loss of
each class can be followed across the sweep: a first-order switch shows as two crossing curves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish
from analysis.figures.panels import (
    REPRESENTED,
    best_along,
    draw_vectors,
    panel_title,
    panels_over_plots,
)
from analysis.seeds import best_of_seeds
from analysis.stored_sweep import as_array
from sweeps.store import as_matrix

POLYGON, DIGONS, OTHER = "polygon", "digons", "other"
CLASS_COLORS = {POLYGON: "C0", DIGONS: "C3", OTHER: "0.6"}
ANTIPODAL_COS = -0.9  # two represented features with cos at or below this form a digon


def class_names(n_features: int) -> dict:
    polygon = {3: "triangle", 4: "square", 5: "pentagon", 6: "hexagon"}.get(
        n_features, f"{n_features}-gon"
    )
    return {
        POLYGON: f"{polygon} (all {n_features})",
        DIGONS: "digons (last dropped)",
        OTHER: "other",
    }


def classify_solution(
    W_2xF: np.ndarray, represented: float = REPRESENTED, antipodal_cos: float = ANTIPODAL_COS
) -> str:
    """``polygon``: every feature represented (‖W_i‖ ≥ ``represented``) and no two closer than half
    the regular polygon's angle 360°/n; ``digons``: the last (perturbed) feature dropped and the
    represented features (at least two) paired up antipodally (cos ≤ ``antipodal_cos``); else
    ``other`` (digons that drop another feature included)."""
    W_2xF = np.asarray(W_2xF, dtype=float)
    n = W_2xF.shape[1]
    norms = np.linalg.norm(W_2xF, axis=0)
    kept = np.flatnonzero(norms >= represented)
    if len(kept) == n:
        angles = np.sort(np.degrees(np.arctan2(W_2xF[1], W_2xF[0])) % 360.0)
        gaps = np.diff(np.append(angles, angles[0] + 360.0))
        if gaps.min() >= 0.5 * 360.0 / n:
            return POLYGON
    if 2 <= len(kept) and n - 1 not in kept and len(kept) % 2 == 0:
        U = W_2xF[:, kept] / norms[kept]
        cos = U.T @ U
        partners = (cos <= antipodal_cos).sum(axis=1)
        if np.all(partners == 1):
            return DIGONS
    return OTHER


def perturb_table(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus ``ratio`` (last feature's density over the first's), ``solution`` (class)
    and ``last_norm`` (‖W_last‖)."""
    out = table.copy()
    density_MxF = as_matrix(table["feature_density"])
    out["ratio"] = density_MxF[:, -1] / density_MxF[:, 0]
    out["solution"] = [classify_solution(as_array(row["W"])) for _, row in table.iterrows()]
    out["last_norm"] = [
        float(np.linalg.norm(as_array(row["W"])[:, -1])) for _, row in table.iterrows()
    ]
    return out


def class_losses(classified: pd.DataFrame) -> pd.DataFrame:
    """Per ratio: the mean and lowest loss of each solution class (NaN where no seed found it),
    and the best seed's class."""
    rows = []
    for ratio, group in classified.groupby("ratio", sort=True):
        row = {"ratio": ratio, "best": group.loc[group["loss"].idxmin(), "solution"]}
        for name in (POLYGON, DIGONS):
            losses = group.loc[group["solution"] == name, "loss"]
            row[f"{name}_mean"] = float(losses.mean()) if len(losses) else np.nan
            row[f"{name}_min"] = float(losses.min()) if len(losses) else np.nan
            row[f"{name}_count"] = len(losses)
        rows.append(row)
    return pd.DataFrame(rows)


def crossing_ratio(losses: pd.DataFrame, stat: str = "mean") -> float:
    """The density ratio at which the polygon and digon classes' losses cross (log-linear
    interpolation between the two ratios that bracket the first sign change, sparse to dense); NaN
    when no sweep point pair brackets one."""
    both = losses.dropna(subset=[f"{POLYGON}_{stat}", f"{DIGONS}_{stat}"]).sort_values("ratio")
    diff = (both[f"{POLYGON}_{stat}"] - both[f"{DIGONS}_{stat}"]).to_numpy()
    log_r = np.log(both["ratio"].to_numpy())
    for k in range(len(diff) - 1):
        if diff[k] > 0 >= diff[k + 1] or diff[k] >= 0 > diff[k + 1]:
            t = diff[k] / (diff[k] - diff[k + 1])
            return float(np.exp(log_r[k] + t * (log_r[k + 1] - log_r[k])))
    return float("nan")


def crossing_note(sweep, **_) -> dict:
    """The density ratio at which the polygon and digon classes' mean losses cross, for
    ``toymodels-figures`` to print."""
    return {
        "polygon_digons_crossing_ratio": round(
            crossing_ratio(class_losses(perturb_table(sweep.table))), 3
        )
    }


def _loss_plot(ax, classified: pd.DataFrame, losses: pd.DataFrame, names: dict) -> None:
    for name in (POLYGON, DIGONS, OTHER):
        seeds = classified[classified["solution"] == name]
        ax.scatter(seeds["ratio"], seeds["loss"], color=CLASS_COLORS[name], s=10, alpha=0.45)
    for name in (POLYGON, DIGONS):
        ax.plot(
            losses["ratio"],
            losses[f"{name}_mean"],
            "o-",
            color=CLASS_COLORS[name],
            label=f"{names[name]}: mean",
        )
    best = best_of_seeds(classified, ["ratio"])
    ax.plot(best["ratio"], best["loss"], "k--", lw=1, label="best seed")
    cross = crossing_ratio(losses)
    if np.isfinite(cross):
        ax.axvline(cross, color="k", lw=0.6, ls=":")
        ax.text(
            cross,
            0.97,
            f" crossing ≈ {cross:.2f}",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            va="top",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("last feature's density / the others' density")
    ax.set_ylabel("loss (dots: every seed, by class)")
    ax.legend(fontsize=7)


def _share_plot(ax, classified: pd.DataFrame, losses: pd.DataFrame, names: dict) -> None:
    n_seeds = classified.groupby("ratio").size().sort_index().to_numpy()
    for name in (POLYGON, DIGONS):
        ax.plot(
            losses["ratio"],
            losses[f"{name}_count"] / n_seeds,
            "o-",
            color=CLASS_COLORS[name],
            label=f"seeds in {names[name]}",
        )
    best = best_of_seeds(classified, ["ratio"])
    ax.plot(best["ratio"], best["last_norm"], "ks--", ms=4, label="‖W_last‖ of the best seed")
    ax.set_xscale("log")
    ax.set_ylim(-0.05, max(1.3, float(best["last_norm"].max()) + 0.1))
    ax.set_xlabel("last feature's density / the others' density")
    ax.legend(fontsize=7)


def plot_perturb(
    table: pd.DataFrame, axes: list[str], stamp: str = "", max_panels: int = 8, target=None
):
    """Top: the best seed's geometry across the sweep of the last feature's density (that feature
    in red). Bottom: loss of each solution class against the density ratio, and the share of seeds
    in each class with the last feature's norm."""
    classified = perturb_table(table)
    axis = "density_last" if "density_last" in axes else None
    shown = best_along(classified, axes, axis, max_panels)
    two_d = bool((classified["n_hidden"] == 2).all())
    canvas, panels, (loss_ax, share_ax) = panels_over_plots(
        len(shown) if two_d else 0, 2, target=target
    )
    n = int(classified["n_features"].iloc[0])
    names = class_names(n)
    colors = ["0.35"] * (n - 1) + ["red"]
    for ax, (_, row) in zip(panels, shown.iterrows()):
        draw_vectors(ax, as_array(row["W"]), colors)
        ax.set_title(
            f"ratio {row['ratio']:.2g}: {names[row['solution']].split(' (')[0]}\n"
            + panel_title(row, None),
            fontsize=7,
        )
    losses = class_losses(classified)
    _loss_plot(loss_ax, classified, losses, names)
    _share_plot(share_ax, classified, losses, names)
    title = (
        f"One feature's density perturbed (n={n}, m={int(classified['n_hidden'].iloc[0])}; the others at "
        f"p={classified['feature_density'].iloc[0][0]:.3g}; last feature in red); best of "
        f"{classified['seed'].nunique()} seeds. Classes: all features represented (‖W_i‖ ≥ {REPRESENTED}) "
        f"with no gap under 180°/n = polygon; represented features in antipodal pairs (cos ≤ {ANTIPODAL_COS}) "
        f"and the last dropped = digons; anything else = other."
    )
    return finish(
        canvas, stamp, title, fontsize=9, wrap=True, layout=dict(top=0.84, bottom=0.1, hspace=0.5)
    )
