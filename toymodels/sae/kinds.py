"""The SAE kinds, one ``SaeKind`` object each (``toymodels.sae.base``). With pre = W_enc (h − b_dec)
+ b_enc and ĥ = W_dec f + b_dec (unit-norm decoder columns), every loss is ‖h − ĥ‖² plus the
kind's terms, means over the batch:

| kind | codes f | added terms |
|---|---|---|
| ``plain`` | ReLU(pre) (``decoder=free``: times ‖v_j‖) | λ‖f‖₁ |
| ``gated`` | 1[π_gate > 0] ⊙ ReLU(e^r ⊙ proj + b_mag) (free: times ‖v_j‖) | λ‖g‖₁ + aux, g = ReLU(π_gate) (free: times ‖v_j‖) |
| ``rescaled`` | e^r ⊙ ReLU(π_gate) | λ‖ReLU(π_gate)‖₁ + aux |
| ``topk`` | ReLU(pre), each input's k largest | AuxK (``toymodels.sae.train``) |
| ``batchtopk`` | ReLU(pre), the batch's k·B largest (``codes=scaled``: of ‖v_j‖ pre) | AuxK |
| ``jumprelu`` | ‖v_j‖ pre_j H(pre_j − θ_j) | λ Σ_j H(pre_j − θ_j) (L0), straight-through θ |
| ``matryoshka`` | as ``batchtopk`` | Σ_w ‖h − (W_dec[:, :w] f[:w] + b_dec)‖² over nested widths w, AuxK |

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

Plain and gated take the decoder's parameterisation as a static setting (``decoder``;
docs/saes/reference.md, "Standard L1 and gated"). ``free`` (the default, SAELens 6.54 after
Anthropic's April 2024 update): a free-norm decoder V from norm 0.1, each code (and gated's gate
g) times ‖v_j‖, so ĥ = V c + b_dec and the penalty is λ Σ_j ‖v_j‖ c_j; gated's auxiliary loss
reconstructs through the live decoder, V ReLU(π_gate) + b_dec, as SAELens's. ``unit`` (Bricken et
al. 2023, before issue 21): unit-norm columns, λ‖f‖₁, the frozen decoder above. Both clip the
gradient to ``hp.grad_clip`` (SAELens's trainer clips every kind).

The three top-k kinds declare AuxK's coefficient and dead window (docs/saes/reference.md, "AuxK").
TopK (Gao et al. 2024) takes k per SAE under a static ``spec.k_max``; BatchTopK (Bussmann et
al. 2024) any k per SAE (``spec.k_max`` bounds it for checks). BatchTopK's codes depend on the
batch; at evaluation each input is encoded alone with a threshold θ: f = pre ⊙ 1[pre > θ], θ
tracked during training as a running mean of each batch's smallest kept activation (decay
``spec.threshold_decay``). Its decoder columns and the encoder rows tied to them start at norm
``hp.init_norm`` (0.1, SAELens's), as Matryoshka's below: from unit norm its MCC at k = 2 fell
0.02 short of SAELens's (docs/saes/reference.md, "Matryoshka").

JumpReLU (Rajamanoharan et al. 2024, "Jumping ahead"), trained as SAELens 6.54 trains it: codes
f_j = ‖v_j‖ · z_j · H(z_j − θ_j) with z = W_enc (h − b_dec) + b_enc, an L0 penalty λ Σ_j H(z_j − θ_j),
and the paper's straight-through pseudo-derivatives with a rectangle window of width ε
(``hp.bandwidth``) for the thresholds' gradient (``base.jump_relu``, ``base.step``). So ĥ = V z_gated
+ b_dec with a free-norm decoder V (W_dec = V/‖V‖ times ‖v_j‖ in the code): L0 does not see a
decoder's norm, and nothing ties it. Three choices make λ matter at the defaults (docs/saes/
reference.md, "JumpReLU"): θ is a parameter itself, from θ₀ = 0.01 (``hp.init_threshold``),
projected onto θ ≥ 0 after each step, not log θ: Adam moves a parameter by about its learning rate
per step whatever the gradient's size, so log θ from a small θ₀ moves θ by a factor per step, the
same for every λ, while a fixed ε falls behind it; the decoder and the encoder tied to it start at
norm 0.1 (``init_scale``), so that the codes, their thresholds and the decoder norms grow together;
and each SAE's gradient is clipped to global norm 1 (``hp.grad_clip``) before Adam, without which a
large λ lets the encoder outgrow the window and L0 stops falling.

BatchTopK and Matryoshka take what their codes are as a static setting (``codes``;
docs/saes/reference.md, "BatchTopK and Matryoshka: codes scaled by ‖v_j‖"). ``scaled`` (the
default, SAELens 6.54's ``rescale_acts_by_decoder_norm``): c = ‖v_j‖·pre, so the batch top-k, the
inference threshold θ and AuxK all rank and cut those, and the decoder is V/‖V‖ (ĥ = V pre_kept
+ b_dec); a latent whose column has grown wins the batch's places more often. ``unscaled`` (before
issue 21's follow-up): c = pre. At Matryoshka k = 4 the scaled codes closed a systematic 0.02 MCC
gap to SAELens (docs/results/sae-bench.md).

Matryoshka BatchTopK (Bussmann et al. 2025; Nabeshima 2024): BatchTopK codes, and every prefix
of the dictionary of width w in ``spec.matryoshka_widths`` must reconstruct h on its own, so the
first latents learn general features and later ones refine them. Its decoder columns V and the
encoder rows tied to them start at norm 0.1 (``hp.init_norm``, SAELens's ``decoder_init_norm``),
not 1: from unit norm its MCC fell 0.02-0.04 short of SAELens's at k = 4 on the bench's Zipf world
(docs/saes/reference.md, "Matryoshka").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toymodels.sae.base import (
    SaeKind,
    batch_top_k_mask,
    decode,
    decoder,
    example_top_k_mask,
    jump_relu,
    l1_of,
    pre_activation,
    projection,
    squared_error,
    step,
)
from toymodels.sae.hyperparams import (
    AUX_COEFFICIENT,
    BANDWIDTH,
    CODES,
    DEAD_WINDOW,
    DECODER,
    GRAD_CLIP,
    INIT_NORM,
    INIT_THRESHOLD,
    L1,
    K,
)

# --- plain ---------------------------------------------------------------------------------------


def free_decoder(spec) -> bool:
    """Whether the kind trains a free-norm decoder (``decoder=free``: each code times ‖v_j‖)."""
    return spec.option("decoder") == "free"


def decoder_norms(params):
    """‖v_j‖ of the free-norm decoder columns, D×1."""
    return jnp.linalg.norm(params["V_HxD"], axis=0)[:, None]


def decoder_scale(spec, hp) -> float:
    """The initial norm of V and of the encoder rows tied to it: SAELens's 0.1 with a free-norm
    decoder, 1 with unit-norm columns (as before issue 21)."""
    return 0.1 if free_decoder(spec) else 1.0


def encode_plain(params, h_HxB, hp, spec, training):
    f_DxB = jax.nn.relu(pre_activation(params, h_HxB, spec))
    if free_decoder(spec):  # ĥ = V ReLU(pre) + b_dec; λ‖f‖₁ = λ Σ_j ‖v_j‖ ReLU(pre_j)
        f_DxB = decoder_norms(params) * f_DxB
    return f_DxB, {}


# plain's and gated's settings: λ, the decoder's parameterisation, and the gradient clip that
# SAELens's trainer applies to every kind (docs/saes/reference.md, "Standard L1 and gated").
L1_HPARAMS = (L1, DECODER, GRAD_CLIP)

PLAIN = SaeKind(
    name="plain",
    encode=encode_plain,
    hparams=L1_HPARAMS,
    loss_terms=lambda params, h_HxB, f_DxB, aux, hp, spec: {"l1": hp.l1 * l1_of(f_DxB)},
    init_scale=decoder_scale,
    doc="f = ReLU(W_enc(h − b_dec) + b_enc), loss ‖h − ĥ‖² + λ‖f‖₁; decoder=free (default): "
    "f times ‖v_j‖ of a free-norm decoder from norm 0.1, so λ Σ_j ‖v_j‖ ReLU(pre_j)",
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


def gated_terms(params, h_HxB, f_DxB, aux, hp, spec):
    """``decoder=unit``: ``gate_terms`` (the paper's frozen decoder). ``free`` (SAELens 6.54's
    gated loss): aux["gate"] is ‖v_j‖ ReLU(π_gate), so the L1 is λ Σ_j ‖v_j‖ ReLU(π_gate_j), and
    the gate path reconstructs h through the live decoder, V ReLU(π_gate) + b_dec, its gradient
    reaching V and b_dec as in SAELens."""
    if not free_decoder(spec):
        return gate_terms(params, h_HxB, f_DxB, aux, hp, spec)
    gate_DxB = aux["gate"]
    return {"l1": hp.l1 * l1_of(gate_DxB), "aux": squared_error(h_HxB, decode(params, gate_DxB))}


def init_gated(key, n_hidden, dict_size, spec, hp):
    return {"r_mag_D": jnp.zeros((dict_size,)), "b_mag_D": jnp.zeros((dict_size,))}


def encode_gated(params, h_HxB, hp, spec, training):
    proj_DxB = projection(params, h_HxB, spec)
    gate_pre_DxB = proj_DxB + params["b_enc_D"][:, None]
    mag_DxB = jnp.exp(params["r_mag_D"])[:, None] * proj_DxB + params["b_mag_D"][:, None]
    f_DxB = jnp.where(gate_pre_DxB > 0, jax.nn.relu(mag_DxB), 0.0)
    gate_DxB = jax.nn.relu(gate_pre_DxB)
    if free_decoder(spec):  # both paths through a free-norm decoder: times ‖v_j‖
        norm_Dx1 = decoder_norms(params)
        f_DxB, gate_DxB = norm_Dx1 * f_DxB, norm_Dx1 * gate_DxB
    return f_DxB, {"gate": gate_DxB}


GATED = SaeKind(
    name="gated",
    encode=encode_gated,
    loss_terms=gated_terms,
    init=init_gated,
    hparams=L1_HPARAMS,
    init_scale=decoder_scale,
    doc="f = 1[π_gate > 0] ⊙ ReLU(π_mag); L1 on ReLU(π_gate) plus the gate path's aux loss; "
    "decoder=free (default): codes and gate times ‖v_j‖ of a free-norm decoder from norm 0.1 "
    "(SAELens), unit: unit-norm columns and a frozen decoder in the aux loss (the paper)",
)


def init_rescaled(key, n_hidden, dict_size, spec, hp):
    return {"r_mag_D": jnp.zeros((dict_size,))}


def encode_rescaled(params, h_HxB, hp, spec, training):
    gate_DxB = jax.nn.relu(pre_activation(params, h_HxB, spec))
    return jnp.exp(params["r_mag_D"])[:, None] * gate_DxB, {"gate": gate_DxB}


RESCALED = SaeKind(
    name="rescaled",
    encode=encode_rescaled,
    loss_terms=gate_terms,
    init=init_rescaled,
    hparams=(L1,),
    doc="f = e^r ⊙ ReLU(π_gate): the gated SAE without its Heaviside step",
)


# --- top-k kinds ---------------------------------------------------------------------------------


def encode_topk(params, h_HxB, hp, spec, training):
    pre_DxB = pre_activation(params, h_HxB, spec)
    return jnp.where(example_top_k_mask(pre_DxB, hp.k, spec.k_max), pre_DxB, 0.0), {"pre": pre_DxB}


# The top-k kinds' hyperparameters: k, and AuxK's coefficient and dead window (toymodels.sae.train).
TOP_K_HPARAMS = (K, AUX_COEFFICIENT, DEAD_WINDOW)

TOPK = SaeKind(
    name="topk",
    encode=encode_topk,
    hparams=TOP_K_HPARAMS,
    top_k=True,
    doc="f = ReLU(pre), each input's k largest (k per SAE, at most spec.k_max)",
)


def declared_init_norm(spec, hp):
    """The initial norm of V and of the encoder rows tied to it: the SAE's own ``hp.init_norm``
    (``INIT_NORM``; BatchTopK and Matryoshka, SAELens's ``decoder_init_norm``)."""
    return hp.init_norm


def init_batchtopk(key, n_hidden, dict_size, spec, hp):
    return {"threshold": jnp.zeros(())}


def scaled_codes(spec) -> bool:
    """Whether the kind's codes are pre·‖v_j‖ (``codes=scaled``, SAELens's default)."""
    return spec.option("codes") == "scaled"


def encode_batchtopk(params, h_HxB, hp, spec, training):
    """ReLU codes of the batch's k·B largest (training) or above θ (evaluation). ``codes=scaled``:
    of pre·‖v_j‖, so the top-k, θ and AuxK (``aux["pre"]``) all rank the scaled values, as SAELens
    6.54's ``rescale_acts_by_decoder_norm``; the decoder V/‖V‖ is the same either way."""
    pre_DxB = pre_activation(params, h_HxB, spec)
    if scaled_codes(spec):
        pre_DxB = decoder_norms(params) * pre_DxB
    if not training:  # each input alone, against the tracked threshold
        return jnp.where(pre_DxB > params["threshold"], pre_DxB, 0.0), {"pre": pre_DxB}
    mask_DxB, threshold = batch_top_k_mask(pre_DxB, hp.k)
    return jnp.where(mask_DxB, pre_DxB, 0.0), {"batch_threshold": threshold, "pre": pre_DxB}


def track_threshold(params, aux, spec):
    """θ ← θ + (1 − decay)(batch threshold − θ), outside the gradient."""
    theta = params["threshold"]
    new = theta + (1.0 - spec.threshold_decay) * (
        jax.lax.stop_gradient(aux["batch_threshold"]) - theta
    )
    return {**params, "threshold": new}


# BatchTopK's and Matryoshka's: TopK's, the initial norm and what the codes are (``codes``)
BATCH_TOP_K_HPARAMS = TOP_K_HPARAMS + (INIT_NORM, CODES)

BATCHTOPK = SaeKind(
    name="batchtopk",
    encode=encode_batchtopk,
    init=init_batchtopk,
    update_state=track_threshold,
    hparams=BATCH_TOP_K_HPARAMS,
    top_k=True,
    init_scale=declared_init_norm,
    doc="f = ReLU(pre), the batch's k·B largest; at evaluation pre > θ (tracked); decoder and tied "
    "encoder from norm init_norm (0.1, SAELens's); codes=scaled (default, SAELens's): pre·‖v_j‖ "
    "in place of pre",
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
    hparams=BATCH_TOP_K_HPARAMS,
    top_k=True,
    init_scale=declared_init_norm,
    doc="BatchTopK codes; every prefix of width w in spec.matryoshka_widths reconstructs h",
)


# --- JumpReLU ------------------------------------------------------------------------------------


def init_jumprelu(key, n_hidden, dict_size, spec, hp):
    """Every threshold at θ₀ (``hp.init_threshold``), trained directly (not as log θ: see the module
    docstring)."""
    return {"threshold_D": jnp.full((dict_size,), hp.init_threshold, jnp.float32)}


def encode_jumprelu(params, h_HxB, hp, spec, training):
    """f = ‖v_j‖ z_j H(z_j − θ_j): the gated pre-activation through the free-norm decoder column."""
    pre_DxB = pre_activation(params, h_HxB, spec)
    theta_Dx1 = params["threshold_D"][:, None]
    norm_Dx1 = jnp.linalg.norm(params["V_HxD"], axis=0)[:, None]
    return norm_Dx1 * jump_relu(pre_DxB, theta_Dx1, hp.bandwidth), {
        "pre": pre_DxB,
        "theta": theta_Dx1,
    }


def jumprelu_terms(params, h_HxB, f_DxB, aux, hp, spec):
    return {"l0": hp.l1 * l1_of(step(aux["pre"], aux["theta"], hp.bandwidth))}


def project_threshold(params, aux, spec):
    """θ ≥ 0 after every step: below 0 the gate would pass negative pre-activations. A projection
    rather than a clamp inside the loss, which would zero the gradient of a threshold at 0 and
    pin it there."""
    return {**params, "threshold_D": jnp.maximum(params["threshold_D"], 0.0)}


JUMPRELU = SaeKind(
    name="jumprelu",
    encode=encode_jumprelu,
    loss_terms=jumprelu_terms,
    init=init_jumprelu,
    update_state=project_threshold,
    hparams=(L1, BANDWIDTH, INIT_THRESHOLD, GRAD_CLIP),
    init_scale=0.1,
    doc="f = ‖v‖ pre ⊙ H(pre − θ), loss ‖h − ĥ‖² + λ·L0, straight-through θ",
)


BUILTIN = [PLAIN, GATED, RESCALED, TOPK, BATCHTOPK, JUMPRELU, MATRYOSHKA]
