"""The SAE kinds, one ``SaeKind`` object each (``toymodels.sae.base``). With pre = W_enc (h − b_dec)
+ b_enc and ĥ = W_dec f + b_dec (unit-norm decoder columns), every loss is ‖h − ĥ‖² plus the
kind's terms, means over the batch:

| kind | codes f | added terms |
|---|---|---|
| ``plain`` | ReLU(pre) | λ‖f‖₁ |
| ``gated`` | 1[π_gate > 0] ⊙ ReLU(e^r ⊙ proj + b_mag) | λ‖ReLU(π_gate)‖₁ + aux |
| ``rescaled`` | e^r ⊙ ReLU(π_gate) | λ‖ReLU(π_gate)‖₁ + aux |
| ``topk`` | ReLU(pre), each input's k largest | — |
| ``batchtopk`` | ReLU(pre), the batch's k·B largest | — |
| ``jumprelu`` | pre ⊙ H(pre − θ) | λ Σ_j H(pre_j − θ_j) (L0), straight-through θ |
| ``matryoshka`` | as ``batchtopk`` | Σ_w ‖h − (W_dec[:, :w] f[:w] + b_dec)‖² over nested widths w |

Gated (Rajamanoharan et al. 2024, "Improving dictionary learning with gated SAEs"): one encoder
matrix serves a gate path π_gate = proj + b_gate (proj = W_enc (h − b_dec), b_gate is ``b_enc``)
and a magnitude path. The L1 falls on ReLU(π_gate), not on f, so it does not shrink the
magnitudes it selects; the Heaviside passes no gradient, so an auxiliary loss
‖h − (sg(W_dec) ReLU(π_gate) + sg(b_dec))‖² (sg: stop gradient) trains the gate to reconstruct.

``rescaled`` is the gated SAE without its Heaviside step: one path, f = e^r ⊙ ReLU(π_gate), with
the same penalty and auxiliary loss. The auxiliary loss is what keeps it sparse: without it the
encoder could scale π_gate down and r up, leaving f unchanged and the L1 penalty going to zero.
On an isolated feature of magnitude a (unit encoder and decoder along it) plain outputs
(a − θ)₊, rescaled r(a − θ)₊ and gated a·1[a > θ] (docs/science/saes.md).

TopK (Gao et al. 2024) takes k per SAE under a static ``spec.k_max``; BatchTopK (Bussmann et
al. 2024) any k per SAE (``spec.k_max`` bounds it for checks). BatchTopK's codes depend on the batch; at evaluation each input is encoded alone
with a threshold θ: f = pre ⊙ 1[pre > θ], θ tracked during training as a running mean of each
batch's smallest kept activation (decay ``spec.threshold_decay``).

JumpReLU (Rajamanoharan et al. 2024, "Jumping ahead"): per-latent thresholds θ = e^t, an L0
penalty, and the paper's straight-through pseudo-derivatives with a rectangle kernel of width ε
(``hp.bandwidth``) for the threshold's gradient (``base.jump_relu``, ``base.step``).

Matryoshka BatchTopK (Bussmann et al. 2025; Nabeshima 2024): BatchTopK codes, and every prefix
of the dictionary of width w in ``spec.matryoshka_widths`` must reconstruct h on its own, so the
first latents learn general features and later ones refine them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from toymodels.sae.base import (
    SaeKind,
    batch_top_k_mask,
    decoder,
    example_top_k_mask,
    jump_relu,
    l1_of,
    pre_activation,
    projection,
    squared_error,
    step,
)

# --- plain -------------------------------------------------------------------------------------


def encode_plain(params, h_HxB, hp, spec, training):
    return jax.nn.relu(pre_activation(params, h_HxB)), {}


PLAIN = SaeKind(
    name="plain",
    encode=encode_plain,
    hparams=("l1",),
    loss_terms=lambda params, h_HxB, f_DxB, aux, hp, spec: {"l1": hp.l1 * l1_of(f_DxB)},
    doc="f = ReLU(W_enc(h − b_dec) + b_enc), loss ‖h − ĥ‖² + λ‖f‖₁",
)


# --- gated and rescaled --------------------------------------------------------------------------


def gate_terms(params, h_HxB, f_DxB, aux, hp, spec):
    """λ‖ReLU(π_gate)‖₁, and the gate path alone through a frozen decoder must reconstruct h."""
    gate_DxB = aux["gate"]
    frozen_HxB = (
        jax.lax.stop_gradient(decoder(params)) @ gate_DxB
        + jax.lax.stop_gradient(params["b_dec_H"])[:, None]
    )
    return {"l1": hp.l1 * l1_of(gate_DxB), "aux": squared_error(h_HxB, frozen_HxB)}


def init_gated(key, n_hidden, dict_size, spec):
    return {"r_mag_D": jnp.zeros((dict_size,)), "b_mag_D": jnp.zeros((dict_size,))}


def encode_gated(params, h_HxB, hp, spec, training):
    proj_DxB = projection(params, h_HxB)
    gate_pre_DxB = proj_DxB + params["b_enc_D"][:, None]
    mag_DxB = jnp.exp(params["r_mag_D"])[:, None] * proj_DxB + params["b_mag_D"][:, None]
    f_DxB = jnp.where(gate_pre_DxB > 0, jax.nn.relu(mag_DxB), 0.0)
    return f_DxB, {"gate": jax.nn.relu(gate_pre_DxB)}


GATED = SaeKind(
    name="gated",
    encode=encode_gated,
    loss_terms=gate_terms,
    init=init_gated,
    hparams=("l1",),
    doc="f = 1[π_gate > 0] ⊙ ReLU(π_mag); L1 on ReLU(π_gate) plus a frozen-decoder aux loss",
)


def init_rescaled(key, n_hidden, dict_size, spec):
    return {"r_mag_D": jnp.zeros((dict_size,))}


def encode_rescaled(params, h_HxB, hp, spec, training):
    gate_DxB = jax.nn.relu(pre_activation(params, h_HxB))
    return jnp.exp(params["r_mag_D"])[:, None] * gate_DxB, {"gate": gate_DxB}


RESCALED = SaeKind(
    name="rescaled",
    encode=encode_rescaled,
    loss_terms=gate_terms,
    init=init_rescaled,
    hparams=("l1",),
    doc="f = e^r ⊙ ReLU(π_gate): the gated SAE without its Heaviside step",
)


# --- top-k kinds ---------------------------------------------------------------------------------


def encode_topk(params, h_HxB, hp, spec, training):
    pre_DxB = pre_activation(params, h_HxB)
    return jnp.where(example_top_k_mask(pre_DxB, hp.k, spec.k_max), pre_DxB, 0.0), {}


TOPK = SaeKind(
    name="topk",
    encode=encode_topk,
    hparams=("k",),
    top_k=True,
    doc="f = ReLU(pre), each input's k largest (k per SAE, at most spec.k_max)",
)


def init_batchtopk(key, n_hidden, dict_size, spec):
    return {"threshold": jnp.zeros(())}


def encode_batchtopk(params, h_HxB, hp, spec, training):
    pre_DxB = pre_activation(params, h_HxB)
    if not training:  # each input alone, against the tracked threshold
        return jnp.where(pre_DxB > params["threshold"], pre_DxB, 0.0), {}
    mask_DxB, threshold = batch_top_k_mask(pre_DxB, hp.k)
    return jnp.where(mask_DxB, pre_DxB, 0.0), {"batch_threshold": threshold}


def track_threshold(params, aux, spec):
    """θ ← θ + (1 − decay)(batch threshold − θ), outside the gradient."""
    theta = params["threshold"]
    new = theta + (1.0 - spec.threshold_decay) * (
        jax.lax.stop_gradient(aux["batch_threshold"]) - theta
    )
    return {**params, "threshold": new}


BATCHTOPK = SaeKind(
    name="batchtopk",
    encode=encode_batchtopk,
    init=init_batchtopk,
    update_state=track_threshold,
    hparams=("k",),
    top_k=True,
    doc="f = ReLU(pre), the batch's k·B largest; at evaluation pre > θ (tracked)",
)


def matryoshka_terms(params, h_HxB, f_DxB, aux, hp, spec):
    """Reconstruction error of every prefix narrower than the dictionary. The prefixes' decodes
    are cumulative sums of the groups between consecutive widths: one decode's cost in all."""
    W_dec_HxD = decoder(params)
    widths = matryoshka_widths(spec)
    partial_HxB = jnp.broadcast_to(params["b_dec_H"][:, None], h_HxB.shape)
    inner = []
    for start, end in zip((0,) + widths[:-1], widths[:-1]):
        partial_HxB = partial_HxB + W_dec_HxD[:, start:end] @ f_DxB[start:end]
        inner.append(squared_error(h_HxB, partial_HxB))
    return {"matryoshka": sum(inner)} if inner else {}


def matryoshka_widths(spec) -> tuple[int, ...]:
    """The nested widths, the full dictionary last: ``spec.matryoshka_widths``, or D/64, D/16,
    D/4 and D (those ≥ 1)."""
    d = spec.dict_size
    widths = spec.matryoshka_widths or tuple(d // f for f in (64, 16, 4) if d // f >= 1)
    return tuple(sorted(set(widths) - {d})) + (d,)


MATRYOSHKA = SaeKind(
    name="matryoshka",
    encode=encode_batchtopk,
    init=init_batchtopk,
    update_state=track_threshold,
    loss_terms=matryoshka_terms,
    hparams=("k",),
    top_k=True,
    doc="BatchTopK codes; every prefix of width w in spec.matryoshka_widths reconstructs h",
)


# --- JumpReLU ------------------------------------------------------------------------------------


def init_jumprelu(key, n_hidden, dict_size, spec):
    return {"log_threshold_D": jnp.full((dict_size,), math.log(spec.jumprelu_threshold))}


def encode_jumprelu(params, h_HxB, hp, spec, training):
    pre_DxB = pre_activation(params, h_HxB)
    theta_Dx1 = jnp.exp(params["log_threshold_D"])[:, None]
    return jump_relu(pre_DxB, theta_Dx1, hp.bandwidth), {"pre": pre_DxB, "theta": theta_Dx1}


def jumprelu_terms(params, h_HxB, f_DxB, aux, hp, spec):
    return {"l0": hp.l1 * l1_of(step(aux["pre"], aux["theta"], hp.bandwidth))}


JUMPRELU = SaeKind(
    name="jumprelu",
    encode=encode_jumprelu,
    loss_terms=jumprelu_terms,
    init=init_jumprelu,
    hparams=("l1", "bandwidth"),
    doc="f = pre ⊙ H(pre − θ), loss ‖h − ĥ‖² + λ·L0, straight-through gradients for θ",
)


BUILTIN = [PLAIN, GATED, RESCALED, TOPK, BATCHTOPK, JUMPRELU, MATRYOSHKA]
