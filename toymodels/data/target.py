"""A new target every sample (docs/science/open-questions.md; issue 17 item 2): the loss covers one
feature of each
example, chosen afresh, among weak background features.

- ``random_target``: t uniform over the n features; x_t ~ U[0, 1]; every other feature
  x_j = Bernoulli(p_j)·U[0, ``noise_scale``] (0.1 by default); the loss is (x'_t − x_t)² alone,
  through per-entry loss weights n·1[i = t] (mean 1 over the features, so the loss is one squared
  error per example).

Uniforms per example: one per feature (its value) and one more that picks t. With the target's
uniform as its value and the others' as in the sparse data (active when u < p, value u/p), a
density p = 0 is meaningful here: no background at all.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from toymodels.data.base import DataKind
from toymodels.registry import ConfigError


def target_index(u_RxB, n_features: int):
    """t per example (B) from the extra uniform row: floor(u·n), uniform over 0..n−1."""
    return jnp.minimum((u_RxB[n_features] * n_features).astype(jnp.int32), n_features - 1)


def is_target(u_RxB, n_features: int):
    """F×B: whether feature i is example b's target."""
    return jnp.arange(n_features)[:, None] == target_index(u_RxB, n_features)[None, :]


def target_batch(u_RxB, density_F, spec):
    n = density_F.shape[-1]
    u_FxB = u_RxB[:n]
    p_Fx1 = density_F[:, None]
    # u / p is U[0, 1) given u < p; at p = 0 the quotient is never selected.
    background_FxB = jnp.where(u_FxB < p_Fx1, spec.option("noise_scale") * u_FxB / p_Fx1, 0.0)
    return jnp.where(is_target(u_RxB, n), u_FxB, background_FxB)


def target_weights(u_RxB, density_F, spec):
    n = density_F.shape[-1]
    return jnp.where(is_target(u_RxB, n), float(n), 0.0)


def check_target(spec, n_features: int) -> None:
    scale = spec.option("noise_scale")
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not math.isfinite(scale)
        or scale < 0
    ):
        raise ConfigError("data.options.noise_scale", f"must be a number >= 0, got {scale!r}")
    if spec.rest_scale != 1.0:
        raise ConfigError(
            "data.rest_scale",
            f"{spec.kind} scales its background by data.options.noise_scale; "
            f"leave data.rest_scale=1, got {spec.rest_scale!r}",
        )
    if n_features < 2:
        raise ConfigError(
            "model.n_features", f"{spec.kind} needs at least 2 features, got {n_features}"
        )


RANDOM_TARGET = DataKind(
    name="random_target",
    batch=target_batch,
    weights=target_weights,
    extra_rows=lambda n_features, spec: 1,
    options={"noise_scale": 0.1},
    check=check_target,
    zero_density=True,
    doc="each sample a target t uniform over the features, x_t ~ U[0, 1], the others Bernoulli(p)·"
    "U[0, noise_scale]; loss on x_t only (per-entry weights n·1[i = t])",
)
