"""The paper's TMS anchors (Bushnaq et al. 2025, Table 1; docs/results/spd.md): target models
trained by our own trainer at the paper's settings, decomposed many times in one program.

Target training (the paper's appendix): AdamW, weight decay 0.01, constant learning rate 5e-3,
10,000 steps, features U[0, 1] with probability 0.05, importance 1; batch 1,024 for 5→2 and
8,192 for 40→10. The +ID variants decompose the same trained model with a fixed identity
inserted between W and Wᵀ (training with a fixed identity is training without it).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.spd.target import tms
from toymodels.spd.train import PRESETS, SpdSpec, decompose_many, hparams, spd_keys
from toymodels.train import HParams, TrainSpec, model_keys, train_many

DENSITY = 0.05
TARGET_LR = 5e-3
TARGET_WEIGHT_DECAY = 0.01
TARGET_STEPS = 10_000
TARGET_BATCH = {(5, 2): 1024, (40, 10): 8192}

# Table 1 of the paper: (MMCS, ML2R) mean ± std over the features of one decomposition.
PAPER_TABLE_1 = {
    ("tms", 5, 2): ((1.000, 0.000), (0.993, 0.002)),
    ("tms", 40, 10): ((1.000, 0.000), (1.010, 0.007)),
    ("tms_id", 5, 2): ((1.000, 0.000), (0.992, 0.010)),
    ("tms_id", 40, 10): ((1.000, 0.000), (1.031, 0.001)),
}


def train_targets(n: int, m: int, model_seeds, steps: int = TARGET_STEPS, base_seed: int = 0):
    """TMS models (kind ``relu``) trained at the paper's settings, one per seed, in one program:
    their arrays ``{"params", "density_F"}`` with a leading model axis, and their final losses."""
    seeds = list(model_seeds)
    spec = TrainSpec(
        n_features=n,
        n_hidden=m,
        model="relu",
        steps=steps,
        batch_size=TARGET_BATCH.get((n, m), 1024),
        schedule="constant",
        snapshot_every=steps,
    )
    N = len(seeds)
    hp = HParams(
        density_F=jnp.full((N, n), DENSITY),
        importance_F=jnp.ones((N, n)),
        lr=jnp.full((N,), TARGET_LR),
        weight_decay=jnp.full((N,), TARGET_WEIGHT_DECAY),
    )
    result = train_many(spec, model_keys(base_seed, seeds), hp)
    return {"params": result.params, "density_F": hp.density_F}, result.eval_loss


def preset(n: int, m: int) -> tuple[dict, dict]:
    """The paper's SPD settings for TMS n→m: (SpdSpec fields, hparams fields)."""
    return PRESETS["tms_5_2" if (n, m) == (5, 2) else "tms_40_10"]


@dataclasses.dataclass
class Decompositions:
    target: str
    n: int
    m: int
    model_index: np.ndarray  # which trained model each decomposition is of
    seed: np.ndarray  # its decomposition seed
    scores: object  # SpdScores of every decomposition (numpy)
    params: dict


def decompose(
    arrays,
    n: int,
    m: int,
    identity: bool,
    seeds,
    spec_overrides=None,
    hp_overrides=None,
    base_seed: int = 0,
) -> Decompositions:
    """Every trained model (leading axis of ``arrays``) × every decomposition seed, in one program."""
    spec_kw, hp_kw = preset(n, m)
    spec = SpdSpec(**{**spec_kw, **(spec_overrides or {}), "per_target": True})
    n_models = jax.tree.leaves(arrays)[0].shape[0]
    seeds = list(seeds)
    model_index = np.repeat(np.arange(n_models), len(seeds))
    seed = np.tile(np.asarray(seeds), n_models)
    per = jax.tree.map(lambda a: a[model_index], arrays)
    init, data = spd_keys(base_seed, model_index, seed)
    result = decompose_many(
        spec,
        tms(n, m, identity),
        init,
        hparams(len(seed), **{**hp_kw, **(hp_overrides or {})}),
        per,
        data,
    )
    return Decompositions(
        target="tms_id" if identity else "tms",
        n=n,
        m=m,
        model_index=model_index,
        seed=seed,
        scores=jax.device_get(result.scores),
        params=jax.device_get(result.params),
    )
