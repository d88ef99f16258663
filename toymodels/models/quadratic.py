"""Scherlis et al.'s capacity model (docs/science/models.md, docs/science/capacity.md): ŷ = xᵀWᵀW x + b,
one scalar output,
trained towards y = Σ v_i x_i² with v the importance vector (the importances live in the target,
so the output is not importance-weighted). Its loss has a closed form: ``analysis.theory``'s
``capacity_theory``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toymodels.models.base import ModelKind


def init_quadratic(key, n_features: int, n_hidden: int, std: float, options) -> dict:
    w_key, _ = jax.random.split(key)
    return {"W": std * jax.random.normal(w_key, (n_hidden, n_features)), "b": jnp.zeros((1,))}


def forward_quadratic(params, x, ops):
    h = ops.matmul(params["W"], x)
    return ops.add_bias(ops.weighted_square_sum(h), params["b"]), h  # xᵀWᵀWx = ‖Wx‖²


def target_quadratic(x, importance_F, ops):
    return ops.weighted_square_sum(x, importance_F)


QUADRATIC = ModelKind(
    name="quadratic",
    init=init_quadratic,
    forward=forward_quadratic,
    target=target_quadratic,
    n_outputs=lambda n_features, options: 1,
    importance_weighted=False,
    doc="ŷ = xᵀWᵀWx + b, one output, target Σ v_i x_i² (Scherlis et al.)",
)
