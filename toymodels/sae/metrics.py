"""How well an SAE recovers the true features (issue 16 item 4). In-program scores accumulate over
evaluation batches (``EvalSums``) and finish in ``scores``; MCC needs a Hungarian matching and is
computed afterwards on the stored decoder (``mcc``).

Which latent stands for which true feature: a latent's *match* is the true feature its decoder
column has the largest cosine with (signed: with non-negative codes a latent along −f_i cannot
write f_i), and a feature's *latent* is the latent whose decoder column has the largest cosine
with it. SAELens matches by |cos|; for trained SAEs on non-negative worlds the two agree.

- ``mmcs``: mean over represented true features of the best cosine with any decoder column;
  ``mmcs_reverse``: mean over live latents of the best cosine with a represented true feature.
- ``mcc``: SAELens's MCC (``sae_lens.synthetic``, ``mean_correlation_coefficient``): |cos| between
  decoder columns and true directions, a one-to-one Hungarian matching of min(D, F) pairs, the
  mean matched |cos|. It is a *decoder* score: not the MCC of the ICA literature, which
  correlates latent activations with true feature activations.
- ``precision``, ``recall``, ``f1``: each latent as a detector of its match firing (fires: code
  > 0), averaged over all latents with 0 where undefined (a dead latent scores 0), as SAELens.
- ``l0`` (active latents per input) against ``true_l0`` (firing true features per input);
  ``dead_fraction``: latents that never fire on the evaluation inputs.
- ``fvu`` = Σ‖h − ĥ‖² / Σ‖h − mean h‖²; ``h_var`` its denominator per input;
  ``gamma`` = E‖ĥ‖² / E[ĥ·h], the relative reconstruction bias of Rajamanoharan et al. (< 1:
  shrinkage).
- ``absorption``: over the inputs where a child fires (its parent then fires too), how often
  the parent's latent is silent: the parent's feature absorbed into the child's latent.
  NaN without a hierarchy.
- ``n_composed``: latents whose decoder column has cosine ≥ 0.95 with a composed direction
  (f_a + f_b)/‖f_a + f_b‖ of the world's scored pairs.
- ``max_cos_D``: each latent's largest cosine with another latent (the histogram's values; see
  ``max_cos_to_others`` for the true features and a random dictionary).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

COMPOSED_COSINE = 0.95


def cosines(a_HxI, b_HxJ):
    """Cosine of every column of ``a`` with every column of ``b`` (I×J); a zero column gives 0."""
    a = a_HxI / jnp.maximum(jnp.linalg.norm(a_HxI, axis=0, keepdims=True), 1e-12)
    b = b_HxJ / jnp.maximum(jnp.linalg.norm(b_HxJ, axis=0, keepdims=True), 1e-12)
    return a.T @ b


def mmcs(true_HxF, dict_HxD, true_mask_F=None, dict_mask_D=None):
    """Mean max cosine similarity: for each true feature (where ``true_mask_F``), the largest
    cosine with any dictionary element (where ``dict_mask_D``), averaged. Swap the arguments (and
    masks) for the reverse direction. NaN when no true feature or no dictionary element is kept."""
    n_true, n_dict = true_HxF.shape[-1], dict_HxD.shape[-1]
    true_mask_F = jnp.ones((n_true,), bool) if true_mask_F is None else true_mask_F
    dict_mask_D = jnp.ones((n_dict,), bool) if dict_mask_D is None else dict_mask_D
    best_F = jnp.max(jnp.where(dict_mask_D[None, :], cosines(true_HxF, dict_HxD), -jnp.inf), axis=1)
    kept = true_mask_F & jnp.any(dict_mask_D)
    count = jnp.sum(kept)
    return jnp.where(
        count > 0, jnp.sum(jnp.where(kept, best_F, 0.0)) / jnp.maximum(count, 1), jnp.nan
    )


@struct.dataclass
class EvalSums:
    """Sums over evaluation inputs; ``add`` one batch at a time, ``scores`` at the end."""

    n: jax.Array  # inputs
    sse: jax.Array  # Σ‖h − ĥ‖²
    sum_h_H: jax.Array
    sum_hh: jax.Array  # Σ‖h‖²
    sum_hhat_h: jax.Array  # Σ ĥ·h
    sum_hhat2: jax.Array  # Σ‖ĥ‖²
    fires_D: jax.Array  # inputs on which each latent fires
    hits_D: jax.Array  # … and its match fires too
    true_fires_F: jax.Array  # inputs on which each true feature fires
    absorbed: jax.Array  # child firing, its parent's latent silent
    child_events: jax.Array  # child firing (children with a parent only)
    loss: jax.Array  # Σ over batches of the training objective

    @classmethod
    def zeros(cls, n_hidden: int, dict_size: int, n_true: int) -> EvalSums:
        z = jnp.zeros(())
        return cls(
            n=z,
            sse=z,
            sum_h_H=jnp.zeros((n_hidden,)),
            sum_hh=z,
            sum_hhat_h=z,
            sum_hhat2=z,
            fires_D=jnp.zeros((dict_size,)),
            hits_D=jnp.zeros((dict_size,)),
            true_fires_F=jnp.zeros((n_true,)),
            absorbed=z,
            child_events=z,
            loss=z,
        )

    def add(self, h_HxB, hhat_HxB, f_DxB, z_FxB, match_D, latent_F, parent_F, loss) -> EvalSums:
        fire_DxB, true_FxB = f_DxB > 0, z_FxB > 0
        absorbed, events = jnp.zeros(()), jnp.zeros(())
        if parent_F is not None:
            child_FxB = true_FxB & (parent_F >= 0)[:, None]
            silent_FxB = ~fire_DxB[latent_F[jnp.maximum(parent_F, 0)]]
            absorbed, events = jnp.sum(child_FxB & silent_FxB), jnp.sum(child_FxB)
        return EvalSums(
            n=self.n + h_HxB.shape[1],
            sse=self.sse + jnp.sum((h_HxB - hhat_HxB) ** 2),
            sum_h_H=self.sum_h_H + jnp.sum(h_HxB, axis=1),
            sum_hh=self.sum_hh + jnp.sum(h_HxB**2),
            sum_hhat_h=self.sum_hhat_h + jnp.sum(hhat_HxB * h_HxB),
            sum_hhat2=self.sum_hhat2 + jnp.sum(hhat_HxB**2),
            fires_D=self.fires_D + jnp.sum(fire_DxB, axis=1),
            hits_D=self.hits_D + jnp.sum(fire_DxB & true_FxB[match_D], axis=1),
            true_fires_F=self.true_fires_F + jnp.sum(true_FxB, axis=1),
            absorbed=self.absorbed + absorbed,
            child_events=self.child_events + events,
            loss=self.loss + loss,
        )


@struct.dataclass
class SaeScores:
    mmcs: jax.Array
    mmcs_reverse: jax.Array
    n_dead: jax.Array
    dead_fraction: jax.Array
    l0: jax.Array
    true_l0: jax.Array
    mse: jax.Array  # mean over inputs and hidden dims of (h − ĥ)²
    fvu: jax.Array
    h_var: jax.Array  # Σ‖h − mean h‖² per input
    gamma: jax.Array
    precision: jax.Array
    recall: jax.Array
    f1: jax.Array
    absorption: jax.Array
    n_composed: jax.Array
    loss: jax.Array  # the training objective, mean over evaluation batches
    max_cos_D: jax.Array


def matches(truth_HxF, W_dec_HxD, represented_F):
    """(match of each latent: D, latent of each true feature: F) by signed decoder cosine,
    unrepresented true features never matched."""
    cos_FxD = jnp.where(represented_F[:, None], cosines(truth_HxF, W_dec_HxD), -jnp.inf)
    return jnp.argmax(cos_FxD, axis=0), jnp.argmax(cos_FxD, axis=1)


def max_cos_to_others(M_HxK):
    """Each column's largest cosine with another column (K); numpy or JAX."""
    xp = np if isinstance(M_HxK, np.ndarray) else jnp
    unit = M_HxK / xp.maximum(xp.linalg.norm(M_HxK, axis=0, keepdims=True), 1e-12)
    cos_KxK = unit.T @ unit
    return xp.max(xp.where(xp.eye(cos_KxK.shape[0], dtype=bool), -xp.inf, cos_KxK), axis=1)


def n_composed(W_dec_HxD, truth_HxF, pairs_Px2):
    composed_HxP = truth_HxF[:, pairs_Px2[:, 0]] + truth_HxF[:, pairs_Px2[:, 1]]
    if pairs_Px2.shape[0] == 0:
        return jnp.zeros((), jnp.int32)
    return jnp.sum(jnp.max(cosines(W_dec_HxD, composed_HxP), axis=1) >= COMPOSED_COSINE)


def scores(
    sums: EvalSums, n_batches: int, W_dec_HxD, truth_HxF, represented_F, match_D, pairs_Px2
) -> SaeScores:
    dead_D = sums.fires_D == 0
    precision_D = jnp.where(sums.fires_D > 0, sums.hits_D / jnp.maximum(sums.fires_D, 1), 0.0)
    true_D = sums.true_fires_F[match_D]
    recall_D = jnp.where(true_D > 0, sums.hits_D / jnp.maximum(true_D, 1), 0.0)
    both_D = precision_D + recall_D
    f1_D = jnp.where(both_D > 0, 2 * precision_D * recall_D / jnp.maximum(both_D, 1e-12), 0.0)
    centred = sums.sum_hh - jnp.sum(sums.sum_h_H**2) / sums.n
    n_dead = jnp.sum(dead_D)
    return SaeScores(
        mmcs=mmcs(truth_HxF, W_dec_HxD, represented_F),
        mmcs_reverse=mmcs(W_dec_HxD, truth_HxF, ~dead_D, represented_F),
        n_dead=n_dead,
        dead_fraction=n_dead / dead_D.shape[0],
        l0=jnp.sum(sums.fires_D) / sums.n,
        true_l0=jnp.sum(sums.true_fires_F) / sums.n,
        mse=sums.sse / (sums.n * truth_HxF.shape[0]),
        fvu=sums.sse / jnp.maximum(centred, 1e-12),
        h_var=centred / sums.n,
        gamma=sums.sum_hhat2 / sums.sum_hhat_h,
        precision=jnp.mean(precision_D),
        recall=jnp.mean(recall_D),
        f1=jnp.mean(f1_D),
        absorption=sums.absorbed / jnp.where(sums.child_events > 0, sums.child_events, jnp.nan),
        n_composed=n_composed(W_dec_HxD, truth_HxF, pairs_Px2),
        loss=sums.loss / n_batches,
        max_cos_D=max_cos_to_others(W_dec_HxD),
    )


def mcc(W_dec_HxD, truth_HxF, represented_F=None) -> float:
    """SAELens's MCC of one SAE (see the module docstring), on the host."""
    from scipy.optimize import linear_sum_assignment

    truth = np.asarray(truth_HxF, np.float64)
    if represented_F is not None:
        truth = truth[:, np.asarray(represented_F, bool)]
    if truth.shape[1] == 0:
        return float("nan")
    cos_DxF = np.abs(np.asarray(cosines(np.asarray(W_dec_HxD, np.float64), truth)))
    rows, cols = linear_sum_assignment(-cos_DxF)
    return float(cos_DxF[rows, cols].mean())


def random_dictionary(n_hidden: int, dict_size: int, seed: int = 0) -> np.ndarray:
    """Isotropic random unit directions (H×D): the reference a trained dictionary is read against."""
    M = np.random.default_rng(seed).normal(size=(n_hidden, dict_size))
    return M / np.linalg.norm(M, axis=0, keepdims=True)


def chance_mmcs(n_hidden: int, dict_size: int, samples: int = 20_000, seed: int = 0) -> float:
    """Expected MMCS of a dictionary of ``dict_size`` isotropic random directions: the floor that
    a trained SAE's MMCS must clear. It is the same for every set of true directions (each one's
    best cosine has one distribution, by rotation invariance), so one Monte Carlo per (m, d)
    serves every toy model. In few dimensions it is high: m=2 gives about 0.80 for d=5 and 0.93
    for d=10. Large dictionaries take fewer samples (~4M normals at most)."""
    samples = min(samples, max(100, 4_000_000 // (n_hidden * dict_size)))
    normals_SxHxD = np.random.default_rng(seed).normal(size=(samples, n_hidden, dict_size))
    cos_SxD = normals_SxHxD[:, 0, :] / np.linalg.norm(normals_SxHxD, axis=1)
    return float(cos_SxD.max(axis=1).mean())
