"""A SynthSAEBench-like world (Chanin & Garriga-Alonso 2026; SAELens ``SyntheticModel``), at full
size or scaled down: the anchor of issue 16 item 6.

SynthSAEBench-16k: 16,384 features in d = 768; Zipf firing (exponent 0.5, p from 0.4 down to
5e-4); a hierarchy of 128 roots, branching 4, depth 3, every parent's children mutually
exclusive, children's probabilities compensated and their magnitudes scaled by their parent's;
low-rank firing correlations (rank 25, scale 0.1); mean magnitudes linear from 5.0 (most frequent)
to 4.0, each feature's spread |N(0.5, 0.5)|; directions random, then 100 Adam steps (lr 3e-4)
towards orthogonality; a bias of norm 0.5. Published at width 4096, L0 25 (SAELens docs,
"SynthSAEBench", mean of seeds): MCC 0.604 standard L1, 0.757 BatchTopK, 0.753 JumpReLU,
0.793 Matryoshka. Our world is built by our own code from the same recipe, not their stored
model, so the numbers to compare are orderings and rough levels, not digits.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from toymodels.sae.build import (
    compensate,
    hierarchy,
    low_rank_correlation,
    make_world,
    unit_columns,
    zipf_probabilities,
)
from toymodels.sae.worlds import World, WorldSource

PUBLISHED_MCC_L0_25 = {"plain": 0.604, "batchtopk": 0.757, "jumprelu": 0.753, "matryoshka": 0.793}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    n_features: int = 16_384
    n_hidden: int = 768
    zipf_exponent: float = 0.5
    p_max: float = 0.4
    p_min: float = 5e-4
    roots: int = 128
    branching: int = 4
    depth: int = 3
    correlation_rank: int = 25
    correlation_scale: float = 0.1
    magnitude_start: float = 5.0
    magnitude_end: float = 4.0
    spread_mean: float = 0.5
    spread_std: float = 0.5
    orthogonalize_steps: int = 100
    orthogonalize_lr: float = 3e-4
    bias_norm: float = 0.5
    seed: int = 42


SYNTHBENCH_16K = BenchConfig()
# Scaled down for a CPU test: 64× fewer features in 24× fewer dimensions (d/n 1/8 instead of
# 1/21, so that a short run learns), 2 roots of the same trees (170 features in the forest), p_min
# raised so the rarest features still fire about once in a hundred inputs, correlation rank 8.
# At width 64 (n/4, as 4,096 of 16,384) the true L0 of the 64 most frequent features is ~2.2.
SYNTHBENCH_SMALL = BenchConfig(n_features=256, n_hidden=32, p_min=1e-2, roots=2, correlation_rank=8)


def bench_source(c: BenchConfig) -> WorldSource:
    """The static part of ``c``'s world (what a compiled program fixes), without building it."""
    return WorldSource(
        c.n_features,
        c.n_hidden,
        firing="correlated" if c.correlation_rank else "independent",
        magnitude="normal",
        roots=c.roots,
        branching=c.branching,
        depth=c.depth,
        exclusive=True,
        scale_children=True,
    )


def build(config: BenchConfig = SYNTHBENCH_16K) -> tuple[WorldSource, World]:
    """The world of ``config`` (deterministic in ``config.seed``)."""
    c, rng = config, np.random.default_rng(config.seed)
    n, m = c.n_features, c.n_hidden
    p_N = zipf_probabilities(n, c.zipf_exponent, c.p_max, c.p_min)
    parent_N, _ = hierarchy(n, c.roots, c.branching, c.depth)
    q_N = compensate(p_N, parent_N, exclusive=True)
    factor_NxR, _ = low_rank_correlation(n, c.correlation_rank, c.correlation_scale, rng)
    scale_N = np.linspace(c.magnitude_start, c.magnitude_end, n)
    std_N = np.abs(rng.normal(c.spread_mean, c.spread_std, n))
    F_HxN = orthogonalize(
        unit_columns(rng.normal(size=(m, n))), c.orthogonalize_steps, c.orthogonalize_lr
    )
    bias_H = c.bias_norm * unit_columns(rng.normal(size=(m, 1)))[:, 0]
    source = bench_source(c)
    return source, make_world(
        source, F_HxN, q_N, factor_NxR=factor_NxR, scale_N=scale_N, std_N=std_N, bias_H=bias_H
    )


def orthogonalize(F_HxN: np.ndarray, steps: int, lr: float, block: int = 2048) -> np.ndarray:
    """Adam on the directions (renormalised) against Σ_{i≠j} (f_i·f_j)², then unit columns again.
    The loss's gradient is 4 Σ_j (f_i·f_j) f_j = 4 (F FᵀF)_i − 4 f_i: with G = F Fᵀ (m×m) it
    costs O(n m²) per step and never builds the n×n Gram matrix."""
    if steps == 0:
        return F_HxN
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(lr)

    def one(carry, _):
        F, state = carry
        unit = F / jnp.linalg.norm(F, axis=0, keepdims=True)
        grad = 4.0 * ((unit @ unit.T) @ unit - unit)  # of the loss in the unit vectors
        updates, state = opt.update(grad, state, F)
        return (optax.apply_updates(F, updates), state), None

    F0 = jnp.asarray(F_HxN, jnp.float32)
    (F, _), _ = jax.jit(lambda F: jax.lax.scan(one, (F, opt.init(F)), None, length=steps))(F0)
    return unit_columns(np.asarray(F, np.float64))


def true_l0(
    source: WorldSource, world: World, first: int | None = None, samples: int = 4096, seed: int = 0
) -> float:
    """Mean number of firing features per input (of the ``first`` most frequent when given)."""
    import jax

    from toymodels import rng
    from toymodels.sae.worlds import sample_features

    draw = jax.jit(sample_features, static_argnums=(0, 4))
    x_NxB = np.asarray(draw(source, world, rng.key_words(jax.random.key(seed)), 0, samples))
    return float((x_NxB[:first] > 0).sum(axis=0).mean())


def estimate(
    config: BenchConfig = SYNTHBENCH_16K,
    dict_size: int = 4096,
    batch_size: int = 1024,
    n_saes: int = 4,
    steps: int = 195_313,
    flops_per_second: float = 2e14,
) -> dict:
    """Memory and time of training ``n_saes`` SAEs on this world in one program sharing each step's
    batch (``train_mixed``; 195,313 steps of 1,024 = the published 200M samples): bytes of the
    world, of the SAEs with their Adam state and gradients, of one step's largest temporaries and
    of the evaluation (true × dictionary cosines, latent × latent cosines); FLOPs per step; minutes
    at ``flops_per_second`` sustained (the default, half an H100's TF32 peak, is a guess to
    replace by a measurement; float32 without TF32 is ~7x slower).

    Measured on 2 loaded CPU cores for the defaults (4 kinds: plain, BatchTopK, JumpReLU,
    Matryoshka): XLA's temporaries 2.9 GB (this estimate: 2.6 GB in all), 10.3 s per step
    (~18 GFLOP/s), the world built in 66 s."""
    n, m, r, d, b = (
        config.n_features,
        config.n_hidden,
        config.correlation_rank,
        dict_size,
        batch_size,
    )
    world_bytes = 4 * (m * n + n * r + 12 * n)
    sae_bytes = n_saes * 4 * 4 * (2 * d * m + 3 * d + m)  # params, gradients, two Adam moments
    batch_bytes = 4 * b * (6 * n + n_saes * 6 * d)  # x, copula draws, magnitudes, scores; codes
    eval_bytes = n_saes * 4 * (n * d + d * d)
    flops_world = 2 * b * (n * m + n * r) + 40 * b * n
    flops_sae = n_saes * 2 * b * d * m * 6  # encode, decode, and their backward passes (2x each)
    per_step = flops_world + flops_sae
    total = world_bytes + sae_bytes + batch_bytes + eval_bytes
    return {
        "world_GB": world_bytes / 1e9,
        "saes_GB": sae_bytes / 1e9,
        "step_temporaries_GB": batch_bytes / 1e9,
        "evaluation_GB": eval_bytes / 1e9,
        "total_GB": total / 1e9,
        "gflop_per_step": per_step / 1e9,
        "minutes": steps * per_step / flops_per_second / 60,
    }
