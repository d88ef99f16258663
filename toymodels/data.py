"""Synthetic sparse-feature data and importance profiles (SCIENCE.md §2).

Array names carry their shape: ``B`` batch, ``F`` features (n).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from toymodels import rng

IMPORTANCE_KINDS = ("geometric", "logspace", "explicit", "target_only")
DATA_KINDS = ("sparse", "signed", "correlated", "anticorrelated", "kurtosis")
MAGNITUDES = ("uniform", "gaussian", "sign")
# E[u⁴] of each zero-mean, unit-variance magnitude of the ``kurtosis`` data.
MAGNITUDE_KURTOSIS = {"uniform": 1.8, "gaussian": 3.0, "sign": 1.0}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Static description of the input distribution (SCIENCE.md §2); densities are per model.

    - ``sparse``: x_i = 0 with probability 1 − p_i, else U[0, 1] (the TMS data).
    - ``signed``: as sparse, but U[−1, 1] when active (the |x| computation model's inputs).
    - ``correlated``: features form consecutive sets of ``set_size``; one draw with probability p
      (the set's first feature's density) activates the whole set, whose members are then
      independently U[0, 1].
    - ``anticorrelated``: each set is inactive with probability 1 − p, else exactly one uniformly
      chosen member is U[0, 1] (each feature is then active with probability p / set_size).
    - ``kurtosis``: x_i = s_i u_i / √p_i with P(s_i = 1) = p_i and u_i a zero-mean, unit-variance
      ``magnitude`` (uniform, gaussian or sign): unit variance, kurtosis K = E[u⁴] / p (Scherlis
      et al.'s capacity data).

    ``rest_scale`` multiplies every feature after the first (noise features: 0.1 makes them
    U[0, 0.1] next to a U[0, 1] target feature).
    """

    kind: str = "sparse"
    set_size: int = 1
    magnitude: str = "uniform"
    rest_scale: float = 1.0


def uniform_rows(spec: DataSpec, n_features: int) -> int:
    """Uniforms per example of distribution ``spec``: one per feature, plus one per set for the
    correlated and anticorrelated kinds."""
    return n_features + (n_features // spec.set_size if spec.kind in ("correlated", "anticorrelated") else 0)


Block = tuple  # (block index j, traced; number of blocks k, static): columns j·B/k … (j+1)·B/k


def draw(spec: DataSpec, words: jax.Array, counter: jax.Array, n_features: int, batch_size: int,
         block: Block | None = None) -> jax.Array:
    """The uniforms behind batch ``counter`` of key ``words`` (uint32[2]), packed two per complex
    entry (``rng.uniform_pairs``; ``from_uniforms(spec, rng.unpack(...))`` makes the batch). With
    ``block`` = (j, k), only columns j·B/k … (j+1)·B/k of them, bit for bit."""
    rows = uniform_rows(spec, n_features)
    if block is None:
        return rng.uniform_pairs(words, counter, rows, batch_size)
    j, k = block
    width = batch_size // k
    return rng.uniform_pairs(words, counter, rows, width, col_offset=j * width, row_stride=batch_size)


def draw_shared(spec: DataSpec, words_Sx2: jax.Array, counter: jax.Array, n_features: int, batch_size: int,
                block: Block | None = None) -> jax.Array:
    """``draw`` for each of S streams (S × packed rows × B): uniforms drawn once for every model
    that shares those streams (data.streams = seed)."""
    return jax.vmap(lambda w: draw(spec, w, counter, n_features, batch_size, block))(words_Sx2)


def _conditional_uniform(u_FxB: jax.Array, p_Fx1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(active, v): with u ~ U[0, 1), ``u < p`` has probability p and, given it, v = u / p is
    U[0, 1): one random draw decides activity and gives the magnitude."""
    return u_FxB < p_Fx1, u_FxB / p_Fx1


def _zero_mean_unit(v: jax.Array, magnitude: str) -> jax.Array:
    """A zero-mean, unit-variance value from v ~ U[0, 1)."""
    if magnitude == "uniform":
        return math.sqrt(3.0) * (2.0 * v - 1.0)
    if magnitude == "sign":
        return jnp.where(v < 0.5, -1.0, 1.0)
    if magnitude == "gaussian":  # inverse CDF; the clip keeps v = 0 finite (2^-23 resolution)
        return math.sqrt(2.0) * jax.scipy.special.erfinv(jnp.clip(2.0 * v - 1.0, -1.0 + 2.0**-23, 1.0 - 2.0**-23))
    raise ValueError(f"magnitude {magnitude!r} is not one of {MAGNITUDES}")


ELEMENTWISE_KINDS = ("sparse", "signed", "kurtosis")  # each feature from its own uniform alone


def _values(spec: DataSpec, u: jax.Array, p: jax.Array) -> jax.Array:
    """The inputs of an elementwise kind from uniforms ``u`` at densities ``p`` (broadcast).

    One uniform per entry serves both draws: with u ~ U[0, 1), ``u < p`` has probability p and,
    given that, ``u / p`` is U[0, 1): exactly the notebook's two-draw distribution with half the
    random bits, which dominate CPU time for tiny models."""
    active, v = _conditional_uniform(u, p)
    if spec.kind == "sparse":
        value = v
    elif spec.kind == "signed":
        value = 2.0 * v - 1.0
    else:
        value = _zero_mean_unit(v, spec.magnitude) / jnp.sqrt(p)
    return jnp.where(active, value, 0.0)


def from_uniforms(spec: DataSpec, u_RxB, density_F: jax.Array):
    """The F×B inputs of distribution ``spec`` made from ``uniform_rows`` uniforms per example.

    ``u_RxB`` may be a list of rows (``rng.unpack_rows``; tiny models): the inputs are then a list
    of feature rows too, each computed from its own uniforms, so that no F×B array is stored."""
    n = density_F.shape[-1]
    if isinstance(u_RxB, list):
        if spec.kind not in ELEMENTWISE_KINDS:  # sets mix rows: through the array form
            x_FxB = from_uniforms(spec, jnp.stack(u_RxB), density_F)
            return [x_FxB[i] for i in range(n)]
        return [_values(spec, u_RxB[i], density_F[i]) * (spec.rest_scale if i else 1.0) for i in range(n)]
    u_FxB = u_RxB[:n]
    if spec.kind in ELEMENTWISE_KINDS:
        x_FxB = _values(spec, u_FxB, density_F[:, None])
    elif spec.kind in ("correlated", "anticorrelated"):
        set_active_SxB, v_SxB = _conditional_uniform(u_RxB[n:], density_F[:: spec.set_size][:, None])
        hit = jnp.repeat(set_active_SxB, spec.set_size, axis=0)
        if spec.kind == "anticorrelated":
            # Given the set is active, v is U[0, 1): floor(v·size) picks the member uniformly.
            chosen_SxB = jnp.minimum((v_SxB * spec.set_size).astype(jnp.int32), spec.set_size - 1)
            member_F = jnp.tile(jnp.arange(spec.set_size), n // spec.set_size)[:, None]
            hit = hit & (jnp.repeat(chosen_SxB, spec.set_size, axis=0) == member_F)
        x_FxB = jnp.where(hit, u_FxB, 0.0)
    else:
        raise ValueError(f"data kind {spec.kind!r} is not one of {DATA_KINDS}")
    if spec.rest_scale != 1.0:
        x_FxB = x_FxB * jnp.concatenate([jnp.ones((1,)), jnp.full((n - 1,), spec.rest_scale)])[:, None]
    return x_FxB


def sample_batch(spec: DataSpec, words: jax.Array, counter: jax.Array, density_F: jax.Array,
                 batch_size: int, block: Block | None = None) -> jax.Array:
    """Draw ``batch_size`` inputs of distribution ``spec`` as an F×B array (feature-major), stream
    ``counter`` of key ``words`` (uint32[2]): the batch training draws at step ``counter``. With
    ``block`` = (j, k), only columns j·B/k … (j+1)·B/k of that batch, bit for bit.

    Feature-major keeps the long batch axis contiguous, which is what lets XLA vectorise models
    with a handful of features (2-3x faster than batch-major at n=2 and n=5)."""
    n = density_F.shape[-1]
    packed = draw(spec, words, counter, n, batch_size, block)
    return from_uniforms(spec, rng.unpack(packed, uniform_rows(spec, n)), density_F)


def sample_features(words: jax.Array, counter: jax.Array, density_F: jax.Array, batch_size: int,
                    block: Block | None = None) -> jax.Array:
    """``sample_batch`` of the TMS data: feature i is 0 with probability 1 - p_i, else U[0, 1]."""
    return sample_batch(DataSpec(), words, counter, density_F, batch_size, block)


def feature_kurtosis(spec: DataSpec, density_F) -> np.ndarray:
    """E[x⁴] / E[x²]² of each feature for the ``kurtosis`` data (K_u / p); NaN for other kinds."""
    density_F = np.asarray(density_F, np.float64)
    if spec.kind != "kurtosis":
        return np.full(density_F.shape, np.nan)
    return MAGNITUDE_KURTOSIS[spec.magnitude] / density_F


def importance_profile(
    n_features: int,
    kind: str = "geometric",
    decay: float = 1.0,
    ratio: float = 1.0,
    values: tuple[float, ...] = (),
) -> np.ndarray:
    """Per-feature importance I_i, first feature 1 (or as given).

    - ``geometric``: I_i = decay**i (decay 1 is uniform importance).
    - ``logspace``: I_i = ratio**(-i/(n-1)), from 1 down to 1/ratio (e.g. 100^-linspace(0,1,n)).
    - ``explicit``: the n given ``values``.
    - ``target_only``: 1 for the first feature, 0 for the rest (the loss covers only the target
      coordinate: the noise-features experiment).
    """
    if kind == "geometric":
        return decay ** np.arange(n_features, dtype=np.float64)
    if kind == "logspace":
        return ratio ** -np.linspace(0.0, 1.0, n_features)
    if kind == "explicit":
        if len(values) != n_features:
            raise ValueError(f"explicit importance needs {n_features} values, got {len(values)}")
        return np.asarray(values, dtype=np.float64)
    if kind == "target_only":
        return (np.arange(n_features) == 0).astype(np.float64)
    raise ValueError(f"importance kind {kind!r} is not one of {IMPORTANCE_KINDS}")

