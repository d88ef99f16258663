"""The toy models of SCIENCE.md §3, written for one example batch of one model.

W is m×n: column W_i is feature i's direction in the hidden space. Batches are feature-major
(F×B). Batch over models with vmap.

- ``relu``: x' = ReLU(WᵀW x + b) (tied weights; the TMS model).
- ``linear``: x' = WᵀW x + b.
- ``gelu``: x' = GeLU(WᵀW x + b), a smooth output non-linearity (Scherlis et al.'s comparison).
- ``relu_hidden``: h = ReLU(W x), x' = ReLU(Wᵀ h + b): a privileged hidden basis (TMS §"Privileged
  basis").
- ``abs``: h = ReLU(W x), y' = ReLU(W₂ h + b), untied W₂ (n×m), target |x| (TMS "computation in
  superposition").
- ``quadratic``: ŷ = xᵀWᵀW x + b (one scalar output), target y = Σ v_i x_i² with v the importance
  vector (Scherlis et al.'s capacity model).
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct

MODEL_KINDS = ("relu", "linear", "gelu", "relu_hidden", "abs", "quadratic")
INIT_KINDS = ("xavier", "notebook")
# Models whose hidden layer has a ReLU: its units are a privileged basis (one neuron = one axis).
PRIVILEGED = ("relu_hidden", "abs")


@struct.dataclass
class Params:
    W_HxF: jax.Array  # m × n
    b_O: jax.Array  # outputs: n, or 1 for the quadratic model
    W2_OxH: Optional[jax.Array] = None  # the untied output layer of ``abs`` (n × m); None when tied


def n_outputs(kind: str, n_features: int) -> int:
    return 1 if kind == "quadratic" else n_features


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


def init_params(key: jax.Array, n_features: int, n_hidden: int, std: float, kind: str = "relu") -> Params:
    """Normal W (and W₂ for ``abs``, same std), zero bias (SCIENCE §4)."""
    w_key, w2_key = jax.random.split(key)
    W_HxF = std * jax.random.normal(w_key, (n_hidden, n_features))
    W2_OxH = std * jax.random.normal(w2_key, (n_features, n_hidden)) if kind == "abs" else None
    return Params(W_HxF=W_HxF, b_O=jnp.zeros((n_outputs(kind, n_features),)), W2_OxH=W2_OxH)


# Models with at most this many weights compute their products as sums of scaled batch rows
# instead of matrix products: XLA fuses them into one vectorised loop, where dots of such tiny
# shapes run as many small matrix calls (n=2,m=1 x2500 models: ~2x; n=10,m=5 x100: ~1.4x on 2 CPU
# cores).
UNROLL_MAX_WEIGHTS = 50


def is_tiny(n_features: int, n_hidden: int) -> bool:
    """Whether models of this shape take the unrolled form (each layer has n·m weights)."""
    return n_features * n_hidden <= UNROLL_MAX_WEIGHTS


def _rows_matmul(A_OxI: jax.Array, rows_I: list) -> list:
    """A x as a list of batch rows, from x as a list of batch rows: the unrolled form for tiny A
    (see UNROLL_MAX_WEIGHTS). Rows stay separate arrays between layers, so XLA fuses the whole
    model per batch element (stacking and re-slicing them between layers cost ~20% at n=5, m=2)."""
    n_out, n_in = A_OxI.shape
    return [sum(A_OxI[o, i] * rows_I[i] for i in range(n_in)) for o in range(n_out)]


def _activate(pre: jax.Array, kind: str) -> jax.Array:
    """The output non-linearity of model ``kind``."""
    if kind in ("linear", "quadratic"):
        return pre
    if kind == "gelu":
        return jax.nn.gelu(pre)
    return jax.nn.relu(pre)  # relu, relu_hidden, abs


def _forward_rows(params: Params, x_rows: list, kind: str) -> tuple[list, list]:
    """(output rows, hidden rows) of a tiny model (see UNROLL_MAX_WEIGHTS) on a batch given as a
    list of feature rows."""
    W = params.W_HxF
    h = _rows_matmul(W, x_rows)
    if kind in PRIVILEGED:
        h = [jax.nn.relu(r) for r in h]
    # xᵀWᵀWx = ‖Wx‖² for the quadratic model
    pre = [sum(r * r for r in h)] if kind == "quadratic" else _rows_matmul(_second(params, kind), h)
    return [_activate(p + params.b_O[o], kind) for o, p in enumerate(pre)], h


def _second(params: Params, kind: str) -> jax.Array:
    """The output layer's matrix: W₂ for ``abs``, else Wᵀ (tied)."""
    return params.W2_OxH if kind == "abs" else params.W_HxF.T


def forward_with_hidden(params: Params, x_FxB: jax.Array, kind: str = "relu") -> tuple[jax.Array, jax.Array]:
    """(output O×B, hidden m×B) of model ``kind`` on a feature-major batch."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind {kind!r} is not one of {MODEL_KINDS}")
    if is_tiny(*params.W_HxF.shape[::-1]):
        out, h = _forward_rows(params, [x_FxB[i] for i in range(x_FxB.shape[0])], kind)
        return jnp.stack(out), jnp.stack(h)
    h_HxB = params.W_HxF @ x_FxB
    if kind in PRIVILEGED:
        h_HxB = jax.nn.relu(h_HxB)
    pre_OxB = jnp.sum(h_HxB * h_HxB, axis=0, keepdims=True) if kind == "quadratic" else _second(params, kind) @ h_HxB
    return _activate(pre_OxB + params.b_O[:, None], kind), h_HxB


def forward(params: Params, x_FxB: jax.Array, kind: str = "relu") -> jax.Array:
    return forward_with_hidden(params, x_FxB, kind)[0]


def target(x_FxB, importance_F: jax.Array, kind: str = "relu"):
    """What model ``kind`` is trained to output: x itself, |x| for ``abs``, Σ v_i x_i² (1×B) for
    ``quadratic``. A list of feature rows gives a list of output rows."""
    if isinstance(x_FxB, list):
        if kind == "abs":
            return [jnp.abs(r) for r in x_FxB]
        return [sum(importance_F[i] * r * r for i, r in enumerate(x_FxB))] if kind == "quadratic" else x_FxB
    if kind == "abs":
        return jnp.abs(x_FxB)
    if kind == "quadratic":
        return jnp.sum(importance_F[:, None] * x_FxB * x_FxB, axis=0, keepdims=True)
    return x_FxB


def weighted_mse(x_FxB, xhat_FxB, importance_F: jax.Array) -> jax.Array:
    """Importance-weighted squared error, mean over batch and features (the notebook's reduction
    within one model; summing over models is implicit in vmapping independent gradients). The
    batches may be lists of feature rows (the tiny models' form)."""
    if isinstance(x_FxB, list):
        terms = (importance_F[i] * jnp.mean((x - xhat) ** 2) for i, (x, xhat) in enumerate(zip(x_FxB, xhat_FxB)))
        return sum(terms) / len(x_FxB)
    return jnp.mean(importance_F[:, None] * (x_FxB - xhat_FxB) ** 2)


def model_loss(params: Params, x_FxB, importance_F: jax.Array, kind: str = "relu",
               l1_hidden: jax.Array | float | None = None) -> jax.Array:
    """The training loss of model ``kind``: importance-weighted squared error against its target
    (plain squared error for ``quadratic``, whose importances live in the target), plus
    ``l1_hidden`` · mean over the batch of ‖h‖₁ when given (TMS's L1 on hidden activations).

    The batch is an F×B array or a list of F feature rows. Tiny models keep separate rows through
    the loss: stacking the outputs and slicing them apart again in the gradient cost extra passes
    over the batch (about 20% of a step at n=2, m=1)."""
    weight_O = jnp.ones((1,)) if kind == "quadratic" else importance_F
    if kind in MODEL_KINDS and is_tiny(*params.W_HxF.shape[::-1]):
        rows = x_FxB if isinstance(x_FxB, list) else [x_FxB[i] for i in range(x_FxB.shape[0])]
        out, h = _forward_rows(params, rows, kind)
        loss = weighted_mse(target(rows, importance_F, kind), out, weight_O)
        l1 = sum(jnp.mean(jnp.abs(r)) for r in h) if l1_hidden is not None else None
    else:
        x_FxB = jnp.stack(x_FxB) if isinstance(x_FxB, list) else x_FxB
        out_OxB, h_HxB = forward_with_hidden(params, x_FxB, kind)
        loss = weighted_mse(target(x_FxB, importance_F, kind), out_OxB, weight_O)
        l1 = jnp.mean(jnp.sum(jnp.abs(h_HxB), axis=0)) if l1_hidden is not None else None
    return loss if l1 is None else loss + l1_hidden * l1
