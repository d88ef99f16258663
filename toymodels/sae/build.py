"""Building worlds (``toymodels.sae.worlds``) on the host, in numpy, from a seed: feature
directions, Zipf firing probabilities, low-rank firing correlations, hierarchies.

The constructions follow SAELens's synthetic-data module, so that its published SynthSAEBench
numbers are a fair anchor (``toymodels.sae.synthbench``): Zipf probabilities rescaled to
[p_min, p_max], the low-rank copula factor scaled so that every diagonal term stays ≥ 0.01, trees
numbered breadth-first, and children's probabilities compensated so that each feature's firing
rate after the hierarchy is its base probability.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import ndtri

from toymodels.sae.worlds import World, WorldSource

DIRECTIONS = ("identity", "random", "pairs")
MIN_COPULA_DIAG = 0.01


def unit_columns(A: np.ndarray) -> np.ndarray:
    return A / np.maximum(np.linalg.norm(A, axis=0, keepdims=True), 1e-12)


def directions(
    kind: str, n_features: int, n_hidden: int, rng: np.random.Generator, cosine: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Feature directions F (m×n) and the pairs whose composed direction is worth scoring.

    - ``identity``: the first n basis vectors (n ≤ m): no superposition.
    - ``random``: independent uniform unit vectors.
    - ``pairs``: n/2 clusters of two unit vectors at cosine ``cosine`` (f_2i, f_2i+1), the pairs
      independent of each other.
    """
    no_pairs = np.zeros((0, 2), np.int32)
    if kind == "identity":
        if n_features > n_hidden:
            raise ValueError(
                f"identity directions need n_features <= n_hidden, got {n_features} > {n_hidden}"
            )
        return np.eye(n_hidden, n_features), no_pairs
    if kind == "random":
        return unit_columns(rng.normal(size=(n_hidden, n_features))), no_pairs
    if kind == "pairs":
        if n_features % 2 or not -1.0 <= cosine <= 1.0:
            raise ValueError(
                f"pairs need an even n_features and |cosine| <= 1, got {n_features}, {cosine}"
            )
        u_HxP = unit_columns(rng.normal(size=(n_hidden, n_features // 2)))
        v_HxP = rng.normal(size=u_HxP.shape)
        v_HxP = unit_columns(v_HxP - u_HxP * np.sum(u_HxP * v_HxP, axis=0))  # ⊥ u
        F = np.empty((n_hidden, n_features))
        F[:, 0::2], F[:, 1::2] = u_HxP, cosine * u_HxP + np.sqrt(1.0 - cosine**2) * v_HxP
        return F, np.arange(n_features, dtype=np.int32).reshape(-1, 2)
    raise ValueError(f"directions {kind!r} is not one of {DIRECTIONS}")


def zipf_probabilities(n: int, exponent: float, p_max: float, p_min: float) -> np.ndarray:
    """p_i ∝ i^-exponent (rank i from 1), rescaled linearly onto [p_min, p_max]."""
    if not 0 < p_min < p_max <= 1 or exponent <= 0:
        raise ValueError(
            f"zipf needs 0 < p_min < p_max <= 1 and exponent > 0, got {p_min}, {p_max}, {exponent}"
        )
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    if n == 1:
        return np.array([p_max])
    return p_min + (p_max - p_min) * (weights - weights[-1]) / (weights[0] - weights[-1])


def low_rank_correlation(
    n: int, rank: int, scale: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random correlation ΦΦᵀ + diag(1 − ‖Φ_i‖²) of rank-``rank`` structure: Φ ~ scale·N(0, 1),
    shrunk if needed so that every diagonal term is at least 0.01. Returns (Φ, sqrt of the diagonal)."""
    factor = scale * rng.normal(size=(n, rank))
    norms_sq = np.sum(factor**2, axis=1)
    if rank and np.any(1.0 - norms_sq < MIN_COPULA_DIAG):
        factor *= np.sqrt((1.0 - MIN_COPULA_DIAG) / norms_sq.max())
        norms_sq = np.sum(factor**2, axis=1)
    return factor, np.sqrt(1.0 - norms_sq)


def hierarchy(n: int, roots: int, branching: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """A forest numbered breadth-first from feature 0: ``roots`` trees, each node below depth
    ``depth`` with ``branching`` children, until features run out. Returns (parent_N, level_N);
    features outside the forest have parent −1 and level 0."""
    parent, level = np.full(n, -1, np.int32), np.zeros(n, np.int32)
    frontier = list(range(min(roots, n)))
    used = len(frontier)
    for d in range(1, depth + 1):
        children = []
        for node in frontier:
            for _ in range(branching):
                if used == n:
                    break
                parent[used], level[used] = node, d
                children.append(used)
                used += 1
        frontier = children
    return parent, level


def exclusion_win_probability(q_GxC: np.ndarray) -> np.ndarray:
    """P(sibling i survives | i fires) when the firing siblings (independent, probabilities q, one
    group per row) keep one uniformly: E[1 / (1 + #others firing)], enumerating the others'
    2^(C−1) subsets, for every group at once."""
    _n_groups, c = q_GxC.shape
    masks_MxO = np.array(list(itertools.product((0, 1), repeat=c - 1)), bool).reshape(-1, c - 1)
    win = np.zeros_like(q_GxC)
    for i in range(c):
        others_GxO = np.delete(q_GxC, i, axis=1)
        prob_GxM = np.prod(
            np.where(masks_MxO[None], others_GxO[:, None, :], 1.0 - others_GxO[:, None, :]), axis=2
        )
        win[:, i] = prob_GxM @ (1.0 / (1.0 + masks_MxO.sum(axis=1)))
    return win


def compensate(
    p_N: np.ndarray, parent_N: np.ndarray, exclusive: bool, iterations: int = 100
) -> np.ndarray:
    """Firing probabilities before the hierarchy such that, after it, each feature fires at its
    base rate p where it can: a child's is p_child / p_parent, and for exclusive siblings divided
    again by the chance to survive the exclusion (a fixed-point iteration, as SAELens); clipped at
    1 (then the feature fires less often than p: siblings whose rates add up to more than their
    parent's cannot all reach them)."""
    q = p_N.astype(np.float64).copy()
    has_parent = parent_N >= 0
    q[has_parent] = p_N[has_parent] / p_N[parent_N[has_parent]]
    if not exclusive or not has_parent.any():
        return np.minimum(q, 1.0)
    children = np.flatnonzero(has_parent)
    parents, sizes = np.unique(parent_N[children], return_counts=True)
    for size in np.unique(sizes):
        if size < 2:
            continue
        groups_GxC = np.stack(
            [np.flatnonzero(parent_N == parent) for parent in parents[sizes == size]]
        )
        base, current = q[groups_GxC], q[groups_GxC]
        for _ in range(iterations):
            new = np.minimum(base / np.maximum(exclusion_win_probability(current), 1e-12), 1.0)
            done = np.max(np.abs(new - current)) < 1e-10
            current = new
            if done:
                break
        q[groups_GxC] = current
    return np.minimum(q, 1.0)


def make_world(
    source: WorldSource,
    F_HxN: np.ndarray,
    p_N=None,
    *,
    factor_NxR=None,
    scale_N=1.0,
    low_N=0.0,
    std_N=0.0,
    bias_H=None,
    patterns_PxN=None,
    pattern_p_P=None,
    pairs_Px2=None,
) -> World:
    """A ``World`` with every array present (defaults: no correlation, no patterns; the parents
    of ``source``'s forest), as float32 / int32 device arrays."""
    import jax.numpy as jnp

    n, m = source.n_features, source.n_hidden
    if F_HxN.shape != (m, n):
        raise ValueError(f"F must be {m}×{n} (n_hidden × n_features), got {F_HxN.shape}")
    p_N = np.broadcast_to(np.asarray(1.0 if p_N is None else p_N, np.float64), (n,))
    factor_NxR = np.zeros((n, 0)) if factor_NxR is None else factor_NxR
    parent_N = hierarchy(n, source.roots, source.branching, source.depth)[0]
    patterns_PxN = np.zeros((0, n), bool) if patterns_PxN is None else patterns_PxN
    arrays = dict(
        F_HxN=F_HxN,
        bias_H=np.zeros(m) if bias_H is None else bias_H,
        p_N=p_N,
        threshold_N=ndtri(1.0 - np.clip(p_N, 1e-12, 1.0 - 1e-7)),
        factor_NxR=factor_NxR,
        diag_sqrt_N=np.sqrt(np.maximum(1.0 - np.sum(factor_NxR**2, axis=1), 0.0)),
        scale_N=np.broadcast_to(scale_N, (n,)),
        low_N=np.broadcast_to(low_N, (n,)),
        std_N=np.broadcast_to(std_N, (n,)),
        pattern_p_P=np.zeros(0) if pattern_p_P is None else pattern_p_P,
    )
    world = {k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}
    return World(
        **world,
        parent_N=jnp.asarray(parent_N, jnp.int32),
        patterns_PxN=jnp.asarray(patterns_PxN, bool),
        pairs_Px2=jnp.asarray(np.zeros((0, 2)) if pairs_Px2 is None else pairs_Px2, jnp.int32),
    )


def low_of(magnitude: str) -> float:
    """The lower end of U[l, 1] for ``fixed`` (1) or ``uniform`` (0) magnitudes."""
    if magnitude not in ("fixed", "uniform"):
        raise ValueError(f"magnitude {magnitude!r} is not one of fixed, uniform")
    return 1.0 if magnitude == "fixed" else 0.0


def simple_world(
    n_features: int,
    n_hidden: int,
    p: float,
    *,
    directions_kind: str = "random",
    magnitude: str = "uniform",
    cosine: float = 0.0,
    seed: int = 0,
    F_HxN: np.ndarray | None = None,
) -> tuple[WorldSource, World]:
    """Independent features firing with probability ``p`` along ``directions_kind`` directions, or
    along the columns of a given matrix ``F_HxN`` as they are (a stored toy model's W: h = W x,
    its true directions W_i), with ``fixed`` (1) or ``uniform`` (U[0, 1]) magnitudes."""
    source = WorldSource(n_features, n_hidden)
    if F_HxN is not None:
        F, pairs = np.asarray(F_HxN, np.float64), None
    else:
        F, pairs = directions(
            directions_kind, n_features, n_hidden, np.random.default_rng(seed), cosine
        )
    return source, make_world(source, F, p, low_N=low_of(magnitude), pairs_Px2=pairs)


def composition_world(
    n_hidden: int, alone: float, together: float, magnitude: str = "fixed", seed: int = 0
) -> tuple[WorldSource, World]:
    """Two orthogonal features: f1 alone and f2 alone with probability ``alone`` each, both
    together with probability ``together`` (c), nothing otherwise (docs/science/saes.md)."""
    if alone < 0 or together < 0 or 2 * alone + together > 1:
        raise ValueError(
            f"need alone, together >= 0 and 2·alone + together <= 1, got {alone}, {together}"
        )
    source = WorldSource(2, n_hidden, firing="patterns")
    F, _ = directions("random", 2, n_hidden, np.random.default_rng(seed))
    F[:, 1] -= F[:, 0] * (F[:, 0] @ F[:, 1])  # orthogonal, so the composed direction is at 45°
    return source, make_world(
        source,
        unit_columns(F),
        low_N=low_of(magnitude),
        patterns_PxN=np.array([[1, 0], [0, 1], [1, 1]], bool),
        pattern_p_P=np.array([alone, alone, together]),
        pairs_Px2=np.array([[0, 1]]),
    )


def exactly_world(
    n_features: int, n_hidden: int, active: int, magnitude: str = "fixed", seed: int = 0
) -> tuple[WorldSource, World]:
    """Exactly ``active`` of n random unit directions per input (issue 16's capacity study)."""
    source = WorldSource(n_features, n_hidden, firing="exactly", active=active)
    F, _ = directions("random", n_features, n_hidden, np.random.default_rng(seed))
    return source, make_world(source, F, active / n_features, low_N=low_of(magnitude))
