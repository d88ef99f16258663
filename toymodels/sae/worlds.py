"""Synthetic worlds: activations h = F x + b with the feature directions F known (issue 16 item 3).

A world is a static ``WorldSource`` (how features fire, what their magnitudes are, how deep the
hierarchy goes) and a ``World`` pytree of arrays (directions, probabilities, correlation factor,
hierarchy), built by ``toymodels.sae.build``. The arrays may be shared by every SAE of a compiled
program or differ per SAE (vmapped); shapes are static.

Per input, in this order (the order of SAELens's synthetic activation generator):
1. **Firing.** ``independent``: feature i fires with probability p_i. ``correlated``: a Gaussian
   copula with low-rank correlation, g = Φ r + diag(s) η (r ~ N(0, I_R), η ~ N(0, I_N), rows of
   ΦΦᵀ + diag(s²) of unit diagonal), fires where g_i > Φ⁻¹(1 − p_i), so marginals stay p_i
   (drawn as: given r, feature i fires with probability Φ((Φ_i·r − Φ⁻¹(1 − p_i)) / s_i)).
   ``exactly``: exactly ``active`` features, uniformly chosen. ``patterns``: one of P firing
   patterns with probabilities q_P, else none (the composition world: f1 alone, f2 alone, both).
2. **Magnitudes.** ``uniform``: m_i·U[l_i, 1] (l_i = 1: the fixed magnitude m_i, l_i = 0: the TMS
   magnitudes; an array, so fixed and uniform worlds share a compiled program).
   ``normal``: ReLU(m_i + s_i·N(0, 1)).
3. **Hierarchy** (``depth`` > 0), level by level from the roots: a child whose parent is silent
   is silenced; among the firing children of a mutually exclusive parent one, chosen uniformly,
   survives; with ``scale_children`` a child's value is multiplied by its parent's value over the
   parent's mean magnitude.

Array names carry their shape: ``N`` true features, ``H`` hidden, ``B`` batch, ``R`` correlation
rank, ``P`` patterns or pairs.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
from flax import struct

from toymodels import rng

FIRINGS = ("independent", "correlated", "exactly", "patterns")
MAGNITUDES = ("uniform", "normal")


@struct.dataclass
class World:
    F_HxN: jax.Array  # feature directions (columns); unit for built worlds, as given otherwise
    bias_H: jax.Array  # constant offset of every activation
    p_N: jax.Array  # firing probability (independent, correlated)
    threshold_N: jax.Array  # Φ⁻¹(1 − p_N): the copula's firing thresholds (correlated)
    factor_NxR: jax.Array  # low-rank correlation factor Φ (R may be 0)
    diag_sqrt_N: jax.Array  # s = sqrt(1 − ‖Φ_i‖²)
    scale_N: jax.Array  # magnitude m_i (mean of ``normal``, maximum of ``uniform``)
    low_N: jax.Array  # ``uniform``: the lower end l_i of U[l_i, 1] (1: fixed magnitudes)
    std_N: jax.Array  # magnitude spread s_i (``normal``)
    parent_N: jax.Array  # int32 parent feature, −1 for roots and features outside the hierarchy
    patterns_PxN: jax.Array  # firing patterns (``patterns``), bool
    pattern_p_P: jax.Array  # their probabilities (the rest: nothing fires)
    pairs_Px2: jax.Array  # int32 feature pairs whose composed direction (f_a + f_b)/‖·‖ is scored


@dataclasses.dataclass(frozen=True)
class WorldSource:
    """The static description of a world; with ``World`` arrays, a source of activations."""

    n_features: int
    n_hidden: int
    firing: str = "independent"
    magnitude: str = "uniform"
    active: int = 0  # features per input for ``exactly``
    # The hierarchy: a regular forest numbered breadth-first from feature 0 (``build.hierarchy``):
    # ``roots`` trees, every node above level ``depth`` with ``branching`` children.
    roots: int = 0
    branching: int = 0
    depth: int = 0  # levels below the roots (0: no hierarchy)
    exclusive: bool = False  # every parent's children are mutually exclusive
    scale_children: bool = False

    def __post_init__(self):
        if self.firing not in FIRINGS:
            raise ValueError(f"firing {self.firing!r} is not one of {FIRINGS}")
        if self.magnitude not in MAGNITUDES:
            raise ValueError(f"magnitude {self.magnitude!r} is not one of {MAGNITUDES}")
        if self.firing == "exactly" and not 1 <= self.active <= self.n_features:
            raise ValueError(
                f"exactly {self.active} active features needs 1 <= active <= {self.n_features}"
            )
        if self.depth and (
            self.roots < 1 or self.branching < 1 or self.levels()[-1][1] > self.n_features
        ):
            raise ValueError(
                f"a forest of {self.roots} roots, branching {self.branching}, depth {self.depth} "
                f"needs roots, branching >= 1 and at most n_features={self.n_features} nodes"
            )

    def levels(self) -> list[tuple[int, int]]:
        """The [start, end) feature range of each level of the forest, roots first."""
        ranges, start, width = [], 0, self.roots
        for _ in range(self.depth + 1):
            ranges.append((start, start + width))
            start, width = start + width, width * self.branching
        return ranges

    # The source protocol (``toymodels.sae.train``): n_hidden, n_true, stream, sample, truth,
    # represented, parents, pairs.
    @property
    def n_true(self) -> int:
        return self.n_features

    @property
    def has_hierarchy(self) -> bool:
        return self.depth > 0

    def stream(self, key: jax.Array) -> jax.Array:
        return rng.key_words(key)

    def draw(self, world: World, words: jax.Array, t, batch_size: int) -> jax.Array:
        """The packed uniforms of batch ``t`` of stream ``words`` (``rng.uniform_pairs``)."""
        rows = sum(uniform_rows(self, world.factor_NxR.shape[1]).values())
        return rng.uniform_pairs(words, jnp.asarray(t, jnp.uint32), rows, batch_size)

    def inputs(self, world: World, packed: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The true features x (N×B, ≥ 0) and h = F x + b (H×B) made from ``draw``'s uniforms."""
        x_NxB = features_from_uniforms(self, world, packed)
        return x_NxB, world.F_HxN @ x_NxB + world.bias_H[:, None]

    def sample(
        self, world: World, words: jax.Array, t, batch_size: int
    ) -> tuple[jax.Array, jax.Array]:
        return self.inputs(world, self.draw(world, words, t, batch_size))

    def truth(self, world: World) -> jax.Array:
        return world.F_HxN

    def represented(self, world: World) -> jax.Array:
        return jnp.linalg.norm(world.F_HxN, axis=0) > 0

    def parents(self, world: World) -> jax.Array:
        return world.parent_N

    def pairs(self, world: World) -> jax.Array:
        return world.pairs_Px2


def uniform_rows(source: WorldSource, rank: int) -> dict[str, int]:
    """Uniforms per input of each stage (in this order in the step's draw)."""
    n = source.n_features
    return {
        "fire": 1 if source.firing == "patterns" else n,
        "magnitude": n,
        "copula": rank if source.firing == "correlated" else 0,
    }


def features_from_uniforms(source: WorldSource, world: World, packed: jax.Array) -> jax.Array:
    """The true feature values of one batch (N×B, ≥ 0) from its packed uniforms. Drawn by the
    fused Threefry of ``toymodels.rng`` (several times faster than ``jax.random`` on CPU, where
    random numbers dominate a world's cost); the training loop carries ``packed`` one batch
    ahead, so XLA stores it instead of recomputing the generator in every reader."""
    rows = uniform_rows(source, world.factor_NxR.shape[1])
    u_RxB = rng.unpack(packed, sum(rows.values()))
    ends = list(itertools.accumulate(rows.values()))
    u = {name: u_RxB[end - count : end] for (name, count), end in zip(rows.items(), ends)}
    fire_NxB, score_NxB = firing(source, world, u["fire"], u["copula"])
    x_NxB = jnp.where(fire_NxB, magnitudes(source, world, u["magnitude"]), 0.0)
    if source.depth:
        x_NxB = apply_hierarchy(source, world, x_NxB, score_NxB)
    return x_NxB


def sample_features(
    source: WorldSource, world: World, words: jax.Array, t, batch_size: int
) -> jax.Array:
    """The true feature values of batch ``t`` of stream ``words``."""
    return source.sample(world, words, t, batch_size)[0]


def normal(u):
    """Standard normals from U[0, 1) by the inverse CDF, √2·erf⁻¹(2u − 1) (the clip keeps u = 0
    finite). ``lax.erf_inv`` rather than ``jax.scipy.special.ndtri``: the same values to float
    precision, a fraction of the compile time."""
    return math.sqrt(2.0) * jax.lax.erf_inv(
        jnp.clip(2.0 * u - 1.0, -1.0 + 2.0**-23, 1.0 - 2.0**-23)
    )


def normal_cdf(z):
    """Φ(z) = ½ erfc(−z/√2)."""
    return 0.5 * jax.lax.erfc(-z / math.sqrt(2.0))


def firing(
    source: WorldSource, world: World, u_NxB: jax.Array, u_RxB: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Which features fire (bool N×B) before the hierarchy, and a score per entry that is, given
    that the feature fires, U[0, 1) and independent of its siblings: u/q where it fired because
    u < q. Exclusive siblings keep the largest score, so no uniform is drawn for the exclusion."""
    if source.firing == "independent":
        q_NxB = world.p_N[:, None]
    elif source.firing == "correlated":
        # The copula g = Φ r + s η fires where g > t; given the shared r, that is η > (t − Φ r)/s,
        # of probability Φ_N((Φ r − t)/s): one uniform per feature instead of a normal.
        shift_NxB = world.factor_NxR @ normal(u_RxB) - world.threshold_N[:, None]
        q_NxB = normal_cdf(shift_NxB / world.diag_sqrt_N[:, None])
    elif source.firing == "exactly":  # the `active` largest of N uniforms: a uniform subset
        kth_B = jax.lax.top_k(u_NxB.T, source.active)[0][:, -1]
        return u_NxB >= kth_B[None, :], u_NxB
    else:  # patterns: one categorical draw per input over P patterns and "none"
        choice_B = jnp.searchsorted(jnp.cumsum(world.pattern_p_P), u_NxB[0], side="right")
        none_row = jnp.zeros((1, source.n_features), bool)
        return jnp.concatenate([world.patterns_PxN, none_row])[choice_B].T, jnp.zeros(
            (source.n_features, 1)
        )
    return u_NxB < q_NxB, u_NxB / jnp.maximum(q_NxB, 1e-30)


def magnitudes(source: WorldSource, world: World, u_NxB: jax.Array) -> jax.Array:
    """Each feature's value if it fires (N×B)."""
    if source.magnitude == "uniform":
        return world.scale_N[:, None] * (
            world.low_N[:, None] + (1.0 - world.low_N[:, None]) * u_NxB
        )
    return jax.nn.relu(world.scale_N[:, None] + world.std_N[:, None] * normal(u_NxB))


def apply_hierarchy(
    source: WorldSource, world: World, x_NxB: jax.Array, score_NxB: jax.Array
) -> jax.Array:
    """Children only with their parents, exclusive siblings, level by level (so a child silenced
    at one level silences its own children at the next). Each level is a contiguous block whose
    siblings are consecutive runs of ``branching`` rows: reshapes and maxima, no scatter."""
    levels = source.levels()
    blocks = [x_NxB[slice(*levels[0])]]
    for (p0, p1), (c0, c1) in itertools.pairwise(levels):
        parent_Px1xB = blocks[-1][:, None, :]
        child_PxCxB = x_NxB[c0:c1].reshape(p1 - p0, source.branching, -1)
        alive_PxCxB = (child_PxCxB > 0) & (parent_Px1xB > 0)
        if source.exclusive:  # the sibling with the largest score survives
            score_PxCxB = jnp.where(alive_PxCxB, score_NxB[c0:c1].reshape(alive_PxCxB.shape), -1.0)
            best_PxB = functools.reduce(
                jnp.maximum, [score_PxCxB[:, j] for j in range(source.branching)]
            )
            alive_PxCxB = alive_PxCxB & (score_PxCxB >= best_PxB[:, None, :])
        child_PxCxB = jnp.where(alive_PxCxB, child_PxCxB, 0.0)
        if source.scale_children:
            mean_Px1x1 = jnp.maximum(world.scale_N[p0:p1], 1e-12)[:, None, None]
            child_PxCxB = child_PxCxB * parent_Px1xB / mean_Px1x1
        blocks.append(child_PxCxB.reshape(c1 - c0, -1))
    return jnp.concatenate(blocks + [x_NxB[levels[-1][1] :]])
