"""Compressed computation (``model.kind=cc_residual``): each stored model's loss against the
naive baseline's exact loss on the same labels and on clean labels, its mixing size and the p → 0
theory (``analysis.theory.compressed``; docs/science/compressed-computation.md).

Columns added to the rows of a cc_residual sweep (``measure_table``):

- ``naive``: the best naive model's exact loss on the model's own labels; ``ratio`` = loss / naive.
- ``naive_clean``: (n − m)/n · p/6, the naive loss without mixing (Bhagat et al.'s reference);
  ``ratio_clean`` = loss / naive_clean.
- ``mixing_size``: ‖N_embed‖_F/√n, the root mean square norm of the mixing's columns that the
  model's embedding makes (≈ √(n/d)); the same for every label construction at one d (``mixing``
  is scaled to it, ``clean`` is placed at the size it leaves out).
- ``p0_bound``, ``p0_naive``: lim L/p of the Eckart–Young bound and of the naive model, for the
  model's labels; ``bound_ratio`` = their ratio (what no bias-free residual MLP can beat as p → 0).
- ``p0_opt``: lim L/p of the best one-layer solution ``p0_optimum`` finds (L-BFGS, 2 starts) for the
  model's labels, for one-layer models with n ≤ ``P0_OPT_MAX_N`` (NaN otherwise: at n = 100 it takes
  a minute per matrix); ``opt_ratio`` = p0_opt / p0_naive.
- ``gain_alignment``: the share of the read vectors' energy ‖A‖² in the m-dimensional subspace
  where TTᵀ = I − 2N + 2N² is largest (where the p → 0 bound puts the neurons); m/n for a random A,
  NaN without mixing.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from analysis.measures.model_rows import kind_options
from analysis.theory.compressed import mixing_size, naive_loss, naive_loss_clean, p0_bound, p0_naive
from sweeps.store import nested_array

KIND = "cc_residual"
P0_OPT_MAX_N = 40


def is_cc(table: pd.DataFrame) -> pd.Series:
    return table["model"] == KIND if "model" in table else pd.Series(False, index=table.index)


def _mixing(n: int, options: dict):
    from toymodels.models.compressed import mixing_matrix

    return mixing_matrix(n, int(options["d_embed"]), int(options["embed_seed"]), options["labels"])


def _embed_size(n: int, options: dict) -> float:
    from toymodels.models.compressed import mixing_matrix

    N = mixing_matrix(n, int(options["d_embed"]), int(options["embed_seed"]), "embed")
    return float(np.linalg.norm(N) / np.sqrt(n))


@functools.lru_cache(maxsize=256)
def _p0_opt(n: int, m: int, d: int, seed: int, labels: str) -> float:
    from analysis.theory.compressed import p0_optimum
    from toymodels.models.compressed import mixing_matrix

    return p0_optimum(mixing_matrix(n, d, seed, labels), m, restarts=2, maxiter=1500)["loss"]


def gain_alignment(A_MxF: np.ndarray, N: np.ndarray) -> float:
    """Share of ‖A‖² in the top-m eigenspace of I − 2N + 2N² (NaN when N = 0: no preferred
    subspace)."""
    if not np.any(N):
        return float("nan")
    A = np.asarray(A_MxF, np.float64)
    m = A.shape[0]
    _, U = np.linalg.eigh(np.eye(len(N)) - 2.0 * N + 2.0 * N @ N)
    top = U[:, -m:]
    return float(np.sum((A @ top) ** 2) / max(np.sum(A**2), 1e-30))


def measure_row(row: pd.Series) -> dict:
    n, m = int(row["n_features"]), int(row["n_hidden"])
    options = kind_options(row)
    p = np.asarray(row["feature_density"], np.float64)
    importance = np.asarray(row["feature_importance"], np.float64)
    N = _mixing(n, options)
    naive = naive_loss(N, p, m, importance)
    clean = naive_loss_clean(n, m, float(p[0]))
    bound, p0n = p0_bound(N, m), p0_naive(N, m)
    small = n <= P0_OPT_MAX_N and int(options["layers"]) == 1
    opt = (
        _p0_opt(n, m, int(options["d_embed"]), int(options["embed_seed"]), options["labels"])
        if small
        else np.nan
    )
    return {
        "density": float(p[0]),
        "labels": options["labels"],
        "d_embed": int(options["d_embed"]),
        "layers": int(options["layers"]),
        "param": options["param"],
        "n_over_m": n / m,
        "naive": naive,
        "ratio": float(row["loss"]) / naive,
        "naive_clean": clean,
        "ratio_clean": float(row["loss"]) / clean if clean > 0 else float("nan"),
        "loss_per_p": float(row["loss"]) / float(p[0]),
        "mixing_size": _embed_size(n, options),
        "mixing_size_labels": mixing_size(N) * np.sqrt(n - 1),
        "p0_bound": bound,
        "p0_naive": p0n,
        "bound_ratio": bound / p0n,
        "p0_opt": opt,
        "opt_ratio": opt / p0n,
        "gain_alignment": gain_alignment(nested_array(row["W"]), N),
    }


def measure_table(table: pd.DataFrame) -> pd.DataFrame:
    """The cc_residual rows with the measures above (the row's own columns first)."""
    rows = table[is_cc(table)]
    if rows.empty:
        return rows.assign(
            **{k: [] for k in ("naive", "ratio", "naive_clean", "ratio_clean", "mixing_size")}
        )
    measured = pd.DataFrame([measure_row(row) for _, row in rows.iterrows()], index=rows.index)
    return pd.concat([rows.drop(columns=[c for c in measured if c in rows]), measured], axis=1)


def seed_summary(
    measured: pd.DataFrame, keys: list[str], columns=("ratio", "ratio_clean", "loss_per_p")
) -> pd.DataFrame:
    """Mean, standard deviation, min and count over seeds of ``columns`` per ``keys``, with the
    theory columns (equal across seeds) carried along."""
    theory = [
        c
        for c in (
            "naive",
            "naive_clean",
            "mixing_size",
            "p0_bound",
            "p0_naive",
            "bound_ratio",
            "p0_opt",
            "opt_ratio",
        )
        if c in measured and c not in keys
    ]
    stats = measured.groupby(keys, sort=True).agg(
        **{f"{c}_{s}": (c, s) for c in columns for s in ("mean", "std", "min", "count")},
        **{c: (c, "first") for c in theory},
    )
    return stats.reset_index()


def report(table: pd.DataFrame) -> pd.DataFrame:
    """Seed means per setting: L/p, L / naive (same labels), L / naive without mixing, the p → 0
    bound and one-layer optimum ratios, and the neurons' alignment with the gain subspace."""
    measured = measure_table(table)
    keys = [
        k
        for k in ("labels", "layers", "param", "n_features", "n_hidden", "d_embed", "density")
        if k in measured
    ]
    cols = ["loss_per_p", "ratio", "ratio_clean", "gain_alignment"]
    out = measured.groupby(keys)[cols].agg(["mean", "std"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    theory = measured.groupby(keys)[["mixing_size", "bound_ratio", "opt_ratio"]].first()
    return pd.concat(
        [out, theory, measured.groupby(keys).size().rename("seeds")], axis=1
    ).reset_index()


def main(argv=None) -> None:
    """``python -m analysis.measures.compressed SWEEP_DIR``: the cc_residual models' seed means
    against the naive baseline, one row per setting."""
    import sys

    from analysis.stored_sweep import StoredSweep

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m analysis.measures.compressed SWEEP_DIR", file=sys.stderr)
        sys.exit(2)
    with pd.option_context(
        "display.max_rows", None, "display.width", 250, "display.float_format", "{:.4f}".format
    ):
        print(report(StoredSweep.load(args[0]).table).to_string(index=False))


if __name__ == "__main__":
    main()
