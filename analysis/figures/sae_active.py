"""How many features can be active at once (issue 16 item 5; experiment ``sae_active``): SAEs on
``exactly`` worlds (l of n random unit directions active per input, in m dimensions), scored
against the two scales the question is asked about: m/(8 ln n) and m.

Which MCC: SAELens's, the ``mcc`` column (``analysis.figures.sae_sweep.MCC_NAME``). "m dimensions
serve l" means: the mean MCC over seeds at (m, l) is at least ``threshold``; the largest such l
on the grid (not interpolated; not required of every smaller l) is the largest l served.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from analysis.figures.canvas import finish, panel_grid
from analysis.figures.sae_sweep import MCC_NAME, is_sae_sweep

THRESHOLD = 0.9  # mean MCC at which m dimensions are said to serve l active features


def is_active_sweep(sweep) -> bool:
    """An SAE sweep over ``active`` on an exactly world (l varies)."""
    table = sweep.table
    return (
        is_sae_sweep(sweep)
        and "active" in table
        and table["active"].nunique() > 1
        and set(table.get("world_kind", pd.Series(dtype=object))) == {"exactly"}
    )


@functools.lru_cache(maxsize=64)
def chance_mcc(n_features: int, n_hidden: int, dict_size: int, seed: int = 0) -> float:
    """SAELens's MCC of a dictionary of ``dict_size`` random unit directions against ``n_features``
    random unit directions in ``n_hidden`` dimensions: the floor a trained SAE must clear. In few
    dimensions it is high (Hungarian matching picks the best-aligned pairs among many)."""
    from toymodels.sae import mcc

    rng = np.random.default_rng(seed)
    return mcc(rng.normal(size=(n_hidden, dict_size)), rng.normal(size=(n_hidden, n_features)))


def seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean MCC and F1 over seeds per (n_features, m, l), with how many seeds each mean holds."""
    means = table.groupby(["n_features", "n_hidden", "active"], sort=True).agg(
        mcc=("mcc", "mean"),
        f1=("f1", "mean"),
        seeds=("seed", "nunique"),
        dict_size=("dict_size", "first"),
    )
    means = means.reset_index()
    means["chance_mcc"] = [
        chance_mcc(int(n), int(m), int(d))
        for n, m, d in zip(means["n_features"], means["n_hidden"], means["dict_size"])
    ]
    return means


def largest_served(means: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Per (n, m): the largest l whose mean MCC reaches ``threshold`` (NaN if none), and the two
    reference scales m/(8 ln n) and m."""
    rows = []
    for (n, m), part in means.groupby(["n_features", "n_hidden"], sort=True):
        served = part.loc[part["mcc"] >= threshold, "active"]
        rows.append(
            dict(
                n_features=n,
                n_hidden=m,
                largest_l=float(served.max()) if len(served) else math.nan,
                log_scale=m / (8 * math.log(n)),
                linear_scale=float(m),
            )
        )
    return pd.DataFrame(rows)


def _recovery_panel(
    ax, means: pd.DataFrame, served: pd.DataFrame, score: str, name: str, threshold: float
):
    for i, (m, part) in enumerate(means.groupby("n_hidden", sort=True)):
        color = f"C{i}"
        ax.plot(part["active"], part[score], "o-", ms=3.5, lw=1.3, color=color, label=f"m={m}")
        best = served.loc[served["n_hidden"] == m, "largest_l"].iloc[0]
        if score == "mcc" and np.isfinite(best):
            ax.plot(
                [best],
                part.loc[part["active"] == best, score],
                "*",
                ms=13,
                color=color,
                mec="k",
                mew=0.6,
            )
        ax.axvline(m, color=color, ls=":", lw=1)  # l = m
        if score == "mcc":  # a random dictionary's MCC at this m
            ax.axhline(part["chance_mcc"].iloc[0], color=color, lw=0.8, alpha=0.5)
        ax.axvline(
            served.loc[served["n_hidden"] == m, "log_scale"].iloc[0], color=color, ls="--", lw=0.8
        )
    if score == "mcc":
        ax.axhline(threshold, color="k", lw=0.8, ls="-.", label=f"MCC = {threshold:g}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("l (features active per input; TopK k = l)", fontsize=8)
    ax.set_title(
        f"{name} against l\ndashed: m/(8 ln n); dotted: l = m; ★ largest l served"
        + ("\nthin: a random dictionary's MCC" if score == "mcc" else ""),
        fontsize=9,
    )
    ax.set_ylim(0, 1.02)


def _scaling_panel(ax, served: pd.DataFrame, threshold: float):
    m_values = served["n_hidden"].to_numpy(float)
    ax.plot(
        m_values,
        served["largest_l"],
        "o-",
        color="k",
        lw=1.5,
        label=f"largest l with MCC ≥ {threshold:g}",
    )
    ax.plot(m_values, served["log_scale"], "--", color="C3", label="m/(8 ln n)")
    ax.plot(m_values, served["linear_scale"], ":", color="C2", label="m")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("m (hidden dimensions)", fontsize=8)
    ax.set_ylabel("l", fontsize=8)
    ax.set_title("largest l served against m", fontsize=9)
    ax.legend(fontsize=7, frameon=False)


def plot_sae_active(
    table: pd.DataFrame, stamp: str = "", target=None, threshold: float = THRESHOLD
):
    """Per m, MCC and firing F1 against l with the largest l at MCC ≥ ``threshold`` starred, and
    that largest l against m beside m/(8 ln n) and m; one row of panels per n."""
    means = seed_means(table)
    served = largest_served(means, threshold)
    worlds = sorted(means["n_features"].unique())
    canvas, axs = panel_grid(target, len(worlds), 3, (15, 4.6 * len(worlds)))
    for row, n in zip(axs, worlds):
        part, best = means[means["n_features"] == n], served[served["n_features"] == n]
        _recovery_panel(row[0], part, best, "mcc", f"MCC, n={n}", threshold)
        _recovery_panel(row[1], part, best, "f1", f"firing F1, n={n}", threshold)
        _scaling_panel(row[2], best, threshold)
    axs[0, 0].legend(fontsize=7, frameon=False)
    title = (
        f"How many features can be active at once: exactly l of n random directions in m dims, TopK SAE "
        f"with d = n, k = l ({len(table)} SAEs, mean over {table['seed'].nunique()} seed(s))\n{MCC_NAME}"
    )
    return finish(canvas, stamp, title, wrap=True, layout=(0, 0.02, 1, 0.9))


def active_note(sweep, threshold: float = THRESHOLD) -> dict:
    """The largest l served per (n, m), beside m/(8 ln n)."""
    served = largest_served(seed_means(sweep.table), threshold)
    return {
        f"largest l with MCC ≥ {threshold:g} (n={r.n_features}, m={r.n_hidden})": f"{'none' if math.isnan(r.largest_l) else int(r.largest_l)} (m/(8 ln n) = {r.log_scale:.2f}, m = {r.n_hidden})"
        for r in served.itertuples()
    }
