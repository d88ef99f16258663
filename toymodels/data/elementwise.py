"""Data kinds whose features are independent, each drawn from its own uniform (docs/science/models.md).

- ``sparse``: x_i = 0 with probability 1 − p_i, else U[0, 1] (the TMS data).
- ``signed``: as sparse, but U[−1, 1] when active (the |x| computation model's inputs).
- ``kurtosis``: x_i = s_i u_i / √p_i with P(s_i = 1) = p_i and u_i a zero-mean, unit-variance
  ``magnitude`` (uniform, gaussian or sign): unit variance, kurtosis K = E[u⁴] / p (Scherlis et
  al.'s capacity data).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.data.base import DataKind
from toymodels.registry import ConfigError

MAGNITUDES = ("uniform", "gaussian", "sign")
# E[u⁴] of each zero-mean, unit-variance magnitude of the ``kurtosis`` data.
MAGNITUDE_KURTOSIS = {"uniform": 1.8, "gaussian": 3.0, "sign": 1.0}


def zero_mean_unit(v: jax.Array, magnitude: str) -> jax.Array:
    """A zero-mean, unit-variance value from v ~ U[0, 1)."""
    if magnitude == "uniform":
        return math.sqrt(3.0) * (2.0 * v - 1.0)
    if magnitude == "sign":
        return jnp.where(v < 0.5, -1.0, 1.0)
    if magnitude == "gaussian":  # inverse CDF; the clip keeps v = 0 finite (2^-23 resolution)
        return math.sqrt(2.0) * jax.scipy.special.erfinv(
            jnp.clip(2.0 * v - 1.0, -1.0 + 2.0**-23, 1.0 - 2.0**-23)
        )
    raise ValueError(f"magnitude {magnitude!r} is not one of {MAGNITUDES}")


def check_magnitude(spec, n_features) -> None:
    if spec.option("magnitude") not in MAGNITUDES:
        raise ConfigError(
            "data.magnitude",
            f"{spec.option('magnitude')!r} is not allowed; choose one of {', '.join(MAGNITUDES)}",
        )


def kurtosis_of(spec, density_F) -> np.ndarray:
    return MAGNITUDE_KURTOSIS[spec.option("magnitude")] / np.asarray(density_F, np.float64)


SPARSE = DataKind(
    name="sparse", value=lambda v, p, spec: v, doc="x_i = 0 with probability 1 − p_i, else U[0, 1]"
)
SIGNED = DataKind(
    name="signed",
    value=lambda v, p, spec: 2.0 * v - 1.0,
    signed=True,
    doc="the same with U[−1, 1] (the abs model's inputs)",
)
KURTOSIS = DataKind(
    name="kurtosis",
    value=lambda v, p, spec: zero_mean_unit(v, spec.option("magnitude")) / jnp.sqrt(p),
    signed=True,
    kurtosis=kurtosis_of,
    options={"magnitude": "uniform"},
    check=check_magnitude,
    doc="x_i = s_i·u_i/√p_i, u_i zero-mean unit-variance data.magnitude: kurtosis E[u⁴]/p",
)
