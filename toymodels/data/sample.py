"""Batches of any data kind from counter-based uniforms (``toymodels.rng``), feature-major (F×B):
the long batch axis contiguous, which is what lets XLA vectorise models with a handful of
features (2-3x faster than batch-major at n=2 and n=5).

Array names carry their shape: ``B`` batch, ``F`` features (n), ``R`` uniform rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toymodels import rng
from toymodels.data.base import DataKind, DataSpec

Block = tuple  # (block index j, traced; number of blocks k, static): columns j·B/k … (j+1)·B/k


def _kind(spec: DataSpec) -> DataKind:
    from toymodels.data import DATA

    return DATA.get(spec.kind)


def uniform_rows(spec: DataSpec, n_features: int) -> int:
    """Uniforms per example of distribution ``spec``: one per feature, plus the kind's extra rows."""
    return n_features + _kind(spec).extra_rows(n_features, spec)


def draw(
    spec: DataSpec,
    words: jax.Array,
    counter: jax.Array,
    n_features: int,
    batch_size: int,
    block: Block | None = None,
) -> jax.Array:
    """The uniforms behind batch ``counter`` of key ``words`` (uint32[2]), packed two per complex
    entry (``rng.uniform_pairs``; ``from_uniforms(spec, rng.unpack(...))`` makes the batch). With
    ``block`` = (j, k), only columns j·B/k … (j+1)·B/k of them, bit for bit."""
    rows = uniform_rows(spec, n_features)
    if block is None:
        return rng.uniform_pairs(words, counter, rows, batch_size)
    j, k = block
    width = batch_size // k
    return rng.uniform_pairs(
        words, counter, rows, width, col_offset=j * width, row_stride=batch_size
    )


def draw_shared(
    spec: DataSpec,
    words_Sx2: jax.Array,
    counter: jax.Array,
    n_features: int,
    batch_size: int,
    block: Block | None = None,
) -> jax.Array:
    """``draw`` for each of S streams (S × packed rows × B): uniforms drawn once for every model
    that shares those streams (data.streams = seed)."""
    return jax.vmap(lambda w: draw(spec, w, counter, n_features, batch_size, block))(words_Sx2)


def _elementwise(kind: DataKind, spec: DataSpec, u, p):
    """An elementwise kind's inputs from uniforms ``u`` at densities ``p`` (broadcast): active when
    u < p, with value ``kind.value`` of u / p (U[0, 1) given activity)."""
    assert kind.value is not None, f"data kind {kind.name!r} is not elementwise"
    return jnp.where(u < p, kind.value(u / p, p, spec), 0.0)


def from_uniforms(spec: DataSpec, u_RxB, density_F: jax.Array):
    """The F×B inputs of distribution ``spec`` made from ``uniform_rows`` uniforms per example.

    ``u_RxB`` may be a list of rows (``rng.unpack_rows``; tiny models): the inputs are then a list
    of feature rows too, each computed from its own uniforms, so that no F×B array is stored."""
    kind = _kind(spec)
    n = density_F.shape[-1]
    if isinstance(u_RxB, list):
        if not kind.elementwise:  # the kind mixes rows: through the array form
            x_FxB = from_uniforms(spec, jnp.stack(u_RxB), density_F)
            return [x_FxB[i] for i in range(n)]
        return [
            _elementwise(kind, spec, u_RxB[i], density_F[i]) * (spec.rest_scale if i else 1.0)
            for i in range(n)
        ]
    if kind.elementwise:
        x_FxB = _elementwise(kind, spec, u_RxB[:n], density_F[:, None])
    else:
        assert kind.batch is not None, f"data kind {kind.name!r} has neither value nor batch"
        x_FxB = kind.batch(u_RxB, density_F, spec)
    if spec.rest_scale != 1.0:
        x_FxB = (
            x_FxB * jnp.concatenate([jnp.ones((1,)), jnp.full((n - 1,), spec.rest_scale)])[:, None]
        )
    return x_FxB


def weights_from_uniforms(spec: DataSpec, u_RxB, density_F: jax.Array):
    """The kind's per-entry loss weights (``DataKind.weights``) from the same uniforms as
    ``from_uniforms``' batch and in the same form (an F×B array or a list of F rows), or None for
    a kind without them (every entry weighs 1)."""
    kind = _kind(spec)
    if kind.weights is None:
        return None
    if isinstance(u_RxB, list):
        w_FxB = kind.weights(jnp.stack(u_RxB), density_F, spec)
        return [w_FxB[i] for i in range(density_F.shape[-1])]
    return kind.weights(u_RxB, density_F, spec)


def sample_weighted_batch(
    spec: DataSpec, words: jax.Array, counter: jax.Array, density_F: jax.Array, batch_size: int
):
    """(``sample_batch``'s F×B inputs, their per-entry loss weights or None): what training at step
    ``counter`` of key ``words`` draws and weighs."""
    n = density_F.shape[-1]
    u_RxB = rng.unpack(draw(spec, words, counter, n, batch_size), uniform_rows(spec, n))
    return from_uniforms(spec, u_RxB, density_F), weights_from_uniforms(spec, u_RxB, density_F)


def sample_batch(
    spec: DataSpec,
    words: jax.Array,
    counter: jax.Array,
    density_F: jax.Array,
    batch_size: int,
    block: Block | None = None,
) -> jax.Array:
    """Draw ``batch_size`` inputs of distribution ``spec`` as an F×B array, stream ``counter`` of
    key ``words`` (uint32[2]): the batch training draws at step ``counter``. With ``block`` =
    (j, k), only columns j·B/k … (j+1)·B/k of that batch, bit for bit."""
    n = density_F.shape[-1]
    packed = draw(spec, words, counter, n, batch_size, block)
    return from_uniforms(spec, rng.unpack(packed, uniform_rows(spec, n)), density_F)


def sample_features(
    words: jax.Array,
    counter: jax.Array,
    density_F: jax.Array,
    batch_size: int,
    block: Block | None = None,
) -> jax.Array:
    """``sample_batch`` of the TMS data: feature i is 0 with probability 1 - p_i, else U[0, 1]."""
    return sample_batch(DataSpec(), words, counter, density_F, batch_size, block)
