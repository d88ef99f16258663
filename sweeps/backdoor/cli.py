"""``toymodels-backdoor DIR``: score backdoor detectors on a stored sweep's models (issue 17 item 1;
``sweeps.backdoor.evaluate``, ``sweeps.backdoor.detect``) and write DIR/backdoor.parquet, which
``toymodels-figures`` draws.

    toymodels-sweep experiment=backdoor_small && toymodels-backdoor runs/backdoor_small && toymodels-figures runs/backdoor_small

Fresh-data sweeps (the ReLU model, last feature the backdoor): for every model, a trusted set D of
``--trusted`` inputs with the backdoor off, ``--test`` inputs per test set, and every detector; the
SAE detectors use a plain SAE trained on D's hidden vectors (``toymodels.sae.train_saes`` on the
benign columns of W and their densities: exactly D's distribution, drawn fresh every step), one
compiled program per model shape. Finite-data sweeps with a repeated point: positives are that
point with its magnitudes × U[0.9, 1.1], negatives points with as many active features, half of
them the point's and half others, every value fresh U[0, 1] (so that density alone does not tell
them apart), all rescaled to unit norm; D fresh points; the oracle's atoms are all n feature
directions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

BACKDOOR_TABLE = "backdoor.parquet"


class UsageError(ValueError):
    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")


def _rng(seed: int, uid: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(uid)])


def _W(row) -> np.ndarray:
    return np.stack([np.asarray(r, np.float64) for r in row["W"]])


def train_trusted_saes(models: pd.DataFrame, args) -> dict:
    """uid → (numpy SAE parameters, MMCS against the benign directions): plain SAEs on each model's
    benign hidden vectors h = W_b x (x plain sparse at the model's benign densities, as the
    trusted set D is drawn: ``sweeps.backdoor.evaluate.benign``), one compiled program per (m, n) shape.
    The one place that calls the SAE trainer (``toymodels.sae``)."""
    import jax

    from toymodels.data import data_spec
    from toymodels.sae import SaeSpec, decoder, hparams, sae_keys, split_keys, train_saes
    from toymodels.sae.toy import ToySource

    out = {}
    for (m, n), group in models.groupby(["n_hidden", "n_features"], sort=True):
        spec = SaeSpec(
            dict_size=max(1, round(args.sae_dict * (int(n) - 1))),
            steps=args.sae_steps,
            kind="plain",
        )
        # h = W_b x is the linear model's hidden layer on the benign features alone
        source = ToySource(
            model="linear", data=data_spec("sparse"), n_features=int(n) - 1, n_hidden=int(m)
        )
        W_b = np.stack([_W(r)[:, :-1] for _, r in group.iterrows()]).astype(np.float32)
        density = np.stack(
            [np.asarray(r["feature_density"][:-1], np.float32) for _, r in group.iterrows()]
        )
        arrays = {
            "params": {"W": W_b, "b": np.zeros(density.shape, np.float32)},
            "density_F": density,
        }
        uids = group["uid"].to_numpy(np.int64)
        init_keys, data_keys = split_keys(sae_keys(args.seed, uids, np.zeros(len(uids))))
        hp = hparams(len(uids), l1=args.sae_l1)
        result = jax.device_get(train_saes(spec, source, init_keys, hp, arrays, data_keys))
        W_dec = np.asarray(jax.vmap(decoder)(result.params))
        for i, uid in enumerate(uids):
            out[int(uid)] = (
                {
                    "W_enc": np.asarray(result.params["W_enc_DxH"][i], np.float64),
                    "b_enc": np.asarray(result.params["b_enc_D"][i], np.float64),
                    "W_dec": W_dec[i].astype(np.float64),
                    "b_dec": np.asarray(result.params["b_dec_H"][i], np.float64),
                },
                float(result.scores.mmcs[i]),
            )
    return out


def fresh_rows(table: pd.DataFrame, axes: list[str], args) -> pd.DataFrame:
    from sweeps.backdoor.evaluate import REPRESENTED, evaluate
    from toymodels.metrics import interference

    saes = train_trusted_saes(table, args) if args.sae_steps else {}
    rows = []
    for _, row in table.iterrows():
        W = _W(row)
        sae, mmcs = saes.get(int(row["uid"]), (None, float("nan")))
        meta = {
            "uid": int(row["uid"]),
            "seed": int(row["seed"]),
            **{a: row[a] for a in axes if a in row},
            "n_features": int(row["n_features"]),
            "n_hidden": int(row["n_hidden"]),
            "loss": float(row["loss"]),
            "backdoor_norm": float(np.linalg.norm(W[:, -1])),
            "represented": bool(np.linalg.norm(W[:, -1]) >= REPRESENTED),
            "backdoor_interference": float(interference(W)[-1]),
            "sae_mmcs": mmcs,
        }
        p = float(row["feature_density"][0])
        for scored in evaluate(W, p, _rng(args.seed, row["uid"]), args.trusted, args.test, sae):
            rows.append({**meta, **scored})
    return pd.DataFrame(rows)


def _finite_specs(root: Path) -> dict:
    """uid → FiniteSpec, re-planned from the stored config (the same planner as the sweep's)."""
    from omegaconf import OmegaConf

    from sweeps.config import Config
    from sweeps.plan import plan_sweep
    from sweeps.store import read_config

    config = cast(
        Config,
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), read_config(root))),
    )
    return {point.uid: spec for spec, point in plan_sweep(config).units}


def _unit(x_NxF: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x_NxF, axis=1, keepdims=True)
    return x_NxF / np.where(norm > 0, norm, 1.0)


def finite_rows(table: pd.DataFrame, root: Path, args) -> pd.DataFrame:
    import jax.numpy as jnp

    from sweeps.backdoor import detect
    from sweeps.backdoor.evaluate import benign, scores
    from toymodels.finite import training_set

    specs = _finite_specs(root)
    rows = []
    for _, row in table[table["n_repeated"] > 0].iterrows():
        spec, W, p = specs[int(row["uid"])], _W(row), float(row["density"])
        points, _ = training_set(spec, jnp.float32(p), jnp.uint32(int(row["dataset_seed"])))
        x_rep = np.zeros(spec.n_features)
        np.add.at(x_rep, np.asarray(points.idx_NxK[0]), np.asarray(points.val_NxK[0], np.float64))
        active = np.flatnonzero(x_rep)
        rng = _rng(args.seed, row["uid"])
        positives = _unit(
            x_rep * np.where(x_rep > 0, rng.uniform(0.9, 1.1, (args.test, spec.n_features)), 0.0)
        )
        negatives = np.zeros((args.test, spec.n_features))
        others = np.setdiff1d(np.arange(spec.n_features), active)
        for i in range(args.test):  # as many active features: half of the point's, half fresh ones
            shared = rng.choice(active, size=-(-len(active) // 2), replace=False)
            fresh = rng.choice(others, size=len(active) - len(shared), replace=False)
            negatives[i, np.concatenate([shared, fresh])] = rng.random(len(active))
        trusted = _unit(benign(rng, spec.n_features, p, args.trusted)) @ W.T
        k = max(W.shape[0] - 1, 1)
        pos, neg = (scores(W, trusted, _unit(x) @ W.T, k, atoms=W) for x in (positives, negatives))
        meta = {
            "uid": int(row["uid"]),
            "seed": int(row["seed"]),
            "n_features": spec.n_features,
            "n_hidden": spec.n_hidden,
            "n_train": spec.n_train,
            "repeats": max(spec.repeats, 1),
            "dataset_seed": int(row["dataset_seed"]),
            "repeated_memorised": bool(row["repeated_memorised"]),
            "repeated_rank": float(row["repeated_rank"]),
            "active": len(active),
        }
        for detector in pos:
            rows.append(
                {
                    **meta,
                    "detector": detector,
                    "positive": "repeated",
                    "negative": "half_shared",
                    "auroc": detect.auroc(pos[detector], neg[detector]),
                    "tpr_at_1pct": detect.tpr_at_fpr(pos[detector], neg[detector], 0.01),
                }
            )
    return pd.DataFrame(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toymodels-backdoor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sweep_dir", help="a finished sweep's output directory (holds results.parquet)"
    )
    parser.add_argument(
        "--trusted",
        type=int,
        default=100_000,
        help="trusted inputs D per model (default %(default)s)",
    )
    parser.add_argument(
        "--test", type=int, default=4096, help="inputs per test set (default %(default)s)"
    )
    parser.add_argument(
        "--sae-steps",
        type=int,
        default=3000,
        help="SAE training steps; 0: no SAE detectors (default %(default)s)",
    )
    parser.add_argument(
        "--sae-l1", type=float, default=0.03, help="the SAE's L1 coefficient (default %(default)s)"
    )
    parser.add_argument(
        "--sae-dict",
        type=float,
        default=1.0,
        help="SAE dictionary size as a multiple of the benign features n_b (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="root of the test sets' and SAEs' randomness"
    )
    return parser


def check_args(args) -> None:
    for option in ("trusted", "test"):
        if getattr(args, option) < 2:
            raise UsageError(f"--{option}", f"must be an integer >= 2, got {getattr(args, option)}")
    if args.sae_steps < 0:
        raise UsageError("--sae-steps", f"must be an integer >= 0, got {args.sae_steps}")
    if not (np.isfinite(args.sae_l1) and args.sae_l1 > 0):
        raise UsageError("--sae-l1", f"must be a finite number > 0, got {args.sae_l1}")
    if not (np.isfinite(args.sae_dict) and args.sae_dict > 0):
        raise UsageError("--sae-dict", f"must be a finite number > 0, got {args.sae_dict}")


def check_sweep(table: pd.DataFrame) -> None:
    """A backdoor sweep: ReLU models with n ≥ 2 on sparse data, or finite data with a repeated point."""
    if table.empty:
        raise UsageError("sweep_dir", "holds no finished model yet")
    if "n_train" in table:
        if not (table["n_repeated"] > 0).any():
            raise UsageError(
                "sweep_dir", "finite-data sweep without a repeated point (set data.n_repeated)"
            )
        return
    wrong = sorted(set(table["model"]) - {"relu"}) + sorted(
        set(table.get("data_kind", ["sparse"])) - {"sparse"}
    )
    if wrong:
        raise UsageError(
            "sweep_dir",
            f"needs relu models on sparse data (the last feature the backdoor), got {wrong}",
        )


def main(argv=None) -> None:
    from sweeps.store import read_config, read_results, write_table

    args = build_parser().parse_args(argv)
    root = Path(args.sweep_dir)
    try:
        check_args(args)
        if not (root / "results.parquet").exists():
            raise UsageError("sweep_dir", f"{root} holds no results.parquet")
        table = read_results(root)
        check_sweep(table)
    except UsageError as error:
        print(f"toymodels-backdoor: error: {error}", file=sys.stderr)
        sys.exit(2)
    start = time.perf_counter()
    axes = list(read_config(root).get("sweep", {}).get("grid", {}))
    out = finite_rows(table, root, args) if "n_train" in table else fresh_rows(table, axes, args)
    write_table(root / BACKDOOR_TABLE, out)
    print(
        f"{root / BACKDOOR_TABLE}: {out['uid'].nunique()} models, {len(out)} rows in "
        f"{time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    main()
