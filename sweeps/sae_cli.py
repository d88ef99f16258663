"""``toymodels-sae DIR``: train sparse autoencoders on the hidden activations of a stored sweep's toy
models and score them against the true features (Sharkey et al. 2022; SCIENCE.md §1).

    toymodels-sae runs/tms_intro --l1 0.03,0.1,0.3 --dict-sizes n,2n --kind both --seeds 2

Runs in this process (no Ray): each (n_hidden, n_features) shape × dictionary size × kind is one
compiled program vmapped over toy models × L1 coefficients × SAE seeds. Writes DIR/sae.parquet
(one row per SAE) and DIR/figures/sae_recovery.{png,pdf}.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SAE_TABLE = "sae.parquet"
KIND_CHOICES = ("plain", "gated", "both")
SCORES = ("mmcs", "mmcs_reverse", "n_dead", "dead_fraction", "l0", "mse", "fvu", "loss")


class UsageError(ValueError):
    """A bad option: reported with the option's name and exit status 2, before any compute."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")


def parse_floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(option, f"expected comma-separated positive numbers, got {text!r}") from None
    if not values:
        raise UsageError(option, "expected at least one positive number (e.g. 0.03,0.1,0.3)")
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise UsageError(option, f"every value must be a finite number > 0, got {text!r}")
    return values


def parse_dict_sizes(text: str) -> list[str]:
    """Dictionary sizes: integers ≥ 1, or multiples of the toy model's feature count (``n``, ``2n``)."""
    sizes = [v.strip() for v in text.split(",") if v.strip()]
    if not sizes:
        raise UsageError("--dict-sizes", "expected at least one size: integers >= 1 or multiples of n (n, 2n)")
    for size in sizes:
        match = re.fullmatch(r"(\d*)n|(\d+)", size)
        if not match or int(match.group(1) or match.group(2) or 1) < 1:
            raise UsageError("--dict-sizes", f"{size!r} is not an integer >= 1 or a multiple of n (n, 2n, ...)")
    return sizes


def resolve_dict_size(size: str, n_features: int) -> int:
    if size.endswith("n"):
        return int(size[:-1] or 1) * n_features
    return int(size)


def positive_int(option: str, value: int) -> int:
    if value < 1:
        raise UsageError(option, f"must be an integer >= 1, got {value}")
    return value


def select_models(table: pd.DataFrame, query: str | None) -> pd.DataFrame:
    if not query:
        return table
    try:
        chosen = table.query(query)
    except (NameError, SyntaxError, ValueError, TypeError, KeyError) as error:  # what a bad query raises
        raise UsageError("--models", f"bad query {query!r} ({type(error).__name__}: {error}); "
                         f"columns: {', '.join(c for c in table.columns if table[c].dtype != object)}") from None
    if chosen.empty:
        raise UsageError("--models", f"query {query!r} selects no model out of {len(table)}")
    return chosen


def toy_measures(W_NxHxF: np.ndarray, density_NxF: np.ndarray) -> dict:
    """The toy models' superposition (SCIENCE.md §5) beside each SAE's scores."""
    from toymodels import metrics
    from toymodels.sae import REPRESENTED_NORM

    shown = metrics.feature_norms(W_NxHxF) >= REPRESENTED_NORM
    return {
        "interference_mean": metrics.interference(W_NxHxF).mean(axis=-1),
        "dims_per_feature": metrics.dimensions_per_feature(W_NxHxF),
        "n_represented": shown.sum(axis=-1),
        "true_l0": (density_NxF * shown).sum(axis=-1),  # expected active represented features per input
    }


def train_group(models: pd.DataFrame, axes: list[str], dict_size: int, kind: str, args) -> pd.DataFrame:
    """Every SAE of one toy-model shape, dictionary size and kind, in one compiled program."""
    import jax

    from sweeps.store import as_matrix
    from toymodels.sae import SaeSpec, chance_mmcs, decoder, sae_keys, train_saes

    spec = SaeSpec(dict_size=dict_size, steps=args.steps, batch_size=args.batch, kind=kind, lr=args.lr,
                   eval_batch=args.eval_batch)
    combos = list(itertools.product(range(len(models)), args.l1, range(args.seeds)))
    toy_i = np.array([c[0] for c in combos])
    W = as_matrix(models["W"]).astype(np.float32)
    density = as_matrix(models["feature_density"]).astype(np.float32)
    uids = models["uid"].to_numpy(np.int64)
    keys = sae_keys(args.base_seed, uids[toy_i], [c[2] for c in combos])
    result = jax.device_get(train_saes(spec, keys, W[toy_i], density[toy_i],
                                       np.array([c[1] for c in combos], np.float32)))
    W_dec = np.asarray(jax.vmap(decoder)(result.params))
    measures = toy_measures(W.astype(np.float64), density.astype(np.float64))
    chance = chance_mmcs(W.shape[1], dict_size)
    rows = []
    for k, (i, l1, seed) in enumerate(combos):
        toy = models.iloc[i]
        row = {"uid": int(toy["uid"]), "toy_seed": int(toy["seed"]), **{a: toy[a] for a in axes}}
        row.update(model=toy["model"], n_features=int(toy["n_features"]), n_hidden=int(toy["n_hidden"]),
                   toy_loss=float(toy["loss"]), **{name: float(v[i]) for name, v in measures.items()})
        row.update(kind=kind, dict_size=dict_size, l1=float(l1), sae_seed=seed, steps=args.steps,
                   batch_size=args.batch, lr=args.lr)
        row.update({name: float(getattr(result.scores, name)[k]) for name in SCORES}, mmcs_chance=chance)
        row.update(W_dec=W_dec[k].tolist(), b_dec=np.asarray(result.params.b_dec_H[k]).tolist())
        rows.append(row)
    return pd.DataFrame(rows)


def write_table_atomically(path: Path, table: pd.DataFrame) -> None:
    """Temporary file beside the target, then rename: readers see the old table or the new one."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, path)


SUMMARY_COLUMNS = ["mmcs", "mmcs_chance", "mmcs_reverse", "l0", "true_l0", "dead_fraction", "fvu"]


def summary(table: pd.DataFrame, seconds: float) -> str:
    means = table.groupby(["kind", "dict_size", "l1"])[SUMMARY_COLUMNS].mean()
    head = (f"{len(table)} SAEs on {table['uid'].nunique()} toy models in {seconds:.1f}s "
            "(means over toy models and seeds):")
    return f"{head}\n{means.round(3).to_string()}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toymodels-sae", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a finished sweep's output directory (holds results.parquet)")
    parser.add_argument("--l1", default="0.03,0.1,0.3",
                        help="L1 coefficients λ > 0, comma-separated (default %(default)s)")
    parser.add_argument("--dict-sizes", default="n,2n",
                        help="dictionary sizes: integers >= 1, or multiples of the toy's n features "
                             "(default %(default)s)")
    parser.add_argument("--kind", default="both", help=f"one of {', '.join(KIND_CHOICES)} (default %(default)s)")
    parser.add_argument("--steps", type=int, default=3000, help="training steps per SAE (default %(default)s)")
    parser.add_argument("--batch", type=int, default=1024,
                        help="activations per step, drawn fresh (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=1, help="SAE seeds per (toy model, λ) (default %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default %(default)s)")
    parser.add_argument("--eval-batch", type=int, default=8192, help="fixed evaluation inputs (default %(default)s)")
    parser.add_argument("--base-seed", type=int, default=0, help="root of every SAE's key (default %(default)s)")
    parser.add_argument("--models", help="pandas query selecting toy models, e.g. 'seed == 0 and density < 0.5'")
    return parser


def check_args(args) -> None:
    args.l1 = parse_floats(args.l1, "--l1")
    args.dict_sizes = parse_dict_sizes(args.dict_sizes)
    if args.kind not in KIND_CHOICES:
        raise UsageError("--kind", f"{args.kind!r} is not one of {', '.join(KIND_CHOICES)}")
    for option in ("steps", "batch", "seeds", "eval_batch"):
        positive_int("--" + option.replace("_", "-"), getattr(args, option))
    if not np.isfinite(args.lr) or args.lr <= 0:
        raise UsageError("--lr", f"must be a finite number > 0, got {args.lr}")


def run(args, sweep) -> pd.DataFrame:
    models = select_models(sweep.table, args.models)
    kinds = ("plain", "gated") if args.kind == "both" else (args.kind,)
    parts = []
    for (_, n_features), group in models.groupby(["n_hidden", "n_features"], sort=True):
        sizes = sorted({resolve_dict_size(s, int(n_features)) for s in args.dict_sizes})
        for dict_size, kind in itertools.product(sizes, kinds):
            parts.append(train_group(group, sweep.axes, dict_size, kind, args))
    return pd.concat(parts, ignore_index=True)


def main(argv=None) -> None:
    from analysis.sweep import StoredSweep

    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        sweep = StoredSweep.load(args.sweep_dir)
        if sweep.table.empty:
            raise UsageError("sweep_dir", f"{args.sweep_dir} holds no finished model yet")
        select_models(sweep.table, args.models)
    except (UsageError, FileNotFoundError) as error:
        print(f"toymodels-sae: error: {error}", file=sys.stderr)
        sys.exit(2)
    start = time.perf_counter()
    table = run(args, sweep)
    seconds = time.perf_counter() - start
    write_table_atomically(sweep.root / SAE_TABLE, table)
    print(summary(table, seconds))
    print(sweep.root / SAE_TABLE)
    for path in draw(table, sweep):
        print(path)


def draw(table: pd.DataFrame, sweep) -> list[Path]:
    import matplotlib.pyplot as plt

    from analysis.figures.sae import plot_sae_recovery

    out = sweep.root / "figures"
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_sae_recovery(table, stamp=sweep.stamp())
    paths = [out / f"sae_recovery.{fmt}" for fmt in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


if __name__ == "__main__":
    main()
