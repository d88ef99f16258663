"""Data kinds whose features come in consecutive sets of ``set_size`` (docs/science/models.md). One
extra uniform per set and example decides the set's activity (at the set's first feature's
density p).

- ``correlated``: the whole set switches on together; active members are independently U[0, 1].
- ``anticorrelated``: the set is off with probability 1 − p, else exactly one uniformly chosen
  member is U[0, 1] (each feature is then active with probability p / set_size).
"""

from __future__ import annotations

import jax.numpy as jnp

from toymodels.data.base import DataKind
from toymodels.registry import ConfigError


def set_rows(n_features: int, spec) -> int:
    return n_features // spec.option("set_size")


def check_sets(spec, n_features: int) -> None:
    size = spec.option("set_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError("data.set_size", f"must be an integer >= 1, got {size!r}")
    if n_features % size:
        raise ConfigError(
            "data.set_size",
            f"{spec.kind} sets of {size} must tile the features: "
            f"n_features={n_features} is not a multiple of it",
        )


def set_batch(anti: bool):
    def batch(u_RxB, density_F, spec):
        n, size = density_F.shape[-1], spec.option("set_size")
        u_FxB = u_RxB[:n]
        # One uniform per set: active with probability p and, given that, v ~ U[0, 1).
        p_Sx1 = density_F[::size][:, None]
        set_active_SxB, v_SxB = u_RxB[n:] < p_Sx1, u_RxB[n:] / p_Sx1
        hit = jnp.repeat(set_active_SxB, size, axis=0)
        if anti:  # floor(v·size) picks the member uniformly
            chosen_SxB = jnp.minimum((v_SxB * size).astype(jnp.int32), size - 1)
            member_F = jnp.tile(jnp.arange(size), n // size)[:, None]
            hit = hit & (jnp.repeat(chosen_SxB, size, axis=0) == member_F)
        return jnp.where(hit, u_FxB, 0.0)

    return batch


CORRELATED = DataKind(
    name="correlated",
    batch=set_batch(anti=False),
    extra_rows=set_rows,
    options={"set_size": 2},
    check=check_sets,
    sets=True,
    doc="consecutive sets of data.set_size features switch on together",
)
ANTICORRELATED = DataKind(
    name="anticorrelated",
    batch=set_batch(anti=True),
    extra_rows=set_rows,
    options={"set_size": 2},
    check=check_sets,
    sets=True,
    doc="a set is off with probability 1 − p, else exactly one member is U[0, 1]",
)
