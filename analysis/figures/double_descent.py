"""Figures of memorisation and double descent from a finite-data sweep (Henighan et al. 2023 and
Jermyn's repeated-data extension; docs/science/metrics.md, docs/science/double-descent.md).

Every figure reads the table of ``sweeps.jobs.finite.finite_table``. Aggregation, stated on each
figure: the best init seed per dataset (lowest *training* loss: the optimisation's own criterion,
never the test loss), then mean and min–max spread over dataset seeds.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection

from analysis.figures.canvas import finish, panel_grid
from analysis.figures.panels import square_frame
from analysis.seeds import best_of_seeds, evenly_spaced
from analysis.stored_sweep import as_array

# Settings that split the curves into separate lines when they vary across the sweep.
LINE_AXES = (
    "weight_decay",
    "lr",
    "density",
    "n_features",
    "n_hidden",
    "repeats",
    "n_repeated",
    "steps",
)
SHORT = {
    "weight_decay": "wd",
    "density": "p",
    "n_features": "n",
    "n_hidden": "m",
    "repeats": "R",
    "n_repeated": "repeated",
    "steps": "steps",
    "lr": "lr",
}
JERMYN_THRESHOLD = (
    0.4  # a point repeated R ≳ 0.4 T/N times is memorised (docs/science/double-descent.md)
)
STRATEGY = "best init seed per dataset (train loss), mean and min–max over dataset seeds"


def line_axes(table: pd.DataFrame) -> list[str]:
    return [a for a in LINE_AXES if a in table and table[a].nunique() > 1]


def best_per_dataset(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (settings, T, dataset seed): the init seed with the lowest training loss."""
    keys = [a for a in (*LINE_AXES, "n_train", "dataset_seed") if a in table]
    return best_of_seeds(table, keys, loss="train_loss", sort=False)


def curves(table: pd.DataFrame, column: str) -> dict[tuple, pd.DataFrame]:
    """Per line (a setting of the varying ``LINE_AXES``): mean, min, max of ``column`` over
    dataset seeds against T."""
    best, lines = best_per_dataset(table), line_axes(table)
    groups = best.groupby(lines, sort=True) if lines else [((), best)]
    out = {}
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        stats = group.groupby("n_train")[column].agg(["mean", "min", "max", "count"]).sort_index()
        out[tuple(zip(lines, key))] = stats
    return out


def _label(key: tuple) -> str:
    return ", ".join(f"{SHORT.get(a, a)}={v:.3g}" for a, v in key) or "all models"


def _plot_curves(
    ax, table: pd.DataFrame, column: str, log_y: bool = True, style: str = "o-"
) -> None:
    items = list(curves(table, column).items())
    colors = (
        ["k"]
        if len(items) == 1
        else matplotlib.colormaps["viridis"](np.linspace(0, 0.85, len(items)))
    )
    for color, (key, stats) in zip(colors, items):
        T = stats.index.to_numpy(float)
        ax.plot(T, stats["mean"], style, color=color, ms=3.5, lw=1.3, label=_label(key))
        ax.fill_between(T, stats["min"], stats["max"], color=color, alpha=0.18, lw=0)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("training set size T")


def _generalisation_scale(ax, table: pd.DataFrame) -> None:
    """T(1 − S) ≈ 10: where Henighan et al. place the switch to generalising features."""
    if "density" in table and table["density"].nunique() == 1:
        ax.axvline(
            10.0 / float(table["density"].iloc[0]), color="0.5", ls=":", lw=1, label="T(1−S) = 10"
        )


def _title(table: pd.DataFrame) -> str:
    row = table.iloc[0]
    return (
        f"n={int(row['n_features'])}, m={int(row['n_hidden'])}, S={1 - float(row['density']):.4g}, "
        f"{int(row['steps'])} steps; {table['dataset_seed'].nunique()} dataset seed(s), {STRATEGY}"
    )


def bump_location(table: pd.DataFrame, weight_decay: float | None = None) -> float:
    """T of the test-loss bump: the interior local maximum of the mean (over dataset seeds) test
    loss with the largest prominence in log loss, i.e. the peak between the memorising small-T and
    generalising large-T regimes. NaN when the curve has no interior maximum. With several weight
    decays and none chosen, the smallest (where the bump is clearest) is used."""
    if "weight_decay" in table and table["weight_decay"].nunique() > 1:
        wd = table["weight_decay"].min() if weight_decay is None else weight_decay
        table = table[np.isclose(table["weight_decay"], wd)]
    mean = best_per_dataset(table).groupby("n_train")["test_loss"].mean().sort_index()
    T, logL = mean.index.to_numpy(float), np.log(mean.to_numpy(float))
    best, where = 0.0, float("nan")
    for i in range(1, len(T) - 1):
        if logL[i] > logL[i - 1] and logL[i] >= logL[i + 1]:
            prominence = logL[i] - max(logL[:i].min(), logL[i + 1 :].min())
            if prominence > best:
                best, where = prominence, float(T[i])
    return where


def plot_losses(table: pd.DataFrame, stamp: str = "", target=None):
    """Train and test loss against T, log-log (Henighan et al.'s double-descent figure)."""
    canvas, ((left, right),) = panel_grid(target, 1, 2, (12, 4.6), sharey=True)
    for ax, column, name in ((left, "train_loss", "Train"), (right, "test_loss", "Test")):
        _plot_curves(ax, table, column)
        _generalisation_scale(ax, table)
        ax.set_title(f"{name} loss", fontsize=10)
    left.set_ylabel("importance-weighted MSE (mean over points and features)")
    bump = bump_location(table)
    if np.isfinite(bump):
        right.axvline(bump, color="C3", lw=1, ls="--", label=f"bump at T={bump:.3g}")
    right.legend(fontsize=7)
    return finish(
        canvas, stamp, "Double descent: " + _title(table), fontsize=9, layout=(0, 0.02, 1, 0.94)
    )


def plot_norms(table: pd.DataFrame, stamp: str = "", target=None):
    """‖W‖_F and ‖b‖ against T: both peak at small T in the paper (memorising needs long vectors
    and a negative bias)."""
    canvas, (axes,) = panel_grid(target, 1, 2, (12, 4.4))
    for ax, column, name in zip(axes, ("norm_W", "norm_b"), ("‖W‖_F", "‖b‖")):
        _plot_curves(ax, table, column, log_y=False)
        _generalisation_scale(ax, table)
        ax.set_ylabel(name)
        ax.set_title(f"{name} against T", fontsize=10)
    axes[1].legend(fontsize=7)
    return finish(canvas, stamp, _title(table), fontsize=9, layout=(0, 0.02, 1, 0.94))


def _scatter_dims(ax, best: pd.DataFrame, column: str, top: int) -> None:
    rng = np.random.default_rng(0)
    for _, row in best.iterrows():
        d = np.sort(np.asarray(row[column], float))[::-1][:top]
        jitter = row["n_train"] * np.exp(rng.normal(0, 0.04, size=d.shape))
        ax.scatter(jitter, d, s=4, alpha=0.4, color="C0", lw=0)


def plot_dimensionality(table: pd.DataFrame, stamp: str = "", top: int = 50, target=None):
    """Feature and data-point dimensionality against T (docs/science/metrics.md): data points on a T-gon have
    m/T at small T; at large T a few features take the space (a pentagon: 2/5 each)."""
    best = best_per_dataset(table)
    m = int(table["n_hidden"].iloc[0])
    canvas, ((left, right),) = panel_grid(target, 1, 2, (12, 4.6), sharey=True)
    _scatter_dims(left, best, "feature_dims", top)
    _scatter_dims(right, best, "data_dims", top)
    sums = best.groupby("n_train")[["feature_dim_sum", "data_dim_sum"]].mean()
    for ax, col, name in (
        (left, "feature_dim_sum", "features"),
        (right, "data_dim_sum", "data points"),
    ):
        ax.plot(sums.index, sums[col] / m, "k-", lw=1, label=f"Σ D / m over {name} (mean)")
    T = np.geomspace(table["n_train"].min(), table["n_train"].max(), 100)
    right.plot(T, np.minimum(m / T, 1), "C3--", lw=1, label="m / T (T points on a T-gon)")
    panels = (
        (left, f"features (top {top} per model)"),
        (right, f"training points (top {top} of the first 256)"),
    )
    for ax, what in panels:
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("training set size T")
        ax.set_title(f"Dimensionality of {what}", fontsize=10)
        ax.legend(fontsize=7)
    left.set_ylabel("dimensionality D = ‖v‖⁴ / Σ (v·v')²")
    return finish(canvas, stamp, _title(table), fontsize=9, layout=(0, 0.02, 1, 0.94))


def _pick_T(values: np.ndarray, count: int) -> np.ndarray:
    values = np.sort(np.unique(values))
    return values[evenly_spaced(len(values), count)]


def _arrows(ax, V_NxH: np.ndarray, color: str, alpha: float) -> None:
    """Segments from the origin to each row (one collection: hundreds of vectors draw fast)."""
    ax.add_collection(
        LineCollection([[(0, 0), (x, y)] for x, y in V_NxH], colors=color, lw=0.8, alpha=alpha)
    )
    square_frame(ax, max(1e-6, 1.1 * np.abs(V_NxH).max()) if len(V_NxH) else 1.0)


def plot_geometry(table: pd.DataFrame, stamp: str = "", T_values=None, count: int = 6, target=None):
    """For m = 2: hidden vectors h_t = W x_t of the training points (top) and feature directions
    W_i (bottom) at chosen T. Small T: the h_t form a T-gon (memorisation); large T: a few
    features form a polygon (generalisation). One model per T: best init seed, first dataset seed,
    the first line's settings."""
    best = best_per_dataset(table)
    for a in line_axes(table):
        best = best[best[a] == best[a].iloc[0]]
    Ts = np.asarray(
        T_values if T_values is not None else _pick_T(best["n_train"].to_numpy(), count)
    )
    canvas, grid = panel_grid(target, 2, len(Ts), (2.3 * len(Ts), 5.0))
    for j, T in enumerate(Ts):
        rows = best[best["n_train"] == T].sort_values("dataset_seed")
        if rows.empty:
            grid[0, j].axis("off"), grid[1, j].axis("off")
            continue
        row = rows.iloc[0]
        W = as_array(row["W"])
        _arrows(grid[0, j], as_array(row["hidden"]), "C0", 0.7)
        norms = np.linalg.norm(W, axis=0)
        _arrows(grid[1, j], W.T[np.argsort(norms)[::-1][:200]], "C1", 0.6)
        grid[0, j].set_title(
            f"T={int(T)}\ntrain {row['train_loss']:.2g}, test {row['test_loss']:.2g}", fontsize=8
        )
    grid[0, 0].set_ylabel("hidden vectors h_t\n(first ≤256 points)", fontsize=8)
    grid[1, 0].set_ylabel("feature vectors W_i\n(200 longest)", fontsize=8)
    return finish(
        canvas,
        stamp,
        "Geometry in the hidden plane: " + _title(table),
        fontsize=8,
        layout=(0, 0.02, 1, 0.92),
    )


def plot_memorisation(table: pd.DataFrame, stamp: str = "", target=None):
    """Jermyn's repeated-data experiment: the fraction of models whose repeated point is
    memorised (its data dimensionality in the top 0.1%), against R / (T/N) with N = n features,
    one line per T; memorisation is expected from R ≈ 0.4 T/N."""
    rep = table[table["n_repeated"] > 0].copy()
    rep["R"] = rep["repeats"].clip(lower=1)
    rep["x"] = rep["R"] * rep["n_features"] / rep["n_train"]
    rep["memorised"] = rep["repeated_memorised"].astype(float)
    canvas, ((left, right),) = panel_grid(target, 1, 2, (12, 4.6))
    for color, (T, group) in zip(
        matplotlib.colormaps["plasma"](np.linspace(0, 0.85, max(rep["n_train"].nunique(), 1))),
        rep.groupby("n_train"),
    ):
        by = (
            group.groupby("x")
            .agg(
                frac=("memorised", "mean"),
                dim=("repeated_dim", "mean"),
                q=("data_dim_q999", "mean"),
            )
            .sort_index()
        )
        left.plot(by.index, by["frac"], "o-", color=color, ms=4, label=f"T={T}")
        right.plot(by.index, by["dim"], "o-", color=color, ms=4, label=f"T={T}: repeated point")
        right.plot(by.index, by["q"], ":", color=color, lw=1)
    for ax in (left, right):
        ax.axvline(JERMYN_THRESHOLD, color="0.4", ls="--", lw=1, label="R = 0.4 T/N")
        ax.set_xscale("log")
        ax.set_xlabel("R / (T/N): repeats per training-set size over features")
        ax.legend(fontsize=7)
    left.set_ylabel("fraction of models with the point memorised")
    left.set_title("Memorisation of a repeated point (dimensionality in the top 0.1%)", fontsize=10)
    right.set_ylabel("data-point dimensionality")
    right.set_title(
        "Repeated point (solid) vs the 99.9th percentile of the data (dotted)", fontsize=10
    )
    return finish(canvas, stamp, _title(rep), fontsize=9, layout=(0, 0.02, 1, 0.94))


def bump_note(sweep, **_) -> dict:
    """The T of the test-loss bump (``bump_location``), for ``toymodels-figures`` to print."""
    return {"bump_T": bump_location(sweep.table)}
