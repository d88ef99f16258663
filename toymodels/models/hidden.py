"""Models with a ReLU hidden layer, whose units are a privileged basis (TMS "Privileged basis"
and "Computation in superposition"; docs/science/models.md).

- ``relu_hidden``: h = ReLU(W x), x' = ReLU(Wᵀ h + b). Option ``hidden_bias``: None (default, no
  hidden bias) or a number b₀: h = ReLU(W x + b_h) with a trainable hidden bias initialised at b₀
  (column ``b_hidden``; Jermyn et al.'s negative-bias init makes neurons more monosemantic).
- ``abs``: h = ReLU(W x), y' = ReLU(W₂ h + b) with an untied W₂ (n×m, column ``W2``), target |x|.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toymodels.models.base import ModelKind
from toymodels.models.tied import init_tied
from toymodels.registry import ConfigError


def init_relu_hidden(key, n_features: int, n_hidden: int, std: float, options) -> dict:
    """``init_tied``'s W and b (the same numbers), plus b_hidden = b₀ when ``hidden_bias`` is set."""
    params = init_tied(key, n_features, n_hidden, std, options)
    if options.get("hidden_bias") is not None:
        params["b_hidden"] = jnp.full((n_hidden,), float(options["hidden_bias"]))
    return params


def forward_relu_hidden(params, x, ops):
    pre = ops.matmul(params["W"], x)
    if "b_hidden" in params:  # a static fact of the parameter dict: no bias, no op
        pre = ops.add_bias(pre, params["b_hidden"])
    h = ops.apply(jax.nn.relu, pre)
    return ops.apply(jax.nn.relu, ops.add_bias(ops.matmul(params["W"].T, h), params["b"])), h


def check_relu_hidden(n_features: int, n_hidden: int, options) -> None:
    b0 = options.get("hidden_bias")
    if b0 is not None and (
        isinstance(b0, bool) or not isinstance(b0, (int, float)) or not abs(b0) < float("inf")
    ):
        raise ConfigError(
            "model.options.hidden_bias",
            f"must be null (no hidden bias) or a finite number, got {b0!r}",
        )


def init_abs(key, n_features: int, n_hidden: int, std: float, options) -> dict:
    """W and W₂ normal with the same std, zero bias."""
    w_key, w2_key = jax.random.split(key)
    return {
        "W": std * jax.random.normal(w_key, (n_hidden, n_features)),
        "b": jnp.zeros((n_features,)),
        "W2": std * jax.random.normal(w2_key, (n_features, n_hidden)),
    }


def forward_abs(params, x, ops):
    h = ops.apply(jax.nn.relu, ops.matmul(params["W"], x))
    return ops.apply(jax.nn.relu, ops.add_bias(ops.matmul(params["W2"], h), params["b"])), h


def target_abs(x, importance_F, ops):
    return ops.apply(jnp.abs, x)


RELU_HIDDEN = ModelKind(
    name="relu_hidden",
    init=init_relu_hidden,
    forward=forward_relu_hidden,
    privileged=True,
    options={"hidden_bias": None},
    check=check_relu_hidden,
    doc="h = ReLU(Wx [+ b_h]), x' = ReLU(Wᵀh + b): a privileged hidden basis",
)
ABS = ModelKind(
    name="abs",
    init=init_abs,
    forward=forward_abs,
    target=target_abs,
    privileged=True,
    doc="h = ReLU(Wx), y' = ReLU(W₂h + b), untied W₂ (column W2), target |x|",
)
