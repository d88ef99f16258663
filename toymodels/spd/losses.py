"""The SPD loss (Bushnaq et al. 2025, eq. "Summary of training setup"; docs/spd.md, "The losses"):

    L = β_F L_faithfulness + β_1 L_stochastic-recon + β_2 L_stochastic-recon-layerwise
        + β_3 L_importance-minimality

- faithfulness: Σ_sites ‖W − U Vᵀ‖²_F / N, N the number of decomposed weights (every site counted,
  a tied one too, as the reference does);
- stochastic reconstruction: MSE (mean over outputs and batch) between the model with every site's
  subcomponents masked by m = g + (1 − g) r and the trained model, averaged over S mask samples;
- layerwise: the same with one site masked at a time (the others at their trained weights),
  averaged over sites and samples, with its own mask draws;
- importance minimality: Σ_sites Σ_c |σ_H,upper(γ_c)|^p, mean over the batch.
"""

from __future__ import annotations

import jax.numpy as jnp

from toymodels.spd.components import causal_importances, masked_linear, stochastic_masks, weights_of


def mse(a, b):
    return jnp.mean((a - b) ** 2)


def faithfulness(params, target, W: dict):
    """Σ_sites ‖W − U Vᵀ‖²_F / N."""
    approx = weights_of(params, target)
    return sum(jnp.sum((W[s.name] - approx[s.name]) ** 2) for s in target.sites) / target.n_weights


def minimality(upper: dict, p):
    """Σ_sites Σ_c g_upper^p, mean over the batch (g_upper ≥ 0, so |·| is not needed)."""
    return jnp.mean(sum(jnp.sum(g**p, axis=0) for g in upper.values()))


def masked_output(params, target, arrays, x_FxB, masks: dict, W: dict):
    return target.forward(masked_linear(params, target, masks, W), arrays, x_FxB)


def stochastic_recon(params, target, arrays, x_FxB, out_OxB, g: dict, r_samples, W: dict):
    """Every site masked at once; ``r_samples``: one {site: r_CxB} per mask sample."""
    return sum(
        mse(masked_output(params, target, arrays, x_FxB, stochastic_masks(g, r), W), out_OxB)
        for r in r_samples
    ) / len(r_samples)


def layerwise_recon(params, target, arrays, x_FxB, out_OxB, g: dict, r_samples, W: dict):
    """One site masked at a time, the others at their trained weights."""
    total = 0.0
    for r in r_samples:
        masks = stochastic_masks(g, r)
        for site in target.sites:
            total = total + mse(
                masked_output(params, target, arrays, x_FxB, {site.name: masks[site.name]}, W),
                out_OxB,
            )
    return total / (len(r_samples) * len(target.sites))


def objective(
    params, target, arrays, x_FxB, out_OxB, acts: dict, W: dict, r_full, r_layer, hp, approximate
):
    """(L, its terms). ``out_OxB``, ``acts``: the trained model's output and site inputs on the
    batch (constants of the step); ``r_layer`` None leaves the layerwise term out."""
    g, upper = causal_importances(params, target, acts, approximate)
    terms = {
        "faithfulness": faithfulness(params, target, W),
        "recon": stochastic_recon(params, target, arrays, x_FxB, out_OxB, g, r_full, W),
        "minimality": minimality(upper, hp.p),
    }
    loss = (
        hp.faithfulness * terms["faithfulness"]
        + hp.recon * terms["recon"]
        + hp.minimality * terms["minimality"]
    )
    if r_layer is not None:
        terms["layerwise"] = layerwise_recon(params, target, arrays, x_FxB, out_OxB, g, r_layer, W)
        loss = loss + hp.layerwise * terms["layerwise"]
    return loss, terms
