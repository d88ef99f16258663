"""Model kinds (docs/science/models.md): the explicit table, and the functions the pipeline calls with a
kind's name. Each kind is one ``ModelKind`` object (``toymodels.models.base``) in one file:

| kind | file | model |
|---|---|---|
| ``relu``, ``linear``, ``gelu`` | ``tied.py`` | x' = act(WᵀWx + b) |
| ``relu_hidden``, ``abs`` | ``hidden.py`` | a ReLU hidden layer (privileged basis); ``abs``: untied W₂, target \\|x\\| |
| ``quadratic`` | ``quadratic.py`` | ŷ = xᵀWᵀWx + b, target Σ v_i x_i² |
| ``residual_mlp``, ``residual_mlp_groups`` | ``residual.py`` | r₀ = Ex, L layers r += W_out ReLU(W_in r + b), output Eᵀr |
| ``cc_residual`` | ``compressed.py`` | compressed computation: r₀ = W_Eᵀx, r += W_out ReLU(W_in r), ŷ = W_E r, target x + ReLU(x) |

A user's kind: build a ``ModelKind`` in your own file and ``MODELS.register`` it (docs/kinds.md).
Written for one model and one batch; vmap over models.
"""

from __future__ import annotations

import jax

from toymodels.models import compressed, hidden, quadratic, residual, tied
from toymodels.models.base import (
    DENSE,
    INIT_KINDS,
    ROWS,
    UNROLL_MAX_WEIGHTS,
    ModelKind,
    Params,
    init_std,
    is_tiny,
    ops_for,
)
from toymodels.registry import Registry

MODELS: Registry[ModelKind] = Registry(
    "model kind",
    "model.kind",
    [
        tied.RELU,
        tied.LINEAR,
        tied.GELU,
        hidden.RELU_HIDDEN,
        hidden.ABS,
        quadratic.QUADRATIC,
        residual.RESIDUAL_MLP,
        residual.RESIDUAL_MLP_GROUPS,
        compressed.CC_RESIDUAL,
    ],
)

__all__ = [
    "DENSE",
    "INIT_KINDS",
    "MODELS",
    "ROWS",
    "UNROLL_MAX_WEIGHTS",
    "ModelKind",
    "Params",
    "bind_kind",
    "forward",
    "forward_with_hidden",
    "init_params",
    "init_std",
    "is_tiny",
    "kind_of",
    "loss_and_hidden",
    "model_loss",
    "n_outputs",
    "ops_for",
    "register_model",
    "target",
]


def register_model(kind: ModelKind, origin: str | None = None) -> ModelKind:
    """Make ``kind`` trainable by name (``model.kind=<kind.name>``)."""
    return MODELS.register(kind, origin)


def kind_of(kind: str | ModelKind) -> ModelKind:
    return MODELS.get(kind) if isinstance(kind, str) else kind


def bind_kind(kind: str | ModelKind, n_features: int, n_hidden: int, options=None) -> ModelKind:
    """The kind as one compiled program uses it: specialised to its static options when it has a
    ``bind`` (``ModelKind.bind``), else the kind itself."""
    k = kind_of(kind)
    return (
        k
        if k.bind is None
        else k.bind(k, n_features, n_hidden, {**k.options, **dict(options or {})})
    )


def n_outputs(kind: str | ModelKind, n_features: int, options=None) -> int:
    return kind_of(kind).n_outputs(n_features, dict(options or {}))


def init_params(
    key: jax.Array,
    n_features: int,
    n_hidden: int,
    std: float,
    kind: str | ModelKind = "relu",
    options=None,
) -> Params:
    """The kind's initial parameters (a dict of named arrays)."""
    k = kind_of(kind)
    return k.init(key, n_features, n_hidden, std, {**k.options, **dict(options or {})})


def _ops(kind: ModelKind, params: Params):
    n_hidden, n_features = kind.features(params).shape
    return ops_for(n_features, n_hidden)


def forward_with_hidden(params: Params, x_FxB: jax.Array, kind: str | ModelKind = "relu"):
    """(outputs O×B, hidden m×B) of the model on a feature-major batch."""
    k = kind_of(kind)
    ops = _ops(k, params)
    out, h = k.forward(params, ops.batch(x_FxB), ops)
    return ops.stack(out), ops.stack(h)


def forward(params: Params, x_FxB: jax.Array, kind: str | ModelKind = "relu") -> jax.Array:
    return forward_with_hidden(params, x_FxB, kind)[0]


def target(x_FxB: jax.Array, importance_F: jax.Array, kind: str | ModelKind = "relu") -> jax.Array:
    """What the kind is trained to output on a feature-major batch (O×B)."""
    return DENSE.stack(kind_of(kind).target(x_FxB, importance_F, DENSE))


def loss_and_hidden(
    params: Params, x_FxB, importance_F: jax.Array, kind: str | ModelKind = "relu", weight_FxB=None
):
    """(loss, hidden, ops): the squared error against the kind's target, mean over batch and
    outputs, each output weighted by its importance when the kind is importance-weighted (the
    notebook's reduction within one model; summing over models is implicit in vmapping independent
    gradients); the hidden activations and the form (``ops``) the batch was computed in, for the
    optional loss terms (``toymodels.terms``). ``weight_FxB``, when given, weights every entry
    too: the per-entry loss weights of a data kind that has them (``DataKind.weights``; outputs must
    then be the n features), in the same form as the batch. Without it the program is the one
    without weights.

    The batch is an F×B array or a list of F feature rows; it is taken to the form the model's
    shape computes in (``ops_for``), so tiny models keep separate rows through the loss:
    stacking the outputs and slicing them apart again in the gradient cost extra passes over the
    batch (about 20% of a step at n=2, m=1)."""
    k = kind_of(kind)
    ops = _ops(k, params)
    x = ops.batch(x_FxB)
    out, h = k.forward(params, x, ops)
    weight_O = importance_F if k.importance_weighted else jax.numpy.ones((len(out),))
    entries = None if weight_FxB is None else ops.batch(weight_FxB)
    return ops.weighted_mse(k.target(x, importance_F, ops), out, weight_O, entries), h, ops


def model_loss(
    params: Params,
    x_FxB,
    importance_F: jax.Array,
    kind: str | ModelKind = "relu",
    l1_hidden: jax.Array | float | None = None,
    weight_FxB=None,
) -> jax.Array:
    """The training loss (``loss_and_hidden``'s), plus ``l1_hidden`` · mean over the batch of ‖h‖₁
    when given (TMS's L1 on hidden activations, the ``l1_hidden`` loss term)."""
    loss, h, ops = loss_and_hidden(params, x_FxB, importance_F, kind, weight_FxB)
    return loss if l1_hidden is None else loss + l1_hidden * ops.l1(h)
