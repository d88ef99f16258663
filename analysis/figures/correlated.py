"""Correlated and anticorrelated feature sets (TMS "Superposition and correlated features";
docs/science/models.md, docs/science/index.md).

Features form consecutive sets of ``set_size``. The measure is the angle between the members of
each set: correlated members that fit sit orthogonally (90°) and collapse onto one direction, their
principal component (0°), as density rises; anticorrelated members sit antipodally (180°), since
they are never on together and so never interfere.
"""

from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pandas as pd

from analysis.figures.canvas import finish
from analysis.figures.panels import (
    REPRESENTED,
    best_along,
    draw_vectors,
    panel_title,
    panels_over_plots,
    sweep_x_axis,
    swept_axis,
)
from analysis.kind_traits import set_data
from analysis.stored_sweep import as_array
from sweeps.store import as_matrix

REFERENCE_ANGLES = {0.0: "collapsed (0°)", 90.0: "orthogonal (90°)", 180.0: "antipodal (180°)"}


def has_sets(table: pd.DataFrame) -> bool:
    return bool("data_kind" in table and table["data_kind"].map(set_data).any())


def correlated_inputs(sweep) -> tuple:
    """``plot_correlated``'s inputs from a stored sweep: the set size is the config's."""
    set_size = int(sweep.config.get("data", {}).get("set_size", 2))
    return sweep.table, sweep.axes, set_size, sweep.stamp()


def member_pairs(n_features: int, set_size: int) -> list[tuple[int, int]]:
    """Every pair (i, j), i < j, of features in the same set, set by set."""
    return [
        pair
        for start in range(0, n_features, set_size)
        for pair in itertools.combinations(range(start, min(start + set_size, n_features)), 2)
    ]


def within_set_angles(
    W_HxF: np.ndarray, set_size: int, represented: float = REPRESENTED
) -> np.ndarray:
    """Angle in degrees between the members of each within-set pair (``member_pairs`` order); NaN
    where a member is not represented (‖W_i‖ < ``represented``): a dropped feature has no
    direction."""
    W_HxF = np.asarray(W_HxF, dtype=float)
    norms_F = np.linalg.norm(W_HxF, axis=0)
    angles = []
    for i, j in member_pairs(W_HxF.shape[1], set_size):
        if min(norms_F[i], norms_F[j]) < represented:
            angles.append(np.nan)
            continue
        cos = W_HxF[:, i] @ W_HxF[:, j] / (norms_F[i] * norms_F[j])
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.asarray(angles)


def angle_table(
    table: pd.DataFrame, set_size: int, represented: float = REPRESENTED
) -> pd.DataFrame:
    """``table`` plus ``pair_angles`` (list, degrees) and ``mean_pair_angle`` (NaN-ignoring)."""
    out = table.copy()
    angles = [
        within_set_angles(as_array(row["W"]), set_size, represented) for _, row in table.iterrows()
    ]
    out["pair_angles"] = [a.tolist() for a in angles]
    out["mean_pair_angle"] = [
        float(np.nanmean(a)) if np.isfinite(a).any() else np.nan for a in angles
    ]
    return out


def set_colors(n_features: int, set_size: int):
    """One colour per set; members of a set share it (line style tells them apart)."""
    cmap = matplotlib.colormaps["tab10"]
    return [cmap((i // set_size) % 10) for i in range(n_features)]


def _member_styles(n_features: int, set_size: int) -> list[str]:
    return [("-", "--", ":", "-.")[(i % set_size) % 4] for i in range(n_features)]


def _draw_panels(panels, best: pd.DataFrame, axis: str | None, set_size: int) -> None:
    for ax, (_, row) in zip(panels, best.iterrows()):
        W = as_array(row["W"])
        n = W.shape[1]
        draw_vectors(
            ax,
            W,
            set_colors(n, set_size),
            _member_styles(n, set_size),
            labels=[str(i) for i in range(n)],
        )
        angles = within_set_angles(W, set_size)
        shown = ", ".join("–" if np.isnan(a) else f"{a:.0f}°" for a in angles)
        ax.set_title(panel_title(row, axis) + f"\nangles {shown}", fontsize=7)


def _draw_angles(
    ax, angled: pd.DataFrame, best: pd.DataFrame, axis: str | None, set_size: int
) -> None:
    """Every seed's within-set angles (grey), the best seed's (coloured by set) and their mean
    (black line): sets of equal importance are interchangeable, so which one moves first is chance."""
    x_all = angled[axis].to_numpy(float) if axis else np.zeros(len(angled))
    for x, angles in zip(x_all, angled["pair_angles"]):
        ax.scatter(np.full(len(angles), x), angles, color="0.75", s=9, zorder=1)
    best = best.sort_values(axis) if axis else best
    x_best = best[axis].to_numpy(float) if axis else np.zeros(len(best))
    per_pair = as_matrix(best["pair_angles"])
    n = int(best["n_features"].iloc[0])
    colors = set_colors(n, set_size)
    for k, (i, j) in enumerate(member_pairs(n, set_size)):
        ax.scatter(
            x_best,
            per_pair[:, k],
            color=colors[i],
            s=42 - 8 * min(k, 3),
            label=f"features {i},{j} (best seed)",
            zorder=3,
        )
    ax.plot(
        x_best, best["mean_pair_angle"], "k-", lw=1.2, label="mean over sets (best seed)", zorder=2
    )
    for angle, name in REFERENCE_ANGLES.items():
        ax.axhline(angle, color="k", lw=0.6, ls=":")
        ax.text(1.01, angle, name, transform=ax.get_yaxis_transform(), fontsize=7, va="center")
    ax.set_ylim(-8, 188)
    ax.set_yticks([0, 45, 90, 135, 180])
    ax.set_ylabel("angle between set members (°)")
    if axis:
        sweep_x_axis(ax, axis, x_all)
    ax.legend(fontsize=7, loc="best")


def plot_correlated(
    table: pd.DataFrame,
    axes: list[str],
    set_size: int,
    stamp: str = "",
    max_panels: int = 8,
    target=None,
):
    """Top: the best seed's feature directions along the sweep, coloured by set (members of a set
    share a colour, line style tells them apart; drawn for m = 2 only). Bottom: the angle between
    set members, every seed (grey dots), the best seed per point (coloured dots) and their mean
    (line). A sweep over n shows its largest n only."""
    axis = swept_axis(table, axes, prefer=("density",))
    table = table[table["n_features"] == table["n_features"].max()]
    angled = angle_table(table, set_size)
    best = best_along(angled, axes, axis, max_points=len(angled))
    shown = best_along(angled, axes, axis, max_points=max_panels)
    two_d = bool((angled["n_hidden"] == 2).all())
    canvas, panels, (plot,) = panels_over_plots(len(shown) if two_d else 0, 1, target=target)
    _draw_panels(panels, shown, axis, set_size)
    _draw_angles(plot, angled, best, axis, set_size)
    kinds = "/".join(sorted(angled["data_kind"].unique())) if "data_kind" in angled else "?"
    n, m = int(angled["n_features"].iloc[0]), int(angled["n_hidden"].iloc[0])
    title = (
        f"{kinds} sets of {set_size} (n={n}, m={m}): colour = set; best of {angled['seed'].nunique()} "
        f"seed(s) by loss. Angles of dropped features (‖W_i‖ < {REPRESENTED}) are not drawn."
    )
    return finish(
        canvas, stamp, title, fontsize=9, wrap=True, layout=dict(top=0.86, bottom=0.12, right=0.88)
    )
