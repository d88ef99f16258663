"""Many SPD decompositions as one pure function, ``train(key, hp, target_arrays, data_key)``.

Shape-setting values (C, the gates' width, steps, batch, schedule, mask samples) live in a static
``SpdSpec``; per-decomposition values (learning rate, the four loss coefficients, p) are array
leaves of ``SpdHParams``; the model decomposed is a static ``Target`` (``toymodels.spd.target``)
and its arrays (trained parameters, feature probabilities). So ``decompose_many`` =
``jit(vmap(train))`` runs any number of same-shaped decompositions (of one model under many
seeds, or of many trained models) in one compiled program, as ``toymodels.sae.train_saes`` does
for SAEs.

Each step draws a batch from the target's own data distribution and the mask uniforms r, both one
step ahead and carried (as ``toymodels.train`` does: XLA stores a carried array, where it would
recompute the generator in every reader). Data and masks come from two counter-based streams of
the decomposition's data key (``toymodels.rng``).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from toymodels import rng
from toymodels.data import draw, from_uniforms, uniform_rows
from toymodels.registry import ConfigError
from toymodels.spd import metrics
from toymodels.spd.components import causal_importances, init_params, site_uv, tie_updates, untie
from toymodels.spd.losses import masked_output, mse, objective

# Folded into every decomposition key, so SPD streams never coincide with the toy models' own
# (fold_in(key(base_seed), uid)) nor with the SAEs' (0x5AE).
SPD_STREAM = 0x5BD
SCHEDULES = ("cosine", "constant")
TIED_UPDATES = ("sum", "separate")
L0_CUTOFF = 0.01  # an importance above this counts in the L0 (the reference's ci_l0 cutoff)


@dataclasses.dataclass(frozen=True)
class SpdSpec:
    """Static settings: decompositions that share a spec and a target share one compiled program.
    Defaults are the paper's TMS settings (``presets`` has every model's)."""

    C: int = 20  # subcomponents per site
    gate_hidden: int = 16  # GELU units of each causal-importance MLP (d_gate)
    steps: int = 40_000
    batch_size: int = 4096
    schedule: str = "cosine"  # "cosine": lr·cos(π t / (2 (T − 1))), the reference's; "constant"
    mask_samples: int = 1  # S
    layerwise: bool = True  # compile in the layerwise stochastic reconstruction
    approximate_gelu: bool = False  # tanh GELU in the gates (faster; the paper's is exact erf)
    per_target: bool = True  # the target arrays carry a leading decomposition axis
    # How a tied site's shared subcomponents are updated: "separate", one Adam update per use, both
    # applied (what the reference's storage-sharing tie does: up to twice the step size; it is
    # what produced the paper's TMS numbers); "sum", one Adam update of the summed gradient of both
    # uses (the loss's gradient step; at lr 1e-3 it converges about half as fast, docs/spd.md).
    tied_updates: str = "separate"
    # Compute each step's batch in this many column blocks (a scan), averaging their gradients: the
    # same data and masks bit for bit and the same gradient up to float rounding, with the gates'
    # C×K×B intermediates 1/batch_blocks the size (what bounds memory at C = 200). 1: at once.
    batch_blocks: int = 1
    eval_batch: int = 4096
    eval_seed: int = 0
    alive_threshold: float = 0.1
    match_cosine: float = 0.999
    match_ratio: float = 0.1
    curve_points: int = 10

    def __post_init__(self):
        for name in (
            "C",
            "gate_hidden",
            "steps",
            "batch_size",
            "mask_samples",
            "eval_batch",
            "curve_points",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"spd.{name}", f"must be an integer >= 1, got {value!r}")
        if (
            not isinstance(self.batch_blocks, int)
            or self.batch_blocks < 1
            or self.batch_size % self.batch_blocks
        ):
            raise ConfigError(
                "spd.batch_blocks",
                f"must be an integer >= 1 dividing spd.batch_size={self.batch_size}, "
                f"got {self.batch_blocks!r}",
            )
        if self.tied_updates not in TIED_UPDATES:
            raise ConfigError(
                "spd.tied_updates",
                f"must be one of {', '.join(TIED_UPDATES)}, got {self.tied_updates!r}",
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                "spd.schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )


@struct.dataclass
class SpdHParams:
    """Per-decomposition values; every leaf gains a leading decomposition axis under vmap."""

    lr: jax.Array
    faithfulness: jax.Array  # β_F
    recon: jax.Array  # β_1, the stochastic reconstruction
    layerwise: jax.Array  # β_2 (needs spec.layerwise)
    minimality: jax.Array  # β_3
    p: jax.Array  # the minimality loss's exponent


def hparams(
    n: int, lr=1e-3, faithfulness=1.0, recon=1.0, layerwise=1.0, minimality=3e-3, p=1.0
) -> SpdHParams:
    """``n`` decompositions' hyperparameters from scalars or length-n sequences (defaults: the
    paper's TMS 5→2)."""

    def leaf(v):
        return jnp.broadcast_to(jnp.asarray(v, jnp.float32), (n,))

    return SpdHParams(
        lr=leaf(lr),
        faithfulness=leaf(faithfulness),
        recon=leaf(recon),
        layerwise=leaf(layerwise),
        minimality=leaf(minimality),
        p=leaf(p),
    )


# The paper's settings (Bushnaq et al. 2025, appendix "Training details"; C, d_gate and the
# residual MLPs' steps from the reference's configs of the paper's time): (SpdSpec fields,
# hparams fields).
PRESETS: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "tms_5_2": (dict(C=20), dict(minimality=3e-3, p=1.0)),
    "tms_40_10": (dict(C=200), dict(minimality=1e-4, p=2.0)),
    "residual_mlp1": (
        dict(C=100, steps=30_000, batch_size=2048, schedule="constant"),
        dict(lr=2e-3, minimality=1e-5, p=2.0),
    ),
    "residual_mlp2": (
        dict(C=400, steps=50_000, batch_size=2048, schedule="constant"),
        dict(lr=1e-3, minimality=1e-5, p=2.0),
    ),
    "residual_mlp3": (
        dict(C=500, gate_hidden=128, steps=200_000, batch_size=2048, schedule="constant"),
        dict(lr=1e-3, minimality=5e-6, p=2.0),
    ),
}


@struct.dataclass
class SpdScores:
    """Final scores on the evaluation batch. ``_S``: per site (``target.sites`` order); ``_P``: per
    scored site (``target.scored`` order)."""

    loss: jax.Array
    faithfulness: jax.Array
    recon: jax.Array  # stochastic reconstruction MSE
    layerwise: jax.Array  # NaN without spec.layerwise
    minimality: jax.Array
    recon_ci: jax.Array  # MSE with the masks at the importances themselves (m = g)
    recon_unmasked: jax.Array  # MSE with every mask 1: Σ U Vᵀ against W, through the model
    l0_S: jax.Array  # mean number of subcomponents with g > 0.01 per input
    n_alive_S: jax.Array
    mmcs_P: jax.Array
    ml2r_P: jax.Array
    recovered_P: jax.Array
    exact_P: jax.Array
    probe_ci_P: jax.Array
    best_PxF: jax.Array  # each feature's best subcomponent
    recovered: jax.Array  # every scored site recovered


@struct.dataclass
class SpdResult:
    params: dict
    scores: SpdScores
    curve: dict  # each loss term's mean over ``spec.curve_points`` equal intervals of training


def lr_multiplier(step, schedule: str, steps: int):
    """The reference's cosine: cos(π t / (2 (T − 1))), from 1 at the first step to 0 at the last
    (a quarter period, not toymodels.optim's ½(1 + cos(π t/T))); or 1."""
    if schedule == "constant" or steps == 1:
        return jnp.ones_like(step, jnp.float32)
    return jnp.cos(0.5 * jnp.pi * jnp.asarray(step, jnp.float32) / (steps - 1))


def mask_rows(spec: SpdSpec, target) -> int:
    """Mask uniforms per input: S samples × sites × C, twice with the layerwise term."""
    return (2 if spec.layerwise else 1) * spec.mask_samples * len(target.sites) * spec.C


def split_masks(r_RxB, spec: SpdSpec, target):
    """(full, layerwise or None): per mask sample, {site: r_CxB}."""
    groups = r_RxB.reshape(
        2 if spec.layerwise else 1, spec.mask_samples, len(target.sites), spec.C, -1
    )
    samples = [
        [
            {s.name: groups[g, k, i] for i, s in enumerate(target.sites)}
            for k in range(spec.mask_samples)
        ]
        for g in range(groups.shape[0])
    ]
    return samples[0], (samples[1] if spec.layerwise else None)


def streams(data_key):
    """(data words, mask words) of a decomposition's data key."""
    return rng.key_words(jax.random.fold_in(data_key, 0)), rng.key_words(
        jax.random.fold_in(data_key, 1)
    )


def make_gradient(spec: SpdSpec, target):
    """``terms_and_grads(params, arrays, W, x_FxB, r_RxB, hp) -> (loss terms, gradient)`` of one
    step's batch (inputs and unpacked mask uniforms), in ``spec.batch_blocks`` blocks: every term
    is a batch mean (faithfulness does not depend on the batch), so the mean over equal blocks is
    the batch's."""

    def step_terms(params, arrays, W, x_FxB, r_RxB, hp):
        out_OxB, acts = target.output(arrays, x_FxB)
        r_full, r_layer = split_masks(r_RxB, spec, target)
        return objective(
            params,
            target,
            arrays,
            x_FxB,
            out_OxB,
            acts,
            W,
            r_full,
            r_layer,
            hp,
            spec.approximate_gelu,
        )

    grad_fn = jax.value_and_grad(step_terms, has_aux=True)
    K = spec.batch_blocks
    width = spec.batch_size // K

    def terms_and_grads(params, arrays, W, x_FxB, r_RxB, hp):
        if K == 1:
            (_, terms), grads = grad_fn(params, arrays, W, x_FxB, r_RxB, hp)
            return terms, grads

        def one(total, j):
            block = [
                jax.lax.dynamic_slice_in_dim(a, j * width, width, axis=1) for a in (x_FxB, r_RxB)
            ]
            (_, terms), grads = grad_fn(params, arrays, W, *block, hp)
            return jax.tree.map(jnp.add, total, (terms, grads)), None

        shapes = jax.eval_shape(
            lambda: grad_fn(params, arrays, W, x_FxB[:, :width], r_RxB[:, :width], hp)
        )
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (shapes[0][1], shapes[1]))
        total, _ = jax.lax.scan(one, zero, jnp.arange(K))
        return jax.tree.map(lambda a: a / K, total)

    return terms_and_grads


def make_train(spec: SpdSpec, target):
    """Build ``train(key, hp, target_arrays, data_key) -> SpdResult`` for one decomposition; vmap
    it for many (``decompose_many``)."""
    n_rows = uniform_rows(target.data, target.n_features)
    r_rows = mask_rows(spec, target)
    terms_and_grads = make_gradient(spec, target)

    def draw_x(words, t, batch):
        return draw(target.data, words, jnp.asarray(t, jnp.uint32), target.n_features, batch)

    def draw_r(words, t, batch):
        return rng.uniform_pairs(words, jnp.asarray(t, jnp.uint32), r_rows, batch)

    def inputs(arrays, packed):
        return from_uniforms(target.data, rng.unpack(packed, n_rows), arrays["density_F"])

    def train(key: jax.Array, hp: SpdHParams, arrays, data_key: jax.Array) -> SpdResult:
        W = target.weights(arrays)
        params = init_params(key, target, W, spec.C, spec.gate_hidden)
        separate = spec.tied_updates == "separate" and any(s.tied_to for s in target.sites)
        if separate:
            params = untie(params, target)
        opt = optax.adam(lambda count: hp.lr * lr_multiplier(count, spec.schedule, spec.steps))
        x_words, r_words = streams(data_key)

        def body(carry, t):
            params, opt_state, packed_x, packed_r = carry
            x_FxB, r_RxB = inputs(arrays, packed_x), rng.unpack(packed_r, r_rows)
            terms, grads = terms_and_grads(params, arrays, W, x_FxB, r_RxB, hp)
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(
                params, tie_updates(updates, target) if separate else updates
            )
            return (
                params,
                opt_state,
                draw_x(x_words, t + 1, spec.batch_size),
                draw_r(r_words, t + 1, spec.batch_size),
            ), terms

        carry = (
            params,
            opt.init(params),
            draw_x(x_words, 0, spec.batch_size),
            draw_r(r_words, 0, spec.batch_size),
        )
        carry, terms = jax.lax.scan(body, carry, jnp.arange(spec.steps, dtype=jnp.uint32))
        params = carry[0]
        if separate:  # the copies equal their sources: keep one
            params = {
                **params,
                "U": {s.name: params["U"][s.name] for s in target.owned},
                "V": {s.name: params["V"][s.name] for s in target.owned},
            }
        return SpdResult(
            params=params,
            scores=evaluate(spec, target, params, hp, arrays),
            curve={name: curve_of(v, spec) for name, v in terms.items()},
        )

    return train


def curve_of(values, spec: SpdSpec):
    every = max(spec.steps // spec.curve_points, 1)
    return jnp.mean(values[: every * (spec.steps // every)].reshape(-1, every), axis=-1)


def evaluate(spec: SpdSpec, target, params, hp, arrays) -> SpdScores:
    """Scores on one evaluation batch from ``spec.eval_seed`` (the same inputs and mask draws for
    every decomposition of a target), and at the one-hot probes."""
    x_words, r_words = streams(jax.random.key(spec.eval_seed))
    n_rows = uniform_rows(target.data, target.n_features)
    packed = draw(target.data, x_words, jnp.uint32(0), target.n_features, spec.eval_batch)
    x_FxB = from_uniforms(target.data, rng.unpack(packed, n_rows), arrays["density_F"])
    r_RxB = rng.unpack(
        rng.uniform_pairs(r_words, jnp.uint32(0), mask_rows(spec, target), spec.eval_batch),
        mask_rows(spec, target),
    )
    W = target.weights(arrays)
    out_OxB, acts = target.output(arrays, x_FxB)
    r_full, r_layer = split_masks(r_RxB, spec, target)
    loss, terms = objective(
        params, target, arrays, x_FxB, out_OxB, acts, W, r_full, r_layer, hp, spec.approximate_gelu
    )
    g, _ = causal_importances(params, target, acts, spec.approximate_gelu)
    ones = {name: jnp.ones_like(v) for name, v in g.items()}
    alive = {name: jnp.max(v, axis=1) > spec.alive_threshold for name, v in g.items()}

    probe_FxF = metrics.probes(target.n_features)
    _, probe_acts = target.output(arrays, probe_FxF)
    g_probe, _ = causal_importances(params, target, probe_acts, spec.approximate_gelu)
    inputs = target.feature_inputs(arrays) if target.scored else {}
    per_site = []
    for name in target.scored:
        U_OxC, V_IxC = site_uv(params, target.site(name))
        mmcs, ml2r, recovered, exact, best_F = metrics.site_scores(
            U_OxC, V_IxC, W[name], inputs[name], alive[name], spec.match_cosine, spec.match_ratio
        )
        probe_ci = jnp.mean(g_probe[name][best_F, jnp.arange(target.n_features)])
        per_site.append((mmcs, ml2r, recovered, exact, probe_ci, best_F))
    if per_site:
        stack = [jnp.stack(v) for v in zip(*per_site)]
    else:  # nothing scored
        none = jnp.zeros((0,))
        stack = [
            none,
            none,
            none.astype(bool),
            none.astype(bool),
            none,
            jnp.zeros((0, target.n_features), jnp.int32),
        ]
    return SpdScores(
        loss=loss,
        faithfulness=terms["faithfulness"],
        recon=terms["recon"],
        layerwise=terms.get("layerwise", jnp.nan),
        minimality=terms["minimality"],
        recon_ci=mse(masked_output(params, target, arrays, x_FxB, g, W), out_OxB),
        recon_unmasked=mse(masked_output(params, target, arrays, x_FxB, ones, W), out_OxB),
        l0_S=jnp.stack([jnp.mean(jnp.sum(g[s.name] > L0_CUTOFF, axis=0)) for s in target.sites]),
        n_alive_S=jnp.stack([jnp.sum(alive[s.name]) for s in target.sites]),
        mmcs_P=stack[0],
        ml2r_P=stack[1],
        recovered_P=stack[2],
        exact_P=stack[3],
        probe_ci_P=stack[4],
        best_PxF=stack[5],
        recovered=jnp.all(stack[2]),
    )


@partial(jax.jit, static_argnums=(0, 1))
def decompose_many(
    spec: SpdSpec, target, keys: jax.Array, hp: SpdHParams, arrays, data_keys: jax.Array
) -> SpdResult:
    """Run ``len(keys)`` decompositions in one compiled program. ``arrays``: the target's arrays,
    with a leading decomposition axis when ``spec.per_target`` (many trained models), else one
    model shared by all (many seeds of one model)."""
    return jax.vmap(make_train(spec, target), in_axes=(0, 0, 0 if spec.per_target else None, 0))(
        keys, hp, arrays, data_keys
    )


def spd_keys(base_seed: int, target_uids, seeds) -> tuple[jax.Array, jax.Array]:
    """(init keys, data keys), one pair per decomposition from its target's uid and its own seed:
    independent of how decompositions are grouped into programs."""
    base = jax.random.fold_in(jax.random.key(base_seed), SPD_STREAM)
    uids = jnp.asarray(target_uids, jnp.uint32)
    seeds = jnp.asarray(seeds, jnp.uint32)
    keys = jax.vmap(lambda u, s: jax.random.fold_in(jax.random.fold_in(base, u), s))(uids, seeds)
    both = jax.vmap(jax.random.split)(keys)
    return both[:, 0], both[:, 1]
