"""The full-batch loss of a finite dataset and its gradient, summed over pieces of points
(docs/science/double-descent.md; ``toymodels.finite`` trains with them).

A point is stored sparsely as K (index, value) pairs; the loss of a piece of B points is dense only
in its n outputs, and the sparse inputs correct the error at the stored features: memory
O(piece·n + T·K), never O(T·n) (on a GPU the piece×n part is meant to be recomputed, not stored,
see ``_piece_error_and_grad``; measured, XLA still stores it once: docs/gpus.md, "Second lease").
Array names carry their shape: N points, K stored features, F features (n), H hidden (m), B points
per piece.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import struct

from toymodels.models import MODELS

if TYPE_CHECKING:
    from toymodels.finite import FiniteSpec


@struct.dataclass
class FiniteParams:
    W_HxF: jax.Array
    b_F: jax.Array


@struct.dataclass
class SparsePoints:
    idx_NxK: jax.Array  # int32 feature indices, ascending; unused slots 0
    val_NxK: jax.Array  # values; unused slots 0 (so they add nothing anywhere)
    weight_N: jax.Array  # 1 for a real point, 0 for padding up to whole pieces


# Points per piece when piece_size is 0, by the kind of device that runs the program. CPU: pieces
# whose piece×n arrays stay near the caches (at n = 10⁴, T = 10⁵, 512 and 1,024 points measured
# within the noise of a loaded 2-core machine, 2,048 and larger slower). GPU: the dense part of a
# piece is recomputed in fused reductions, not stored, so pieces are large and few (each piece
# costs a handful of sequential kernels); 32,768 bounds the memory a piece takes even if the
# backend stored its piece×n arrays after all (1.3 GB each at n = 10⁴; it does store one, measured
# on an H200: docs/gpus.md, "Second lease"). There 8,192 / 32,768 / 100,000 points per piece took
# 11.5 / 11.8 / 8.7 ms a step at n = 10⁴, T = 10⁵.
DEFAULT_PIECE = {"cpu": 1024, "gpu": 32_768}


def default_piece_size(platform: str | None = None) -> int:
    """Points per piece on ``platform`` ("cpu", "gpu"; None: JAX's default backend)."""
    platform = platform or jax.default_backend()
    return DEFAULT_PIECE["cpu" if platform == "cpu" else "gpu"]


def piece_layout(n_points: int, piece_size: int, platform: str | None = None) -> tuple[int, int]:
    """(points per piece B, pieces P): B = min(piece_size, n_points), padded to P·B points;
    piece_size 0 takes ``default_piece_size(platform)``."""
    B = min(piece_size or default_piece_size(platform), n_points)
    return B, -(-n_points // B)


def hidden_vectors(W_HxF: jax.Array, points: SparsePoints) -> jax.Array:
    """h_t = W x_t (N×H), gathering only the stored columns of W."""
    return jnp.einsum("nkh,nk->nh", W_HxF.T[points.idx_NxK], points.val_NxK)


def output_activation(model: str):
    """(activation, derivative) of the output layer of the tied model kind ``model``
    (x' = act(WᵀWx + b), ``ModelKind.output_activation``): the one place the finite-data trainer
    looks at the model kind. The derivative is the activation's forward-mode derivative (ReLU's
    is 0 at 0)."""
    act = finite_kind(model).output_activation
    return act, lambda pre: jax.jvp(act, (pre,), (jnp.ones_like(pre),))[1]


def finite_kinds() -> tuple[str, ...]:
    """The model kinds the finite-data trainer can train: tied models with an output activation."""
    return tuple(kind.name for kind in MODELS if kind.output_activation is not None)


def finite_kind(model: str):
    kind = MODELS.get(model)
    if kind.output_activation is None:
        raise ValueError(
            f"model kind {model!r} has no full-batch gradient; finite data trains {', '.join(finite_kinds())}"
        )
    return kind


# Up to this many hidden dimensions, Wᵀh is written as a sum of m broadcast products, which XLA
# fuses with the ReLU and the error into one pass over the piece; a dot with contraction size m
# would run as a separate matrix call.
UNROLL_MAX_HIDDEN = 8


def _unrolled(W_HxF: jax.Array) -> bool:
    return W_HxF.shape[0] <= UNROLL_MAX_HIDDEN


def fused_by_default() -> bool:
    """Whether the gradient's dense products are written as reductions fused with the error's
    computation (``_piece_error_and_grad``): on a GPU, where XLA fuses them into one pass and no
    piece×n array is stored; not on the CPU, where XLA runs each reduction as its own pass over
    stored inputs and the matrix products of a stored error are 2–5× faster (measured)."""
    return jax.default_backend() != "cpu"


def _hidden_to_outputs(h_BxH: jax.Array, W_HxF: jax.Array) -> jax.Array:
    if _unrolled(W_HxF):
        return sum(h_BxH[:, k, None] * W_HxF[k] for k in range(W_HxF.shape[0]))  # type: ignore[return-value]
    return h_BxH @ W_HxF


def _forward(params: FiniteParams, piece: SparsePoints):
    """(h_BxH, W_BxKxH, pre_BxF, pre_BxK): hidden vectors, the gathered columns of W at the stored
    features, the dense pre-activations and their values at the stored features, the last
    computed from the gathered columns so that nothing reads the dense B×n array back. (The small
    per-point contractions stay einsums: as products and sums the CPU backend stores their
    broadcast operands, 1.5–2× slower steps at dd_cpu's shapes, measured.)"""
    W_BxKxH = params.W_HxF.T[piece.idx_NxK]
    h_BxH = jnp.einsum("bkh,bk->bh", W_BxKxH, piece.val_NxK)
    pre_BxF = _hidden_to_outputs(h_BxH, params.W_HxF) + params.b_F
    pre_BxK = jnp.einsum("bkh,bh->bk", W_BxKxH, h_BxH) + params.b_F[piece.idx_NxK]
    return h_BxH, W_BxKxH, pre_BxF, pre_BxK


def _piece_error_sum(
    params: FiniteParams, piece: SparsePoints, importance_F: jax.Array, model: str
):
    """Σ over the piece's points of Σ_i I_i (x_i − x̂_i)²: every output scored as if x_i = 0, then
    corrected at the stored features (indices distinct; unused slots have value 0, correct by 0)."""
    act, _ = output_activation(model)
    _, _, pre_BxF, pre_BxK = _forward(params, piece)
    out_BxF, out_BxK = act(pre_BxF), act(pre_BxK)
    fix_BxK = importance_F[piece.idx_NxK] * ((piece.val_NxK - out_BxK) ** 2 - out_BxK**2)
    w_Bx1 = piece.weight_N[:, None]
    return jnp.sum(w_Bx1 * out_BxF * out_BxF * importance_F) + jnp.sum(w_Bx1 * fix_BxK)


def _as_pieces(points: SparsePoints, B: int) -> SparsePoints:
    return jax.tree.map(lambda a: a.reshape((-1, B) + a.shape[1:]), points)


def _sum_over_pieces(piece_fn, zero, points: SparsePoints, B: int):
    """Σ of ``piece_fn`` over the pieces: a scan when there are several, a plain call for one (no
    loop for XLA to keep around a whole-dataset piece)."""
    pieces = _as_pieces(points, B)
    if pieces.weight_N.shape[0] == 1:
        return piece_fn(jax.tree.map(lambda a: a[0], pieces))
    total, _ = jax.lax.scan(
        lambda acc, p: (jax.tree.map(jnp.add, acc, piece_fn(p)), None), zero, pieces
    )
    return total


def dataset_loss(params, points, importance_F, n_points: int, spec: FiniteSpec) -> jax.Array:
    """Importance-weighted squared error, mean over points and features (toymodels.models'
    reduction), summed piece by piece."""
    B, _ = piece_layout(n_points, spec.piece_size)
    total = _sum_over_pieces(
        lambda p: _piece_error_sum(params, p, importance_F, spec.model), jnp.zeros(()), points, B
    )
    return total / (n_points * spec.n_features)


def _piece_error_and_grad(
    params: FiniteParams,
    piece: SparsePoints,
    importance_F: jax.Array,
    model: str,
    fused: bool,
    recompute: bool = False,
):
    """``_piece_error_sum`` and its gradient, written out (autodiff of ``_piece_error_sum`` is the
    reference in the tests). ∂/∂pre is a dense part G = 2 w I x̂ act′(pre) plus a sparse part
    Δ = −2 w I x act′(pre) at the stored features. The dense part only enters through Σ_b G (b),
    Σ_b h_bk G_bi (W's output side) and Σ_i G_bi W_ki (h): ``fused`` writes them as m reductions
    each, which XLA's GPU backend fuses with G's computation from h, W and b, so no B×n array is
    stored (small m only); otherwise as matrix products of a stored G. The sparse part is
    scattered into W's columns and b, never into a B×n buffer as autodiff's gather transpose does.

    ``recompute`` (fused only): the row sums (∂h) compute G again from h, W and b behind an
    optimisation barrier, so that XLA cannot share one G between the column sums and the row sums
    and store it (what it does on a GPU, measured: docs/gpus.md, "Second lease"). The same
    arithmetic per element; not yet timed on a GPU, so not a default."""
    act, dact = output_activation(model)
    W_HxF = params.W_HxF
    h_BxH, W_BxKxH, pre_BxF, pre_BxK = _forward(params, piece)
    out_BxF, out_BxK = act(pre_BxF), act(pre_BxK)
    w_Bx1 = piece.weight_N[:, None]
    imp_BxK = importance_F[piece.idx_NxK]
    value = jnp.sum(w_Bx1 * out_BxF * out_BxF * importance_F)
    value += jnp.sum(w_Bx1 * imp_BxK * ((piece.val_NxK - out_BxK) ** 2 - out_BxK**2))
    dense_error = lambda w, imp, pre: 2.0 * w * imp * act(pre) * dact(pre)  # G
    G_BxF = dense_error(w_Bx1, importance_F, pre_BxF)
    D_BxK = -2.0 * w_Bx1 * imp_BxK * piece.val_NxK * dact(pre_BxK)
    flat_idx = piece.idx_NxK.reshape(-1)
    db_F = jnp.sum(G_BxF, axis=0) + jnp.zeros_like(params.b_F).at[flat_idx].add(D_BxK.reshape(-1))
    # Output side, pre = Wᵀh: ∂W_ki += Σ_b h_bk G_bi and ∂h_bk = Σ_i G_bi W_ki (+ the sparse Δ).
    if fused and _unrolled(W_HxF):
        H = W_HxF.shape[0]
        dW_out_HxF = jnp.stack([jnp.sum(h_BxH[:, k, None] * G_BxF, axis=0) for k in range(H)])
        G_rows_BxF = G_BxF
        if recompute:
            h_, W_, b_, w_, imp_ = jax.lax.optimization_barrier(
                (h_BxH, W_HxF, params.b_F, w_Bx1, importance_F)
            )
            G_rows_BxF = dense_error(w_, imp_, _hidden_to_outputs(h_, W_) + b_)
        dh_BxH = jnp.stack([jnp.sum(G_rows_BxF * W_HxF[k], axis=1) for k in range(H)], axis=1)
    else:
        dW_out_HxF, dh_BxH = h_BxH.T @ G_BxF, G_BxF @ W_HxF.T
    dh_BxH += jnp.einsum("bk,bkh->bh", D_BxK, W_BxKxH)
    # Sparse scatters into W's columns: the output side's Δ, and the input side h = Σ_k W[:, idx_k] x_k.
    dWT_KxH = D_BxK[..., None] * h_BxH[:, None, :] + piece.val_NxK[..., None] * dh_BxH[:, None, :]
    dW_HxF = (
        dW_out_HxF + jnp.zeros_like(W_HxF.T).at[flat_idx].add(dWT_KxH.reshape(-1, W_HxF.shape[0])).T
    )
    return value, FiniteParams(W_HxF=dW_HxF, b_F=db_F)


def dataset_loss_and_grad(
    params,
    points,
    importance_F,
    n_points: int,
    spec: FiniteSpec,
    fused: bool | None = None,
    recompute: bool = False,
):
    """(loss, grads) of ``dataset_loss``, each piece's gradient accumulated in the sum over pieces,
    so the backward pass too holds one piece at a time. ``fused``, ``recompute``: see
    ``_piece_error_and_grad`` (``fused`` None: ``fused_by_default()``)."""
    B, _ = piece_layout(n_points, spec.piece_size)
    fused = fused_by_default() if fused is None else fused
    zero = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
    total, grads = _sum_over_pieces(
        lambda p: _piece_error_and_grad(params, p, importance_F, spec.model, fused, recompute),
        zero,
        points,
        B,
    )
    scale = 1.0 / (n_points * spec.n_features)
    return total * scale, jax.tree.map(lambda g: g * scale, grads)
