"""Subcomponents and causal importances (docs/spd.md, "The method").

Each owned site's matrix W (O×I) is approximated by C rank-one subcomponents, W ≈ Σ_c U_c V_cᵀ =
U Vᵀ with U O×C and V I×C. Each subcomponent c has a causal-importance function: a scalar MLP
γ_c of its inner activation h_c = V_cᵀ a (a: the site's input in the trained model), one hidden
layer of K GELU units, w_out · GELU(w_in h_c + b_in) + b_out, passed through a hard sigmoid:

- lower-leaky σ_H,lower (slope 0.01 below 0) gives the importances g used for the masks
  m = g + (1 − g) r, r ~ U[0, 1];
- upper-leaky σ_H,upper (slope 0.01 above 1) gives the values the importance-minimality loss
  penalises.

Parameters are nested dicts: ``{"U": {site: U_OxC}, "V": {site: V_IxC}, "gates": {site: {"w_in_CxK",
"b_in_CxK", "w_out_CxK", "b_out_C"}}}``; tied sites have gates but no U, V of their own.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

LEAK = 0.01  # the leaky hard sigmoids' slope outside [0, 1] (paper, "leaky hard sigmoids")


def lower_leaky_hard_sigmoid(x):
    """0.01 x below 0, x on [0, 1], 1 above: the importances of the masks."""
    return jnp.where(x > 0, jnp.minimum(x, 1.0), LEAK * x)


def upper_leaky_hard_sigmoid(x):
    """0 below 0, x on [0, 1], 1 + 0.01 (x − 1) above: what the minimality loss penalises."""
    return jnp.where(x > 1, 1.0 + LEAK * (x - 1.0), jnp.maximum(x, 0.0))


def init_site(key, W_OxI: jax.Array, C: int):
    """(U, V) of one site as the reference initialises them: random unit columns u_c, v_c, then
    u_c scaled by ⟨u_c v_cᵀ, W⟩ = u_cᵀ W v_c, each subcomponent's projection on W (so the sum
    starts near, not at, W; the faithfulness loss closes the gap)."""
    u_key, v_key = jax.random.split(key)
    O, I = W_OxI.shape
    U_OxC = jax.random.normal(u_key, (O, C))
    V_IxC = jax.random.normal(v_key, (I, C))
    U_OxC = U_OxC / jnp.linalg.norm(U_OxC, axis=0, keepdims=True)
    V_IxC = V_IxC / jnp.linalg.norm(V_IxC, axis=0, keepdims=True)
    overlap_C = jnp.sum(U_OxC * (W_OxI @ V_IxC), axis=0)
    return U_OxC * overlap_C[None, :], V_IxC


def init_gate(key, C: int, K: int) -> dict:
    """One site's C causal-importance MLPs: w_in ~ N(0, 2) (Kaiming for a ReLU-like unit with one
    input), w_out ~ N(0, 1/K) (linear, K inputs), zero biases."""
    in_key, out_key = jax.random.split(key)
    return {
        "w_in_CxK": jnp.sqrt(2.0) * jax.random.normal(in_key, (C, K)),
        "b_in_CxK": jnp.zeros((C, K)),
        "w_out_CxK": jax.random.normal(out_key, (C, K)) / jnp.sqrt(K),
        "b_out_C": jnp.zeros((C,)),
    }


def init_params(key, target, W: dict, C: int, K: int) -> dict:
    """Subcomponents of every owned site and gates of every site. Each site's keys are folded
    from its position, so adding a site leaves the others' init unchanged."""
    U, V, gates = {}, {}, {}
    for i, site in enumerate(target.sites):
        site_key = jax.random.fold_in(key, i)
        uv_key, gate_key = jax.random.split(site_key)
        if site.tied_to is None:
            U[site.name], V[site.name] = init_site(uv_key, W[site.name], C)
        gates[site.name] = init_gate(gate_key, C, K)
    return {"U": U, "V": V, "gates": gates}


def site_uv(params: dict, site) -> tuple[jax.Array, jax.Array]:
    """(U O×C, V I×C) of a site; a tied site's are its source's swapped, (U Vᵀ)ᵀ = V Uᵀ, unless the
    parameters carry the tied site's own copy (``untie``)."""
    if site.tied_to is None or site.name in params["U"]:
        return params["U"][site.name], params["V"][site.name]
    return params["V"][site.tied_to], params["U"][site.tied_to]


def untie(params: dict, target) -> dict:
    """The parameters with a copy of the shared (U, V) for every tied site, so that each use gets
    its own gradient and optimiser state (``SpdSpec.tied_updates = "separate"``)."""
    U, V = dict(params["U"]), dict(params["V"])
    for site in target.sites:
        if site.tied_to is not None:
            U[site.name], V[site.name] = V[site.tied_to], U[site.tied_to]
    return {**params, "U": U, "V": V}


def tie_updates(updates: dict, target) -> dict:
    """Updates of ``untie``'s parameters that keep every copy equal to its source: both uses'
    updates land on the shared numbers, as two optimisers stepping one tensor do in the
    reference (each Adam-normalised on its own)."""
    U, V = dict(updates["U"]), dict(updates["V"])
    for site in target.sites:
        if site.tied_to is not None:
            dU, dV = U[site.tied_to] + V[site.name], V[site.tied_to] + U[site.name]
            U[site.tied_to], V[site.tied_to], U[site.name], V[site.name] = dU, dV, dV, dU
    return {**updates, "U": U, "V": V}


_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_TANH_SCALE = 0.7978845608028654  # √(2/π)
_TANH_CUBIC = 0.044715


def gelu_and_slope(z, approximate: bool):
    """(GELU(z), GELU'(z)): exact z Φ(z) and Φ(z) + z φ(z), or the tanh form and its derivative."""
    if approximate:
        t = jnp.tanh(_TANH_SCALE * (z + _TANH_CUBIC * z**3))
        return 0.5 * z * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _TANH_SCALE * (
            1.0 + 3 * _TANH_CUBIC * z * z
        )
    Phi = 0.5 * (1.0 + jax.lax.erf(z * _SQRT_HALF))
    return z * Phi, Phi + z * _INV_SQRT_2PI * jnp.exp(-0.5 * z * z)


def _gate_hidden(h_CxB, w_in_CxK, b_in_CxK):
    return w_in_CxK[:, :, None] * h_CxB[:, None, :] + b_in_CxK[:, :, None]


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def gate_mlp(h_CxB, w_in_CxK, b_in_CxK, w_out_CxK, b_out_C, approximate: bool = False):
    """γ_c(h_c) = Σ_k w_out,ck GELU(w_in,ck h_c + b_in,ck) + b_out,c for every c (C×B).

    Its gradient is written by hand: under differentiation the forward pass stores GELU and its
    slope at the C×K×B hidden values (``_gate_fwd``), and the backward pass stores the hidden
    layer's cotangent once and forms the five gradients as contractions of these (``_gate_bwd``).
    Left to autodiff, XLA on CPU fuses the GELU into each of the five reductions and evaluates
    it five times (~3x slower at C = 20, K = 16, B = 4096). The stored arrays are what
    ``SpdSpec.batch_blocks`` divides."""
    z_CxKxB = _gate_hidden(h_CxB, w_in_CxK, b_in_CxK)
    return (
        jnp.einsum("ckb,ck->cb", jax.nn.gelu(z_CxKxB, approximate=approximate), w_out_CxK)
        + b_out_C[:, None]
    )


def _gate_fwd(h_CxB, w_in_CxK, b_in_CxK, w_out_CxK, b_out_C, approximate):
    G_CxKxB, slope_CxKxB = gelu_and_slope(_gate_hidden(h_CxB, w_in_CxK, b_in_CxK), approximate)
    # Stored: without the barrier XLA recomputes them inside every reader below.
    G_CxKxB, slope_CxKxB = jax.lax.optimization_barrier((G_CxKxB, slope_CxKxB))
    pre_CxB = jnp.einsum("ckb,ck->cb", G_CxKxB, w_out_CxK) + b_out_C[:, None]
    return pre_CxB, (h_CxB, w_in_CxK, w_out_CxK, G_CxKxB, slope_CxKxB)


def _gate_bwd(approximate, residuals, dpre_CxB):
    h_CxB, w_in_CxK, w_out_CxK, G_CxKxB, slope_CxKxB = residuals
    dz_CxKxB = jax.lax.optimization_barrier(
        dpre_CxB[:, None, :] * w_out_CxK[:, :, None] * slope_CxKxB
    )
    return (
        jnp.einsum("ckb,ck->cb", dz_CxKxB, w_in_CxK),
        jnp.einsum("ckb,cb->ck", dz_CxKxB, h_CxB),
        jnp.sum(dz_CxKxB, axis=2),
        jnp.einsum("ckb,cb->ck", G_CxKxB, dpre_CxB),
        jnp.sum(dpre_CxB, axis=1),
    )


gate_mlp.defvjp(_gate_fwd, _gate_bwd)


def gate_pre(gate: dict, h_CxB: jax.Array, approximate: bool = False) -> jax.Array:
    """γ_c(h_c) of one site's gates (``gate_mlp``). ``approximate``: the tanh form of GELU (cheaper;
    the paper uses the exact erf form)."""
    return gate_mlp(
        h_CxB, gate["w_in_CxK"], gate["b_in_CxK"], gate["w_out_CxK"], gate["b_out_C"], approximate
    )


def causal_importances(params: dict, target, acts: dict, approximate: bool = False):
    """({site: g_CxB} lower-leaky, {site: upper-leaky}) from each site's input activations in the
    trained model (``Target.output``)."""
    lower, upper = {}, {}
    for site in target.sites:
        _, V_IxC = site_uv(params, site)
        pre_CxB = gate_pre(params["gates"][site.name], V_IxC.T @ acts[site.name], approximate)
        lower[site.name] = lower_leaky_hard_sigmoid(pre_CxB)
        upper[site.name] = upper_leaky_hard_sigmoid(pre_CxB)
    return lower, upper


def masked_linear(params: dict, target, masks: dict, W: dict):
    """``linear`` for ``Target.forward``: sites in ``masks`` apply U (m ⊙ Vᵀa), the others their
    trained matrix. A mask of all ones applies U Vᵀ a."""

    def linear(name, a_IxB):
        if name not in masks:
            return W[name] @ a_IxB
        U_OxC, V_IxC = site_uv(params, target.site(name))
        return U_OxC @ (masks[name] * (V_IxC.T @ a_IxB))

    return linear


def stochastic_masks(g: dict, r: dict) -> dict:
    """m = g + (1 − g) r per site: the subcomponent ablated by a random fraction of what its
    importance allows (r ~ U[0, 1], one per subcomponent and input)."""
    return {name: g[name] + (1.0 - g[name]) * r[name] for name in g}


def weights_of(params: dict, target) -> dict:
    """Σ_c U_c V_cᵀ of every site."""
    return {s.name: (lambda uv: uv[0] @ uv[1].T)(site_uv(params, s)) for s in target.sites}  # noqa: PLC3002
