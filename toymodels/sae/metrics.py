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
  ``dead_fraction``: latents that never fire on the evaluation batch (8,192 inputs by default:
  latents that fire once in 10⁴ inputs look dead there); ``dead_fraction_long``: never fire over
  ``spec.dead_samples`` (≥ 131,072) evaluation inputs, as SAELens's evaluator counts over 10⁵.
- ``fvu`` = Σ‖h − ĥ‖² / Σ‖h − mean h‖²; ``h_var`` its denominator per input;
  ``gamma`` = E‖ĥ‖² / E[ĥ·h], the relative reconstruction bias of Rajamanoharan et al. (< 1:
  shrinkage).
- ``absorption``: over the inputs where a child fires (its parent then fires too), how often
  the parent's latent is silent: the parent's feature absorbed into the child's latent.
  NaN without a hierarchy. Per edge of the hierarchy (parent, child), ``edge_*`` counts: inputs
  where the child fires, those where the parent's latent is silent then (absorbed), inputs where
  the parent fires without the child and those where its latent fires then; the *absorbing
  latent*, the latent that fires most often on the edge's absorbed inputs (−1 when none or when
  features × latents > ``ABSORBING_MAX``), and on how many. ``absorption_gap`` (SAELens issue
  #729): the mean over edges of P(parent latent fires | parent without child) − P(... | child).
- ``uniqueness`` (SAELens's ``feature_uniqueness``): each latent's best match by |cos|; the number
  of distinct true features so matched over the number of latents.
- ``hedging`` (Chanin et al. 2025): per edge, how far the parent's latent leans into its child:
  the cosine of the parent latent's decoder column with the part of the child's direction
  orthogonal to the parent's. A narrow SAE whose parent latent also reconstructs the child it
  cannot afford a latent for has a positive one. For a latent that fires with code 1 exactly when
  the parent fires, whose child fires with probability q given it (unit magnitudes), the decoder
  that minimises ‖h − ĥ‖² is p + q c (normalised), so hedging q/√(1 + q²) for orthogonal p, c.
- ``n_composed``: latents whose decoder column has cosine ≥ 0.95 with a composed direction
  (f_a + f_b)/‖f_a + f_b‖ of the world's scored pairs.
- ``max_cos_D``: each latent's largest cosine with another latent (the histogram's values; see
  ``max_cos_to_others`` for the true features and a random dictionary).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

COMPOSED_COSINE = 0.95
# Above this many true features × latents, the per-edge absorbing latent is not tracked (its
# table of counts would be that large per SAE).
ABSORBING_MAX = 2**20


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
    # per child (indexed by the child feature; zero-length without a hierarchy):
    absorbed_F: jax.Array  # the child fires, its parent's latent is silent
    child_events_F: jax.Array  # the child fires
    parent_only_F: jax.Array  # the parent fires without this child
    parent_only_hits_F: jax.Array  # ... and the parent's latent fires
    absorbing_FxD: jax.Array  # latents firing on the child's absorbed inputs (0×0 when not tracked)

    @classmethod
    def zeros(cls, n_hidden: int, dict_size: int, n_true: int, hierarchy: bool = False) -> EvalSums:
        z = jnp.zeros(())
        per_child = jnp.zeros((n_true if hierarchy else 0,))
        tracked = hierarchy and n_true * dict_size <= ABSORBING_MAX
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
            absorbed_F=per_child,
            child_events_F=per_child,
            parent_only_F=per_child,
            parent_only_hits_F=per_child,
            absorbing_FxD=jnp.zeros((n_true, dict_size) if tracked else (0, 0)),
        )

    def add(self, h_HxB, hhat_HxB, f_DxB, z_FxB, match_D, latent_F, parent_F, loss) -> EvalSums:
        fire_DxB, true_FxB = f_DxB > 0, z_FxB > 0
        absorbed, events = jnp.zeros(()), jnp.zeros(())
        per_child = {}
        if parent_F is not None:
            has_parent_F = parent_F >= 0
            child_FxB = true_FxB & has_parent_F[:, None]
            parent_FxB = true_FxB[jnp.maximum(parent_F, 0)] & has_parent_F[:, None]
            parent_latent_FxB = fire_DxB[latent_F[jnp.maximum(parent_F, 0)]]
            absorbed_FxB = child_FxB & ~parent_latent_FxB
            parent_only_FxB = parent_FxB & ~true_FxB
            absorbed, events = jnp.sum(absorbed_FxB), jnp.sum(child_FxB)
            per_child = dict(
                absorbed_F=self.absorbed_F + jnp.sum(absorbed_FxB, axis=1),
                child_events_F=self.child_events_F + jnp.sum(child_FxB, axis=1),
                parent_only_F=self.parent_only_F + jnp.sum(parent_only_FxB, axis=1),
                parent_only_hits_F=self.parent_only_hits_F
                + jnp.sum(parent_only_FxB & parent_latent_FxB, axis=1),
            )
            if self.absorbing_FxD.size:
                per_child["absorbing_FxD"] = self.absorbing_FxD + (
                    absorbed_FxB.astype(jnp.float32) @ fire_DxB.T.astype(jnp.float32)
                )
        return dataclasses.replace(  # flax's .replace, typed
            self,
            **per_child,
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
    n_dead_long: jax.Array  # never firing over spec.dead_samples evaluation inputs
    dead_fraction_long: jax.Array
    absorption_gap: (
        jax.Array
    )  # SAELens #729: mean over edges of the parent latent's recall without − with child
    # per child feature (zero-length without a hierarchy; edges are the children, parent_N >= 0):
    edge_child_events_F: jax.Array
    edge_absorbed_F: jax.Array
    edge_parent_only_F: jax.Array
    edge_parent_only_hits_F: jax.Array
    edge_absorbing_F: (
        jax.Array
    )  # int: the latent firing most on the absorbed inputs (−1: none or not tracked)
    edge_absorbing_count_F: jax.Array


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


def edge_scores(sums: EvalSums) -> dict:
    """The per-edge absorption counts, the absorbing latents and the recall gap."""
    with_child_F = (sums.child_events_F - sums.absorbed_F) / jnp.maximum(sums.child_events_F, 1)
    without_F = sums.parent_only_hits_F / jnp.maximum(sums.parent_only_F, 1)
    both_F = (sums.child_events_F > 0) & (sums.parent_only_F > 0)
    gap = jnp.sum(jnp.where(both_F, without_F - with_child_F, 0.0)) / jnp.sum(both_F)
    if sums.absorbing_FxD.size:
        absorbing_F = jnp.argmax(sums.absorbing_FxD, axis=1)
        count_F = jnp.max(sums.absorbing_FxD, axis=1)
        absorbing_F = jnp.where(count_F > 0, absorbing_F, -1)
    else:
        absorbing_F = jnp.full(sums.absorbed_F.shape, -1)
        count_F = jnp.zeros(sums.absorbed_F.shape)
    return dict(
        absorption_gap=jnp.where(jnp.any(both_F), gap, jnp.nan),
        edge_child_events_F=sums.child_events_F,
        edge_absorbed_F=sums.absorbed_F,
        edge_parent_only_F=sums.parent_only_F,
        edge_parent_only_hits_F=sums.parent_only_hits_F,
        edge_absorbing_F=absorbing_F,
        edge_absorbing_count_F=count_F,
    )


def scores(
    sums: EvalSums,
    n_batches: int,
    W_dec_HxD,
    truth_HxF,
    represented_F,
    match_D,
    pairs_Px2,
    long_fires_D=None,
) -> SaeScores:
    """The scores of one SAE from its sums; ``long_fires_D``: each latent's firings over the long
    dead count's inputs (default: the evaluation batch's)."""
    long_fires_D = sums.fires_D if long_fires_D is None else long_fires_D
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
        n_dead_long=jnp.sum(long_fires_D == 0),
        dead_fraction_long=jnp.mean(long_fires_D == 0),
        **edge_scores(sums),
    )


def uniqueness(W_dec_HxD, truth_HxF, represented_F=None) -> float:
    """SAELens's ``feature_uniqueness``: each latent's best-matching true feature by |cos|, the
    number of distinct features so matched over the number of latents (1: no two latents share a
    best match). Not a one-to-one matching, which would give 1 whenever D ≤ F. Host side."""
    truth = np.asarray(truth_HxF, np.float64)
    if represented_F is not None:
        truth = truth[:, np.asarray(represented_F, bool)]
    W = np.asarray(W_dec_HxD, np.float64)
    if W.shape[1] == 0 or truth.shape[1] == 0:
        return 0.0 if W.shape[1] == 0 else float("nan")
    best_D = np.argmax(np.abs(np.asarray(cosines(W, truth))), axis=1)
    return len(np.unique(best_D)) / W.shape[1]


def hedging(W_dec_HxD, truth_HxF, parent_F, represented_F=None) -> np.ndarray:
    """Per child feature (NaN for features without a parent): the cosine of its parent's latent's
    decoder column with the unit part of the child's direction orthogonal to the parent's (see the
    module docstring; the parent's latent is its best match by signed cosine, as ``matches``).
    NaN where the child lies along its parent. Host side."""
    W = np.asarray(W_dec_HxD, np.float64)
    truth = np.asarray(truth_HxF, np.float64)
    parent_F = np.asarray(parent_F)
    out = np.full(parent_F.shape, np.nan)
    if W.shape[1] == 0:
        return out
    unit_W = W / np.maximum(np.linalg.norm(W, axis=0, keepdims=True), 1e-12)
    unit_T = truth / np.maximum(np.linalg.norm(truth, axis=0, keepdims=True), 1e-12)
    cos_FxD = unit_T.T @ unit_W
    if represented_F is not None:
        cos_FxD = np.where(np.asarray(represented_F, bool)[:, None], cos_FxD, -np.inf)
    latent_F = np.argmax(cos_FxD, axis=1)
    for child in np.flatnonzero(parent_F >= 0):
        p, c = unit_T[:, parent_F[child]], unit_T[:, child]
        ortho = c - (c @ p) * p
        norm = np.linalg.norm(ortho)
        if norm > 1e-6:
            out[child] = unit_W[:, latent_F[parent_F[child]]] @ (ortho / norm)
    return out


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
