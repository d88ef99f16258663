"""Tied-weight toy models (SCIENCE.md §3), written for one example batch of one model.

W is m×n: column W_i is feature i's direction in the hidden space. Batch over models with vmap.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

MODEL_KINDS = ("relu", "linear")
INIT_KINDS = ("xavier", "notebook")


@struct.dataclass
class Params:
    W_HxF: jax.Array  # m × n
    b_F: jax.Array  # n


def init_std(n_features: int, n_hidden: int, init: str = "xavier", init_instances: int = 10) -> float:
    """Standard deviation of the normal init of W.

    ``xavier``: per-model Xavier-normal, sqrt(2 / (n + m)).
    ``notebook``: what the TMS notebook got by applying Xavier-normal to its stacked
    (instances, n, m) tensor: fan_in = n·m, fan_out = instances·m, so sqrt(2 / (m (n + instances))).
    It depends on how many models the notebook stacked, hence ``init_instances``.
    """
    if init == "xavier":
        return math.sqrt(2.0 / (n_features + n_hidden))
    if init == "notebook":
        return math.sqrt(2.0 / (n_hidden * (n_features + init_instances)))
    raise ValueError(f"init {init!r} is not one of {INIT_KINDS}")


def init_params(key: jax.Array, n_features: int, n_hidden: int, std: float) -> Params:
    W_HxF = std * jax.random.normal(key, (n_hidden, n_features))
    return Params(W_HxF=W_HxF, b_F=jnp.zeros((n_features,)))


# Models with at most this many weights compute WᵀW x as sums of scaled batch rows instead of
# matrix products: XLA fuses them into one vectorised loop, where dots of such tiny shapes run as
# many small matrix calls (n=2,m=1 x2500 models: ~2x; n=10,m=5 x100: ~1.4x on 2 CPU cores).
UNROLL_MAX_WEIGHTS = 50


def forward(params: Params, x_FxB: jax.Array, kind: str = "relu") -> jax.Array:
    """x' = act(WᵀW x + b), act = ReLU or identity, on a feature-major batch (F×B)."""
    W = params.W_HxF
    n_hidden, n_features = W.shape
    if n_hidden * n_features <= UNROLL_MAX_WEIGHTS:
        h = [sum(W[k, i] * x_FxB[i] for i in range(n_features)) for k in range(n_hidden)]
        out_FxB = jnp.stack([sum(W[k, i] * h[k] for k in range(n_hidden)) for i in range(n_features)])
    else:
        out_FxB = W.T @ (W @ x_FxB)
    out_FxB = out_FxB + params.b_F[:, None]
    if kind == "relu":
        return jax.nn.relu(out_FxB)
    if kind == "linear":
        return out_FxB
    raise ValueError(f"model kind {kind!r} is not one of {MODEL_KINDS}")


def weighted_mse(x_FxB: jax.Array, xhat_FxB: jax.Array, importance_F: jax.Array) -> jax.Array:
    """Importance-weighted squared error, mean over batch and features (the notebook's reduction
    within one model; summing over models is implicit in vmapping independent gradients)."""
    return jnp.mean(importance_F[:, None] * (x_FxB - xhat_FxB) ** 2)
