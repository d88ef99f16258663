"""Models with a ReLU hidden layer, whose units are a privileged basis (TMS "Privileged basis"
and "Computation in superposition"; SCIENCE.md §3).

- ``relu_hidden``: h = ReLU(W x), x' = ReLU(Wᵀ h + b).
- ``abs``: h = ReLU(W x), y' = ReLU(W₂ h + b) with an untied W₂ (n×m, column ``W2``), target |x|.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toymodels.models.base import ModelKind
from toymodels.models.tied import init_tied


def forward_relu_hidden(params, x, ops):
    h = ops.apply(jax.nn.relu, ops.matmul(params["W"], x))
    return ops.apply(jax.nn.relu, ops.add_bias(ops.matmul(params["W"].T, h), params["b"])), h


def init_abs(key, n_features: int, n_hidden: int, std: float, options) -> dict:
    """W and W₂ normal with the same std, zero bias."""
    w_key, w2_key = jax.random.split(key)
    return {"W": std * jax.random.normal(w_key, (n_hidden, n_features)),
            "b": jnp.zeros((n_features,)),
            "W2": std * jax.random.normal(w2_key, (n_features, n_hidden))}


def forward_abs(params, x, ops):
    h = ops.apply(jax.nn.relu, ops.matmul(params["W"], x))
    return ops.apply(jax.nn.relu, ops.add_bias(ops.matmul(params["W2"], h), params["b"])), h


def target_abs(x, importance_F, ops):
    return ops.apply(jnp.abs, x)


RELU_HIDDEN = ModelKind(name="relu_hidden", init=init_tied, forward=forward_relu_hidden, privileged=True,
                        doc="h = ReLU(Wx), x' = ReLU(Wᵀh + b): a privileged hidden basis")
ABS = ModelKind(name="abs", init=init_abs, forward=forward_abs, target=target_abs, privileged=True,
                doc="h = ReLU(Wx), y' = ReLU(W₂h + b), untied W₂ (column W2), target |x|")
