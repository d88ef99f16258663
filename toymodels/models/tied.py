"""Tied-weight output models (TMS, docs/science/models.md): x' = act(WᵀW x + b), W m×n, column W_i the
direction of feature i in the hidden space.

- ``relu``: act = ReLU (the TMS model).
- ``linear``: no activation; never superposes, learns the top-m features by importance.
- ``gelu``: act = GeLU, a smooth output non-linearity (Scherlis et al.'s comparison).
"""

from __future__ import annotations

import jax

from toymodels.models.base import ModelKind


def init_tied(key, n_features: int, n_hidden: int, std: float, options) -> dict:
    """Normal W, zero bias (docs/science/models.md). The key is split as for the untied ``abs`` model, so W
    draws the same numbers whichever model kind a seed trains."""
    w_key, _ = jax.random.split(key)
    return {
        "W": std * jax.random.normal(w_key, (n_hidden, n_features)),
        "b": jax.numpy.zeros((n_features,)),
    }


def tied_kind(name: str, act, doc: str) -> ModelKind:
    def forward(params, x, ops):
        h = ops.matmul(params["W"], x)
        pre = ops.add_bias(ops.matmul(params["W"].T, h), params["b"])
        return (pre if act is None else ops.apply(act, pre)), h

    return ModelKind(
        name=name,
        init=init_tied,
        forward=forward,
        output_activation=(lambda pre: pre) if act is None else act,
        doc=doc,
    )


RELU = tied_kind("relu", jax.nn.relu, "x' = ReLU(WᵀWx + b), tied weights (TMS)")
LINEAR = tied_kind("linear", None, "x' = WᵀWx + b")
GELU = tied_kind("gelu", jax.nn.gelu, "x' = GeLU(WᵀWx + b)")
