"""``toymodels-sae DIR``: train sparse autoencoders on the hidden activations of a stored sweep's toy
models and score them against the true features (Sharkey et al. 2022; SCIENCE.md §1; issue 16).

    toymodels-sae runs/tms_intro --l1 0.03,0.1,0.3 --dict-sizes n,2n --kind both --seeds 2

Runs in this process (no Ray): each (model kind, n_hidden, n_features) × dictionary size × SAE
kind is one compiled program vmapped over toy models × sparsity settings × SAE seeds. Each toy
model's SAEs see that model's own data kind through its own forward pass (``toymodels.sae.toy``).
Writes DIR/sae.parquet (one row per SAE); ``toymodels-figures DIR`` draws it.
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
KIND_GROUPS = {"both": ("plain", "gated")}  # plus "all": every registered kind
SCORES = ("mmcs", "mmcs_reverse", "n_dead", "dead_fraction", "l0", "true_l0", "mse", "fvu", "h_var", "gamma",
          "precision", "recall", "f1", "loss")


class UsageError(ValueError):
    """A bad option: reported with the option's name and exit status 2, before any compute."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")


def parse_numbers(text: str, option: str, kind=float) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(option, f"expected comma-separated positive numbers, got {text!r}") from None
    if not values:
        raise UsageError(option, "expected at least one positive number (e.g. 0.03,0.1,0.3)")
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise UsageError(option, f"every value must be a finite number > 0, got {text!r}")
    return values


def parse_kinds(text: str) -> list[str]:
    from toymodels.sae import SAE_KINDS

    if text == "all":
        return list(SAE_KINDS.names())
    kinds = list(KIND_GROUPS.get(text, [k.strip() for k in text.split(",") if k.strip()]))
    for kind in kinds:
        if kind not in SAE_KINDS:
            raise UsageError("--kind", f"{kind!r} is not one of {', '.join(SAE_KINDS.names())}, both, all")
    return kinds


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


def load_sweep(root: Path) -> tuple[pd.DataFrame, dict]:
    """The stored sweep's table and config, through the store's public reader."""
    from sweeps.store import RESULTS, read_config, read_results

    if not (root / RESULTS).exists():
        raise UsageError("sweep_dir", f"{root} holds no {RESULTS}: is it a sweep's output directory (sweep.out)?")
    table = read_results(root)
    if table.empty:
        raise UsageError("sweep_dir", f"{root} holds no finished model yet")
    return table, read_config(root)


def stored_data_spec(config: dict):
    """The sweep's DataSpec (kind, set size, magnitude, rest scale) as the planner built it, after
    loading the sweep's plugin files (a user's kinds)."""
    from omegaconf import OmegaConf

    from sweeps.config_kinds import data_spec_of
    from toymodels.plugins import load_plugins

    load_plugins(config.get("plugins", []))
    return data_spec_of(OmegaConf.create(config))


def toy_arrays(models: pd.DataFrame, model: str, n: int, m: int) -> dict:
    """Every toy model's parameters (rebuilt from the stored columns of the kind's parameter
    names) and feature densities, stacked along a leading model axis."""
    from sweeps.store import as_matrix
    from toymodels.sae.toy import param_names

    names = param_names(model, n, m)
    missing = [name for name in names if name not in models.columns]
    if missing:
        raise UsageError("sweep_dir", f"the stored {model!r} models have no column {missing[0]!r}")
    params = {name: np.stack([np.asarray(np.asarray(v, dtype=object).tolist(), np.float32) for v in models[name]])
              for name in names}
    return {"params": params, "density_F": as_matrix(models["feature_density"]).astype(np.float32)}


def toy_measures(W_NxHxF: np.ndarray) -> dict:
    """The toy models' superposition (SCIENCE.md §5) beside each SAE's scores."""
    from toymodels import metrics

    return {"interference_mean": metrics.interference(W_NxHxF).mean(axis=-1),
            "dims_per_feature": metrics.dimensions_per_feature(W_NxHxF)}


def settings(kind: str, args) -> list[tuple[str, float]]:
    """The sparsity settings of one SAE kind: ("k", k) for top-k kinds, ("l1", λ) otherwise."""
    from toymodels.sae import SAE_KINDS

    return [("k", k) for k in args.k] if SAE_KINDS.get(kind).top_k else [("l1", v) for v in args.l1]


def train_group(models: pd.DataFrame, axes: list[str], source, dict_size: int, kind: str, args) -> pd.DataFrame:
    """Every SAE of one toy-model kind and shape, dictionary size and SAE kind, in one program."""
    import jax

    from toymodels.sae import SaeSpec, chance_mmcs, decoder, hparams, mcc, sae_keys, split_keys, train_saes

    combos = list(itertools.product(range(len(models)), settings(kind, args), range(args.seeds)))
    toy_i = np.array([c[0] for c in combos])
    values = {name: [c[1][1] if c[1][0] == name else default for c in combos]
              for name, default in (("l1", 0.0), ("k", 1))}
    k_max = max(values["k"]) if settings(kind, args)[0][0] == "k" else 0
    spec = SaeSpec(dict_size=dict_size, kind=kind, steps=args.steps, batch_size=args.batch, k_max=k_max,
                   resample_every=args.resample_every, ortho=args.ortho > 0, eval_batch=args.eval_batch)
    arrays = toy_arrays(models, source.model, source.n_features, source.n_hidden)
    per_sae = jax.tree.map(lambda a: a[toy_i], arrays)
    uids = models["uid"].to_numpy(np.int64)
    init_keys, data_keys = split_keys(sae_keys(args.base_seed, uids[toy_i], [c[2] for c in combos]))
    hp = hparams(len(combos), lr=args.lr, l1=values["l1"], k=values["k"], bandwidth=args.bandwidth, ortho=args.ortho)
    result = jax.device_get(train_saes(spec, source, init_keys, hp, per_sae, data_keys))
    W_dec = np.asarray(jax.vmap(decoder)(result.params))
    truth = np.asarray(jax.vmap(source.truth)(arrays))
    shown = np.asarray(jax.vmap(source.represented)(arrays))
    from sweeps.store import as_matrix

    measures = toy_measures(np.stack([as_matrix(w) for w in models["W"]]))
    chance = chance_mmcs(source.n_hidden, dict_size)
    rows = []
    for j, (i, (name, value), seed) in enumerate(combos):
        toy = models.iloc[i]
        row = {"uid": int(toy["uid"]), "toy_seed": int(toy["seed"]), **{a: toy[a] for a in axes if a in toy}}
        row.update(model=source.model, data_kind=source.data.kind, n_features=source.n_features,
                   n_hidden=source.n_hidden, toy_loss=float(toy["loss"]), n_represented=int(shown[i].sum()),
                   **{key: float(v[i]) for key, v in measures.items()})
        row.update(kind=kind, dict_size=dict_size, sparsity=float(value), l1=float(values["l1"][j]),
                   k=int(values["k"][j]) if name == "k" else 0, sae_seed=seed, steps=args.steps,
                   batch_size=args.batch, lr=args.lr)
        row.update({s: float(getattr(result.scores, s)[j]) for s in SCORES}, mmcs_chance=chance,
                   mcc=mcc(W_dec[j], truth[i], shown[i]), absorption=float(result.scores.absorption[j]),
                   n_composed=int(result.scores.n_composed[j]))
        row.update(W_dec=W_dec[j].tolist(), b_dec=np.asarray(result.params["b_dec_H"][j]).tolist(),
                   max_cos=np.asarray(result.scores.max_cos_D[j]).tolist(), curve=np.asarray(result.curve[j]).tolist())
        rows.append(row)
    return pd.DataFrame(rows)


def write_table_atomically(path: Path, table: pd.DataFrame) -> None:
    """Temporary file beside the target, then rename: readers see the old table or the new one."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, path)


SUMMARY_COLUMNS = ["mmcs", "mmcs_chance", "mcc", "l0", "true_l0", "dead_fraction", "fvu"]


def summary(table: pd.DataFrame, seconds: float) -> str:
    means = table.groupby(["kind", "dict_size", "sparsity"])[SUMMARY_COLUMNS].mean()
    head = (f"{len(table)} SAEs on {table['uid'].nunique()} toy models in {seconds:.1f}s "
            "(means over toy models and seeds; sparsity: λ, or k for top-k kinds):")
    return f"{head}\n{means.round(3).to_string()}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toymodels-sae", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a finished sweep's output directory (holds results.parquet)")
    parser.add_argument("--l1", default="0.03,0.1,0.3",
                        help="λ > 0 of the L1 kinds (L0 for jumprelu), comma-separated (default %(default)s)")
    parser.add_argument("--k", default="1,2", help="k of the top-k kinds, comma-separated (default %(default)s)")
    parser.add_argument("--dict-sizes", default="n,2n",
                        help="dictionary sizes: integers >= 1, or multiples of the toy's n features "
                             "(default %(default)s)")
    parser.add_argument("--kind", default="both",
                        help="SAE kinds, comma-separated, or both (plain,gated) or all (default %(default)s)")
    parser.add_argument("--steps", type=int, default=3000, help="training steps per SAE (default %(default)s)")
    parser.add_argument("--batch", type=int, default=1024,
                        help="activations per step, drawn fresh (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=1, help="SAE seeds per (toy model, λ or k) (default %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default %(default)s)")
    parser.add_argument("--bandwidth", type=float, default=1e-3, help="JumpReLU's ε (default %(default)s)")
    parser.add_argument("--ortho", type=float, default=0.0,
                        help="decoder orthogonality weight λ_o >= 0 (default %(default)s: off)")
    parser.add_argument("--resample-every", type=int, default=0,
                        help="resample latents dead over this many steps (default %(default)s: never)")
    parser.add_argument("--eval-batch", type=int, default=8192, help="fixed evaluation inputs (default %(default)s)")
    parser.add_argument("--base-seed", type=int, default=0, help="root of every SAE's key (default %(default)s)")
    parser.add_argument("--models", help="pandas query selecting toy models, e.g. 'seed == 0 and density < 0.5'")
    return parser


def check_args(args) -> None:
    args.l1 = parse_numbers(args.l1, "--l1")
    args.k = parse_numbers(args.k, "--k", int)
    args.dict_sizes = parse_dict_sizes(args.dict_sizes)
    args.kinds = parse_kinds(args.kind)
    for option in ("steps", "batch", "seeds", "eval_batch"):
        if getattr(args, option) < 1:
            raise UsageError("--" + option.replace("_", "-"), f"must be an integer >= 1, got {getattr(args, option)}")
    for option in ("lr", "bandwidth"):
        if not np.isfinite(getattr(args, option)) or getattr(args, option) <= 0:
            raise UsageError(f"--{option}", f"must be a finite number > 0, got {getattr(args, option)}")
    if not np.isfinite(args.ortho) or args.ortho < 0:
        raise UsageError("--ortho", f"must be a finite number >= 0, got {args.ortho}")
    if args.resample_every < 0:
        raise UsageError("--resample-every", f"must be an integer >= 0, got {args.resample_every}")


def plan(args, table: pd.DataFrame, data_spec) -> list[tuple]:
    """(models, source, dict size, kind) of every program, checked before any compute."""
    from toymodels.sae import SAE_KINDS
    from toymodels.sae.toy import ToySource

    groups = []
    for (model, m, n), models in select_models(table, args.models).groupby(["model", "n_hidden", "n_features"],
                                                                            sort=True):
        source = ToySource(model=str(model), data=data_spec, n_features=int(n), n_hidden=int(m))
        sizes = sorted({resolve_dict_size(s, int(n)) for s in args.dict_sizes})
        for dict_size, kind in itertools.product(sizes, args.kinds):
            if SAE_KINDS.get(kind).top_k and max(args.k) > dict_size:
                raise UsageError("--k", f"k={max(args.k)} exceeds dictionary size {dict_size} (n={n})")
            groups.append((models, source, dict_size, kind))
    return groups


def main(argv=None) -> None:
    from toymodels.registry import ConfigError

    args = build_parser().parse_args(argv)
    root = Path(args.sweep_dir)
    try:
        check_args(args)
        table, config = load_sweep(root)
        groups = plan(args, table, stored_data_spec(config))
    except (UsageError, ConfigError) as error:
        print(f"toymodels-sae: error: {error}", file=sys.stderr)
        sys.exit(2)
    axes = list(config.get("sweep", {}).get("grid", {}))
    start = time.perf_counter()
    parts = [train_group(models, axes, source, dict_size, kind, args) for models, source, dict_size, kind in groups]
    out = pd.concat(parts, ignore_index=True)
    seconds = time.perf_counter() - start
    write_table_atomically(root / SAE_TABLE, out)
    print(summary(out, seconds))
    print(root / SAE_TABLE)


if __name__ == "__main__":
    main()
