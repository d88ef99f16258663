"""Sparse autoencoders on a toy model's hidden activations, scored against its true features
(Sharkey et al. 2022; SCIENCE.md §1, §5).

The toy model's hidden vectors h = W x (x from that model's own sparse-feature distribution, §2)
are a dataset whose generating directions are known: W's columns. An SAE trained on them should
find those directions; how well it does, against how much the toy model superposes, is the
question. Activations are drawn fresh each step from the toy model's W and density (no stored
dataset), so one compiled program trains any number of SAEs on any same-shaped toy models.

Array names carry their shape: ``H`` hidden (m), ``F`` features (n), ``D`` dictionary (d),
``B`` batch.

Two kinds, both with unit-norm decoder columns. The norm is *parametrised*: the decoder is
``V / ‖V_j‖`` column-wise, so it is unit-norm by construction at every step (no projection after
the optimiser step) and the L1 penalty cannot be dodged by shrinking codes while growing columns.

- ``plain``: f = ReLU(W_enc (h − b_dec) + b_enc), ĥ = W_dec f + b_dec,
  loss = ‖h − ĥ‖² + λ‖f‖₁.
- ``gated`` (Rajamanoharan et al. 2024, from the paper's equations): one encoder matrix serves a
  gate path π_gate = W_enc (h − b_dec) + b_gate and a magnitude path
  π_mag = exp(r_mag) ⊙ W_enc (h − b_dec) + b_mag; f = 1[π_gate > 0] ⊙ ReLU(π_mag). The L1 penalty
  falls on ReLU(π_gate), not on f, so it does not shrink the magnitudes it selects; the Heaviside
  passes no gradient, so an auxiliary loss ‖h − (sg(W_dec) ReLU(π_gate) + sg(b_dec))‖² (sg: stop
  gradient, a frozen decoder copy) is what trains the gate to reconstruct.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from toymodels import metrics, rng
from toymodels.data import sample_features

SAE_KINDS = ("plain", "gated")
# Folded into every SAE key, so SAE streams never coincide with the toy models' own
# (fold_in(key(base_seed), uid) in toymodels.train.model_keys).
SAE_STREAM = 0x5AE
# A true feature with ‖W_i‖ below this is not represented by the toy model: nothing to recover.
REPRESENTED_NORM = 0.1


@dataclasses.dataclass(frozen=True)
class SaeSpec:
    """Static settings: SAEs that share a spec (and a toy-model shape) share one compiled program."""

    dict_size: int
    steps: int = 3_000
    batch_size: int = 1024
    kind: str = "plain"
    lr: float = 3e-3
    eval_batch: int = 8192
    eval_seed: int = 0

    def __post_init__(self):
        if self.kind not in SAE_KINDS:
            raise ValueError(f"SAE kind {self.kind!r} is not one of {SAE_KINDS}")
        if self.dict_size < 1:
            raise ValueError(f"dict_size must be at least 1, got {self.dict_size}")


@struct.dataclass
class SaeParams:
    W_enc_DxH: jax.Array  # encoder; the gate path's matrix for ``gated``
    b_enc_D: jax.Array  # encoder bias; b_gate for ``gated``
    V_HxD: jax.Array  # decoder directions before normalisation (see ``decoder``)
    b_dec_H: jax.Array
    r_mag_D: jax.Array  # gated only: log of the magnitude path's per-unit rescaling
    b_mag_D: jax.Array  # gated only: magnitude path bias


@struct.dataclass
class SaeScores:
    mmcs: jax.Array  # mean over represented true features of the max cosine to a decoder column
    mmcs_reverse: jax.Array  # mean over live units of the max cosine to a represented true feature
    n_dead: jax.Array  # units never active on the evaluation batch
    dead_fraction: jax.Array
    l0: jax.Array  # mean number of active units per input
    mse: jax.Array  # mean over inputs and hidden dims of (h − ĥ)²
    fvu: jax.Array  # Σ‖h − ĥ‖² / Σ‖h − mean h‖², fraction of variance unexplained
    loss: jax.Array  # the training objective on the evaluation batch


@struct.dataclass
class SaeResult:
    params: SaeParams
    scores: SaeScores


def decoder(params: SaeParams) -> jax.Array:
    """Unit-norm decoder columns W_dec = V / ‖V_j‖ (H×D)."""
    return params.V_HxD / jnp.linalg.norm(params.V_HxD, axis=0, keepdims=True)


def init_params(key: jax.Array, n_hidden: int, dict_size: int) -> SaeParams:
    """Random unit decoder directions, the encoder tied to them at the start, zero biases."""
    V_HxD = jax.random.normal(key, (n_hidden, dict_size))
    V_HxD = V_HxD / jnp.linalg.norm(V_HxD, axis=0, keepdims=True)
    zeros_D = jnp.zeros((dict_size,))
    return SaeParams(W_enc_DxH=V_HxD.T, b_enc_D=zeros_D, V_HxD=V_HxD, b_dec_H=jnp.zeros((n_hidden,)),
                     r_mag_D=zeros_D, b_mag_D=zeros_D)


def activations(toy_W_HxF: jax.Array, x_FxB: jax.Array) -> jax.Array:
    """The toy model's hidden vectors h = W x, one column per input (H×B)."""
    return toy_W_HxF @ x_FxB


def encode(params: SaeParams, h_HxB: jax.Array, kind: str) -> tuple[jax.Array, jax.Array]:
    """Codes f (D×B) and the pre-activations the sparsity penalty acts on: f's own for ``plain``,
    the gate's π_gate for ``gated``."""
    proj_DxB = params.W_enc_DxH @ (h_HxB - params.b_dec_H[:, None])
    pre_DxB = proj_DxB + params.b_enc_D[:, None]
    if kind == "plain":
        return jax.nn.relu(pre_DxB), pre_DxB
    if kind == "gated":
        mag_DxB = jnp.exp(params.r_mag_D)[:, None] * proj_DxB + params.b_mag_D[:, None]
        return jnp.where(pre_DxB > 0, jax.nn.relu(mag_DxB), 0.0), pre_DxB
    raise ValueError(f"SAE kind {kind!r} is not one of {SAE_KINDS}")


def decode(params: SaeParams, f_DxB: jax.Array) -> jax.Array:
    return decoder(params) @ f_DxB + params.b_dec_H[:, None]


def squared_error(h_HxB: jax.Array, hhat_HxB: jax.Array) -> jax.Array:
    """‖h − ĥ‖² summed over hidden dims, mean over the batch."""
    return jnp.mean(jnp.sum((h_HxB - hhat_HxB) ** 2, axis=0))


def sae_loss(params: SaeParams, h_HxB: jax.Array, l1: jax.Array, kind: str) -> jax.Array:
    """The training objective of one batch (see the module docstring), mean over the batch."""
    f_DxB, pre_DxB = encode(params, h_HxB, kind)
    recon = squared_error(h_HxB, decode(params, f_DxB))
    if kind == "plain":
        return recon + l1 * jnp.mean(jnp.sum(f_DxB, axis=0))
    gate_DxB = jax.nn.relu(pre_DxB)
    frozen_HxB = jax.lax.stop_gradient(decoder(params)) @ gate_DxB + jax.lax.stop_gradient(params.b_dec_H)[:, None]
    return recon + l1 * jnp.mean(jnp.sum(gate_DxB, axis=0)) + squared_error(h_HxB, frozen_HxB)


def represented(toy_W_HxF: jax.Array, threshold: float = REPRESENTED_NORM) -> jax.Array:
    """Which true features the toy model represents (‖W_i‖ ≥ threshold), bool F."""
    return metrics.feature_norms(toy_W_HxF) >= threshold


def cosines(a_HxI: jax.Array, b_HxJ: jax.Array) -> jax.Array:
    """Cosine of every column of ``a`` with every column of ``b`` (I×J); a zero column gives 0."""
    a = a_HxI / jnp.maximum(jnp.linalg.norm(a_HxI, axis=0, keepdims=True), 1e-12)
    b = b_HxJ / jnp.maximum(jnp.linalg.norm(b_HxJ, axis=0, keepdims=True), 1e-12)
    return a.T @ b


def mmcs(true_HxF: jax.Array, dict_HxD: jax.Array, true_mask_F=None, dict_mask_D=None) -> jax.Array:
    """Mean max cosine similarity: for each true feature (where ``true_mask_F``), the largest
    cosine with any dictionary element (where ``dict_mask_D``), averaged. Swap the arguments (and
    masks) for the reverse direction. NaN when no true feature or no dictionary element is kept."""
    n_true, n_dict = true_HxF.shape[-1], dict_HxD.shape[-1]
    true_mask_F = jnp.ones((n_true,), bool) if true_mask_F is None else true_mask_F
    dict_mask_D = jnp.ones((n_dict,), bool) if dict_mask_D is None else dict_mask_D
    cos_FxD = jnp.where(dict_mask_D[None, :], cosines(true_HxF, dict_HxD), -jnp.inf)
    best_F = jnp.max(cos_FxD, axis=1)
    kept = true_mask_F & jnp.any(dict_mask_D)
    count = jnp.sum(kept)
    return jnp.where(count > 0, jnp.sum(jnp.where(kept, best_F, 0.0)) / jnp.maximum(count, 1), jnp.nan)


def chance_mmcs(n_hidden: int, dict_size: int, samples: int = 20_000, seed: int = 0) -> float:
    """Expected MMCS of a dictionary of ``dict_size`` isotropic random directions: the floor that
    a trained SAE's MMCS must clear. It is the same for every set of true directions (each one's
    best cosine has one distribution, by rotation invariance), so one Monte Carlo per (m, d)
    serves every toy model. In few dimensions it is high: m=2 gives about 0.80 for d=5 and 0.93
    for d=10. Large dictionaries take fewer samples (~4M normals at most); their best cosine
    varies little."""
    samples = min(samples, max(100, 4_000_000 // (n_hidden * dict_size)))
    normals_SxHxD = np.random.default_rng(seed).normal(size=(samples, n_hidden, dict_size))
    cos_SxD = normals_SxHxD[:, 0, :] / np.linalg.norm(normals_SxHxD, axis=1)
    return float(cos_SxD.max(axis=1).mean())


def activity_scores(f_DxB: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Dead units (bool D: never active on the batch) and L0 (mean active units per input)."""
    active_DxB = f_DxB > 0
    return ~jnp.any(active_DxB, axis=1), jnp.mean(jnp.sum(active_DxB, axis=0))


def fraction_of_variance_unexplained(h_HxB: jax.Array, hhat_HxB: jax.Array) -> jax.Array:
    centred = h_HxB - jnp.mean(h_HxB, axis=1, keepdims=True)
    return jnp.sum((h_HxB - hhat_HxB) ** 2) / jnp.maximum(jnp.sum(centred**2), 1e-12)


def evaluate(params: SaeParams, toy_W_HxF, h_HxB, l1, kind: str) -> SaeScores:
    """Every score on one fixed batch of activations."""
    f_DxB, _ = encode(params, h_HxB, kind)
    hhat_HxB = decode(params, f_DxB)
    dead_D, l0 = activity_scores(f_DxB)
    W_dec = decoder(params)
    true_F = represented(toy_W_HxF)
    n_dead = jnp.sum(dead_D)
    return SaeScores(
        mmcs=mmcs(toy_W_HxF, W_dec, true_F),
        mmcs_reverse=mmcs(W_dec, toy_W_HxF, ~dead_D, true_F),
        n_dead=n_dead,
        dead_fraction=n_dead / dead_D.shape[0],
        l0=l0,
        mse=jnp.mean((h_HxB - hhat_HxB) ** 2),
        fvu=fraction_of_variance_unexplained(h_HxB, hhat_HxB),
        loss=sae_loss(params, h_HxB, l1, kind),
    )


def make_train_sae(spec: SaeSpec):
    """Build ``train(key, toy_W_HxF, density_F, l1) -> SaeResult`` for one SAE; vmap it for many.

    ``key`` sets the SAE's init and its training stream of toy inputs; the evaluation batch comes
    from ``spec.eval_seed`` alone, so every SAE of one toy model is scored on the same inputs."""
    opt = optax.adam(spec.lr)

    def train(key: jax.Array, toy_W_HxF: jax.Array, density_F: jax.Array, l1: jax.Array) -> SaeResult:
        init_key, data_key = jax.random.split(key)
        params = init_params(init_key, toy_W_HxF.shape[0], spec.dict_size)
        words = rng.key_words(data_key)
        grad_fn = jax.grad(sae_loss)

        def step(carry, t):
            params, opt_state = carry
            h_HxB = activations(toy_W_HxF, sample_features(words, t, density_F, spec.batch_size))
            updates, opt_state = opt.update(grad_fn(params, h_HxB, l1, spec.kind), opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(spec.steps, dtype=jnp.uint32))
        eval_words = rng.key_words(jax.random.key(spec.eval_seed))
        eval_x_FxB = sample_features(eval_words, jnp.uint32(0), density_F, spec.eval_batch)
        scores = evaluate(params, toy_W_HxF, activations(toy_W_HxF, eval_x_FxB), l1, spec.kind)
        return SaeResult(params=params, scores=scores)

    return train


@partial(jax.jit, static_argnums=0)
def train_saes(spec: SaeSpec, keys: jax.Array, toy_W: jax.Array, density: jax.Array, l1: jax.Array) -> SaeResult:
    """Train ``len(keys)`` SAEs in one compiled program: row k trains on toy model ``toy_W[k]``
    (N×m×n) with feature densities ``density[k]`` (N×n) and L1 coefficient ``l1[k]`` (N)."""
    return jax.vmap(make_train_sae(spec))(keys, toy_W, density, l1)


def sae_keys(base_seed: int, toy_uids, sae_seeds) -> jax.Array:
    """One key per SAE from its toy model's uid and its own seed: independent of grouping, and
    shared across L1 coefficients, dictionary sizes and kinds (paired comparisons: same init
    directions where shapes agree, same training inputs)."""
    base = jax.random.fold_in(jax.random.key(base_seed), SAE_STREAM)
    uids = jnp.asarray(toy_uids, jnp.uint32)
    seeds = jnp.asarray(sae_seeds, jnp.uint32)
    return jax.vmap(lambda u, s: jax.random.fold_in(jax.random.fold_in(base, u), s))(uids, seeds)
