"""Training many SAEs as one pure function, ``train(key, hp, source_arrays, data_key)``.

Shape-setting values (kind, dictionary size, steps, batch, k_max, widths, a kind's static
hyperparameters) live in a static ``SaeSpec``; per-SAE values (learning rate, orthogonality weight
and every kind's own per-SAE hyperparameters: λ, k, JumpReLU's ε and θ₀, AuxK's α and window) are
array leaves of ``SaeHParams``; the activations come from a static *source* (a synthetic world,
``toymodels.sae.worlds``, or a trained toy model, ``toymodels.sae.toy``) and its arrays. So
``train_saes`` = ``jit(vmap(train))`` trains any number of same-shaped SAEs in one compiled
program and returns a pytree of parameters and scores, like ``toymodels.train.train_many``.

A source is any static object with ``n_hidden``, ``n_true``, ``has_hierarchy``, ``stream(key)``,
``draw(arrays, stream, t, batch) -> packed uniforms``, ``inputs(arrays, packed) -> (true features
z: n_true×B, h: n_hidden×B)``, ``truth(arrays)`` (n_hidden × n_true directions),
``represented(arrays)``, ``parents(arrays)`` and ``pairs(arrays)``. Both loops draw one batch
ahead and carry its uniforms, as ``toymodels.train`` does: XLA stores a carried array, where it
would recompute the random generator in every reader of an unstored one.

Data streams: with ``spec.shared_data`` every SAE of the call reads one stream (one data key) and,
when the source arrays are shared too (``spec.per_sae_source`` False), each batch is drawn once
for all of them: vmap leaves a computation that depends on no per-SAE value unbatched. The
evaluation inputs come from ``spec.eval_seed`` alone, the same for every SAE of a source.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import struct

from toymodels.sae import metrics
from toymodels.sae.base import decode, decoder, latent_axis, shared_params, squared_error
from toymodels.sae.hyperparams import HyperParam

# Folded into every SAE key, so SAE streams never coincide with the toy models' own
# (fold_in(key(base_seed), uid) in toymodels.train.model_keys).
SAE_STREAM = 0x5AE
# Dead latents are counted over at least this many evaluation inputs besides the evaluation batch:
# SAELens's evaluator counts over 10⁵; on 8,192, latents that fire once in 10⁴ inputs look dead.
DEAD_SAMPLES = 131_072


@dataclasses.dataclass(frozen=True)
class SaeSpec:
    """Static settings: SAEs that share a spec and a source shape share one compiled program."""

    dict_size: int
    kind: str = "plain"  # a kind of toymodels.sae.SAE_KINDS
    steps: int = 3_000
    batch_size: int = 1024
    k_max: int = 0  # top-k kinds: the largest k of any SAE in the program (k is per SAE)
    matryoshka_widths: tuple = ()  # nested widths (the full width is added); () = D/64, D/16, D/4
    threshold_decay: float = 0.99  # BatchTopK: running mean of the batch threshold
    ortho: bool = False  # compile in + λ_o·mean_{j≠k}(d_j·d_k)² (λ_o per SAE: SaeHParams.ortho)
    # compile in the gradient clip of kinds that declare grad_clip (its limit per SAE: hp.grad_clip);
    # False when every SAE's limit is 0, which then trains the bits of a kind without the clip
    clip: bool = True
    aux_k: bool = False  # compile in AuxK (Gao et al. 2024; α and the dead window per SAE: hp.aux_coefficient, ...)
    options: tuple = ()  # the kind's static hyperparameters: sorted (name, value) pairs (``option``)
    resample_every: int = 0  # resample latents dead over the last this many steps (0: never)
    shared_data: bool = False  # one data stream for every SAE of the call
    per_sae_source: bool = True  # the source arrays carry a leading SAE axis
    eval_batch: int = 8192
    eval_batches: int = 1
    eval_seed: int = 0
    dead_samples: int = DEAD_SAMPLES  # dead latents are also counted over at least this many inputs
    curve_points: int = 10  # the training-loss curve: means over this many equal intervals
    # encode W_enc h − W_enc b_dec instead of W_enc (h − b_dec) (``base.projection``): the same
    # function in other rounding, whose b_dec gradient needs no D×B product (faster: docs/results/
    # sae-bench.md); False trains the bits of before (and is left out of chunk ids, so stores of
    # then keep their ids)
    fold_b_dec: bool = True

    def __post_init__(self):
        if self.dict_size < 1:
            raise ValueError(f"dict_size must be at least 1, got {self.dict_size}")
        if self.k_max > self.dict_size:
            raise ValueError(f"k_max={self.k_max} exceeds dict_size={self.dict_size}")

    def option(self, name: str):
        """A static hyperparameter of the kind: its value in ``options``, else its default."""
        given = dict(self.options)
        if name in given:
            return given[name]
        hparam = kind_of(self).hparam(name)
        if hparam is None or hparam.per_sae:
            raise KeyError(f"SAE kind {self.kind!r} has no static hyperparameter {name!r}")
        return hparam.default

    @property
    def dead_batches(self) -> int:
        """Evaluation batches the long dead count covers: ``dead_samples`` rounded up to whole batches."""
        return max(-(-self.dead_samples // self.eval_batch), 1)


@struct.dataclass
class SaeHParams:
    """Per-SAE values; every leaf gains a leading SAE axis under vmap. ``hp.lr``, ``hp.ortho`` for
    every kind; ``hp.<name>`` for each per-SAE hyperparameter a kind declares (``values``)."""

    lr: jax.Array
    ortho: jax.Array  # λ_o (needs spec.ortho)
    values: dict  # the kinds' per-SAE hyperparameters by name: l1, k (int32), bandwidth, ...

    def __getattr__(self, name):
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(
            f"SaeHParams has no {name!r}; it holds lr, ortho"
            + "".join(f", {v}" for v in (values or ()))
        )


def per_sae_hparams() -> dict:
    """Every registered kind's per-SAE hyperparameters by name (``HyperParam``)."""
    from toymodels.sae import SAE_KINDS

    found: dict[str, HyperParam] = {}
    for kind in SAE_KINDS:
        for h in kind.hparams:
            if h.per_sae:
                found.setdefault(h.name, h)
    return found


def hparams(n: int, lr=3e-3, ortho=0.0, **values) -> SaeHParams:
    """``n`` SAEs' hyperparameters from scalars or length-n sequences: ``lr``, ``ortho`` and any
    kind's per-SAE hyperparameter (``l1=``, ``k=``, ...); those not given take their declared
    defaults (``toymodels.sae.hyperparams``)."""
    known = per_sae_hparams()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TypeError(
            f"hparams: no SAE kind declares a per-SAE hyperparameter {unknown[0]!r}; "
            f"known: lr, ortho, {', '.join(known)}"
        )

    def leaf(v, dtype=jnp.float32):
        return jnp.broadcast_to(jnp.asarray(v, dtype), (n,))

    return SaeHParams(
        lr=leaf(lr),
        ortho=leaf(ortho),
        values={name: leaf(values.get(name, h.default), h.dtype) for name, h in known.items()},
    )


@struct.dataclass
class SaeResult:
    params: dict
    scores: metrics.SaeScores
    curve: jax.Array  # mean training objective over ``spec.curve_points`` equal intervals


def kind_of(spec: SaeSpec):
    from toymodels.sae import SAE_KINDS

    return SAE_KINDS.get(spec.kind)


def init_params(key: jax.Array, n_hidden: int, spec: SaeSpec, hp: SaeHParams) -> dict:
    shared_key, own_key = jax.random.split(key)
    kind = kind_of(spec)
    return {
        **shared_params(shared_key, n_hidden, spec.dict_size, kind.initial_scale(spec, hp)),
        **kind.init(own_key, n_hidden, spec.dict_size, spec, hp),
    }


def ortho_penalty(W_dec_HxD: jax.Array) -> jax.Array:
    """mean_{j≠k} (d_j·d_k)² for unit columns: (‖W Wᵀ‖_F² − D) / (D(D − 1)), through the m×m
    Gram matrix W Wᵀ rather than the D×D one."""
    d = W_dec_HxD.shape[1]
    gram_HxH = W_dec_HxD @ W_dec_HxD.T
    return (jnp.sum(gram_HxH**2) - d) / max(d * (d - 1), 1)


def aux_k_count(n_hidden: int, dict_size: int) -> int:
    """k_aux, the dead latents AuxK lets reconstruct each input's residual: half the input
    dimension (Gao et al. 2024, appendix B.1; SAELens), at most the dictionary."""
    return max(min(n_hidden // 2, dict_size), 1)


def top_dead(pre_DxB, dead_D, k: int) -> jax.Array:
    """Per input, its k largest pre-activations among the dead latents (all of them when fewer
    are dead): bool D×B. k passes of a max over the latents: on CPU ~8x faster than
    ``lax.top_k`` for the small k of AuxK (k_aux = m/2)."""
    ranked_DxB = jnp.where(dead_D[:, None], pre_DxB, -jnp.inf)

    def take_next(_, chosen_DxB):
        best_B = jnp.max(jnp.where(chosen_DxB, -jnp.inf, ranked_DxB), axis=0)
        return chosen_DxB | ((ranked_DxB >= best_B[None, :]) & dead_D[:, None])

    return jax.lax.fori_loop(0, k, take_next, jnp.zeros(pre_DxB.shape, bool))


def auxk_loss(params, h_HxB, hhat_HxB, pre_DxB, dead_D):
    """AuxK (Gao et al. 2024, as SAELens computes it): the k_aux largest pre-activations among the
    dead latents (all of them when fewer are dead) reconstruct the residual e = h − ĥ, held fixed,
    through the decoder without its bias: ‖e − W_dec z_aux‖², mean over the batch, scaled by
    min(dead / k_aux, 1) so that a few dead latents weigh little. 0 when none is dead."""
    k_aux = aux_k_count(h_HxB.shape[0], pre_DxB.shape[0])
    codes_DxB = jnp.where(top_dead(pre_DxB, dead_D, k_aux), pre_DxB, 0.0)
    residual_HxB = jax.lax.stop_gradient(h_HxB - hhat_HxB)
    error = squared_error(residual_HxB, decoder(params) @ codes_DxB)
    return jnp.minimum(jnp.sum(dead_D) / k_aux, 1.0) * error


def objective(params, h_HxB, hp: SaeHParams, spec: SaeSpec, training: bool = True, dead_D=None):
    """(loss, (codes, reconstruction, aux)): ‖h − ĥ‖² plus the kind's terms, plus the
    orthogonality penalty and AuxK (given the latents dead now, ``dead_D``) when compiled in."""
    kind = kind_of(spec)
    f_DxB, aux = kind.encode(params, h_HxB, hp, spec, training)
    hhat_HxB = decode(params, f_DxB)
    terms = {
        "recon": squared_error(h_HxB, hhat_HxB),
        **kind.loss_terms(params, h_HxB, f_DxB, aux, hp, spec),
    }
    if spec.ortho:
        terms["ortho"] = hp.ortho * ortho_penalty(decoder(params))
    if spec.aux_k and dead_D is not None:
        terms["auxk"] = hp.aux_coefficient * auxk_loss(params, h_HxB, hhat_HxB, aux["pre"], dead_D)
    return sum(terms.values()), (f_DxB, hhat_HxB, aux)


def resample_dead(params, opt_state, dead_D, h_HxB, hhat_HxB, spec: SaeSpec, init):
    """Latents dead since the last resampling restart on the inputs reconstructed worst: decoder
    column along the input's residual, encoder row the same scaled to 0.2 × the mean live encoder
    row norm (Anthropic's "Towards monosemanticity" recipe), biases and the kind's own per-latent
    values as at init, their Adam moments zeroed. Deterministic: the j-th dead latent takes the
    j-th worst input."""
    residual_HxB = h_HxB - hhat_HxB
    order_B = jnp.argsort(-jnp.sum(residual_HxB**2, axis=0))
    rank_D = jnp.cumsum(dead_D) - 1
    direction_HxD = residual_HxB[:, order_B[rank_D % order_B.shape[0]]]
    direction_HxD = direction_HxD / jnp.maximum(
        jnp.linalg.norm(direction_HxD, axis=0, keepdims=True), 1e-12
    )
    enc_norm_D = jnp.linalg.norm(params["W_enc_DxH"], axis=1)
    live_norm = jnp.sum(jnp.where(dead_D, 0.0, enc_norm_D)) / jnp.maximum(jnp.sum(~dead_D), 1)
    scale = 0.2 * jnp.where(live_norm > 0, live_norm, 1.0)
    fresh = {**init, "V_HxD": direction_HxD, "W_enc_DxH": scale * direction_HxD.T}

    def reset(name, value, new):
        axis = latent_axis(name)
        if axis is None:
            return value
        mask = jnp.expand_dims(dead_D, [a for a in range(value.ndim) if a != axis])
        return jnp.where(mask, new, value)

    params = {name: reset(name, v, fresh[name]) for name, v in params.items()}
    adam = opt_state[0]
    zero = {name: jnp.zeros_like(v) for name, v in params.items()}
    adam = adam._replace(
        mu={n: reset(n, v, zero[n]) for n, v in adam.mu.items()},
        nu={n: reset(n, v, zero[n]) for n, v in adam.nu.items()},
    )
    return params, (adam,) + tuple(opt_state[1:])


def clip_global_norm(grads, limit):
    """The gradient scaled down to global norm ``limit`` when above it (SAELens's clip_grad_norm_);
    ``limit`` 0: as it is. Per SAE: ``limit`` may be a traced per-SAE value."""
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    factor = jnp.where(limit > 0, jnp.minimum(1.0, limit / jnp.maximum(norm, 1e-30)), 1.0)
    return jax.tree.map(lambda g: g * factor, grads)


@struct.dataclass
class SaeState:
    params: dict
    opt_state: tuple
    fired_D: jax.Array  # latents that fired since the last resampling
    fresh: dict  # the key's init: what resampling restarts a latent from
    since_fired_D: jax.Array  # int32: steps since each latent last fired (AuxK's dead latents)


def make_sae(spec: SaeSpec, n_hidden: int):
    """``init(key, hp, params0=None) -> SaeState`` and ``step(state, h_HxB, hp, t) -> (state,
    loss)`` of one SAE. ``params0``: start from these parameters (a warm start, or resuming from
    stored ones) instead of the key's init; the optimiser state starts fresh."""
    kind = kind_of(spec)
    grad_fn = jax.value_and_grad(
        lambda p, h, hp, dead: objective(p, h, hp, spec, dead_D=dead), has_aux=True
    )
    # kinds that declare it (plain, gated, JumpReLU) clip their gradient, unless compiled out
    clips = spec.clip and kind.hparam("grad_clip") is not None

    def init(key, hp, params0=None) -> SaeState:
        fresh = init_params(key, n_hidden, spec, hp)
        params = fresh if params0 is None else params0
        return SaeState(
            params,
            optax.adam(hp.lr).init(params),
            jnp.zeros((spec.dict_size,), bool),
            fresh,
            jnp.zeros((spec.dict_size,), jnp.int32),
        )

    def step(state: SaeState, h_HxB, hp, t):
        opt = optax.adam(hp.lr)
        # SAELens's dead latents: not fired in more than the window's steps, before this one
        dead_D = state.since_fired_D > hp.dead_window if spec.aux_k else None
        (loss, (f_DxB, hhat_HxB, aux)), grads = grad_fn(state.params, h_HxB, hp, dead_D)
        if clips:
            grads = clip_global_norm(grads, hp.grad_clip)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = kind.update_state(optax.apply_updates(state.params, updates), aux, spec)
        fires_D = jnp.any(f_DxB > 0, axis=1)
        fired_D = state.fired_D | fires_D
        since_fired_D = (
            jnp.where(fires_D, 0, state.since_fired_D + 1) if spec.aux_k else state.since_fired_D
        )
        if spec.resample_every:
            due = (t + 1) % spec.resample_every == 0
            params, opt_state = jax.lax.cond(
                due,
                lambda: resample_dead(
                    params, opt_state, ~fired_D, h_HxB, hhat_HxB, spec, state.fresh
                ),
                lambda: (params, opt_state),
            )
            fired_D = fired_D & ~due
        return dataclasses.replace(  # flax's .replace, typed
            state, params=params, opt_state=opt_state, fired_D=fired_D, since_fired_D=since_fired_D
        ), loss

    return init, step


def curve_of(losses, spec: SaeSpec):
    """The mean training objective over ``spec.curve_points`` equal intervals."""
    every = max(spec.steps // spec.curve_points, 1)
    return jnp.mean(losses[: every * (spec.steps // every)].reshape(-1, every), axis=-1)


def evaluate(specs, source, params, hps, arrays, batched: bool):
    """Scores of one or more groups of SAEs (``specs[i]`` with ``params[i]``, ``hps[i]``) on the
    same evaluation batches, each batch drawn once for all of them. ``batched``: every group's
    leaves carry a leading SAE axis (the mixed program), else one SAE per group."""
    spec0 = specs[0]
    parents = source.parents(arrays) if source.has_hierarchy else None
    truth_HxF, represented_F = source.truth(arrays), source.represented(arrays)

    def start(spec, p):
        W_dec_HxD = decoder(p)
        match_D, latent_F = metrics.matches(truth_HxF, W_dec_HxD, represented_F)
        sums = metrics.EvalSums.zeros(
            source.n_hidden, spec.dict_size, source.n_true, source.has_hierarchy
        )
        return sums, W_dec_HxD, match_D, latent_F

    def add(spec, p, hp, sums, match_D, latent_F, z_FxB, h_HxB):
        f_DxB, _ = kind_of(spec).encode(p, h_HxB, hp, spec, False)
        loss = objective(p, h_HxB, hp, spec)[0]
        return sums.add(h_HxB, decode(p, f_DxB), f_DxB, z_FxB, match_D, latent_F, parents, loss)

    def over(fn, *in_axes):
        return jax.vmap(fn, in_axes=in_axes) if batched else fn

    starts = [over(partial(start, spec), 0)(p) for spec, p in zip(specs, params)]
    stream = source.stream(jax.random.key(spec0.eval_seed))

    def one(carry, i):
        sums, packed = carry
        z_FxB, h_HxB = source.inputs(arrays, packed)
        sums = tuple(
            over(partial(add, spec), 0, 0, 0, 0, 0, None, None)(
                p, hp, s, st[2], st[3], z_FxB, h_HxB
            )
            for spec, p, hp, s, st in zip(specs, params, hps, sums, starts)
        )
        return (sums, source.draw(arrays, stream, i + 1, spec0.eval_batch)), None

    first = source.draw(arrays, stream, jnp.uint32(0), spec0.eval_batch)
    (sums, _), _ = jax.lax.scan(
        one,
        (tuple(st[0] for st in starts), first),
        jnp.arange(spec0.eval_batches, dtype=jnp.uint32),
    )
    fires = count_fires(specs, source, params, hps, arrays, over, stream)
    finish = partial(
        metrics.scores,
        n_batches=spec0.eval_batches,
        truth_HxF=truth_HxF,
        represented_F=represented_F,
        pairs_Px2=source.pairs(arrays),
    )
    return [
        over(lambda s, W, m, c: finish(s, W_dec_HxD=W, match_D=m, long_fires_D=c), 0, 0, 0, 0)(
            s, st[1], st[2], c
        )
        for s, st, c in zip(sums, starts, fires)
    ]


def count_fires(specs, source, params, hps, arrays, over, stream):
    """How often each latent fires over the first ``spec.dead_batches`` evaluation batches (at least
    ``spec.dead_samples`` inputs, beginning with the evaluation batch): encoding only, for the
    dead count that SAELens's evaluator makes over 10⁵ inputs."""
    spec0 = specs[0]

    def fires(spec, p, hp, h_HxB):
        return jnp.sum(kind_of(spec).encode(p, h_HxB, hp, spec, False)[0] > 0, axis=1).astype(
            jnp.float32
        )

    def one(carry, i):
        counts, packed = carry
        _, h_HxB = source.inputs(arrays, packed)
        counts = tuple(
            c + over(partial(fires, spec), 0, 0, None)(p, hp, h_HxB)
            for spec, p, hp, c in zip(specs, params, hps, counts)
        )
        return (counts, source.draw(arrays, stream, i + 1, spec0.eval_batch)), None

    zeros = tuple(
        over(lambda p, d=spec.dict_size: jnp.zeros((d,)), 0)(p) for spec, p in zip(specs, params)
    )
    first = source.draw(arrays, stream, jnp.uint32(0), spec0.eval_batch)
    (counts, _), _ = jax.lax.scan(
        one, (zeros, first), jnp.arange(spec0.dead_batches, dtype=jnp.uint32)
    )
    return counts


def make_train(spec: SaeSpec, source):
    """Build ``train(key, hp, source_arrays, data_key, params0=None) -> SaeResult`` for one SAE;
    vmap it for many (``train_saes``)."""
    init, step = make_sae(spec, source.n_hidden)

    def train(
        key: jax.Array, hp: SaeHParams, arrays, data_key: jax.Array, params0=None
    ) -> SaeResult:
        stream = source.stream(data_key)

        def body(carry, t):
            state, packed = carry
            _, h_HxB = source.inputs(arrays, packed)
            state, loss = step(state, h_HxB, hp, t)
            return (state, source.draw(arrays, stream, t + 1, spec.batch_size)), loss

        carry = (
            init(key, hp, params0),
            source.draw(arrays, stream, jnp.uint32(0), spec.batch_size),
        )
        (state, _), losses = jax.lax.scan(body, carry, jnp.arange(spec.steps, dtype=jnp.uint32))
        [scores] = evaluate([spec], source, [state.params], [hp], arrays, batched=False)
        return SaeResult(params=state.params, scores=scores, curve=curve_of(losses, spec))

    return train


# What one group's batch-sized arrays (one D×B array per SAE) may take on a CPU: measured on 2
# loaded cores (32 MiB L3) for width 64, d 16, batch 1,024, the CPU time per SAE·step was 0.35 ms
# for 8 SAEs in one vmap, 0.55 ms for 64, and 0.25-0.39 ms for 64 in groups of 16 (this budget).
GROUP_BYTES = 6 << 20


def group_size(spec: SaeSpec, n_hidden: int, n_saes: int, backend: str | None = None) -> int:
    """How many of ``n_saes`` SAEs one vmapped group trains at a time (``train_saes``).

    Every SAE's step makes a few D×B arrays (pre-activations, codes, masks and their
    gradients); vmapped over N SAEs these are N×D×B. Once they outgrow the cache every
    elementwise pass streams them from memory, so on 2 CPU cores 64 SAEs of width 64 at batch
    1,024 (16 MB per array) trained at about half the per-SAE rate of 8. On a CPU the SAEs are
    therefore trained in groups whose D×B arrays fit in ``GROUP_BYTES``, one group after the
    other (``lax.map``), each group one vmapped program: the largest divisor of ``n_saes`` at
    most that size, so no group is padded. On a GPU one group holds them all."""
    if (backend or jax.default_backend()) != "cpu":
        return n_saes
    per_sae = 4 * spec.batch_size * (spec.dict_size + n_hidden)
    target = max(1, GROUP_BYTES // per_sae)
    return max(g for g in range(1, min(target, n_saes) + 1) if n_saes % g == 0)


@partial(jax.jit, static_argnums=(0, 1))
def train_saes(
    spec: SaeSpec,
    source,
    keys: jax.Array,
    hp: SaeHParams,
    arrays,
    data_keys: jax.Array,
    params0=None,
) -> SaeResult:
    """Train ``len(keys)`` SAEs in one compiled program. ``arrays``: the source's arrays, with a
    leading SAE axis when ``spec.per_sae_source``; ``data_keys``: one key per SAE, or a single
    key with ``spec.shared_data``; ``params0``: optional starting parameters, one per SAE.

    On a CPU the SAEs train in groups that fit a core's cache (``group_size``), one group after
    the other inside the program; each SAE's computation is the same, only the schedule differs."""
    axes = (0, 0, 0 if spec.per_sae_source else None, None if spec.shared_data else 0, 0)
    train = jax.vmap(make_train(spec, source), in_axes=axes)
    args = (keys, hp, arrays, data_keys, params0)
    n = keys.shape[0]
    g = group_size(spec, source.n_hidden, n)
    if g == n:
        return train(*args)
    mapped = [a if axis == 0 else None for a, axis in zip(args, axes)]
    fixed = [None if axis == 0 else a for a, axis in zip(args, axes)]

    def one_group(group):
        return train(*[m if f is None else f for m, f in zip(group, fixed)])

    groups = jax.tree.map(lambda x: x.reshape((n // g, g) + x.shape[1:]), mapped)
    out = jax.lax.map(one_group, groups)
    return jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), out)


SHARED_FIELDS = ("steps", "batch_size", "eval_batch", "eval_batches", "eval_seed", "dead_samples")


@partial(jax.jit, static_argnums=(0, 1))
def train_mixed(
    specs: tuple, source, keys: tuple, hps: tuple, arrays, data_key: jax.Array
) -> tuple:
    """Groups of SAEs of different specs (kinds, sizes) in one compiled program on one shared data
    stream: each batch is drawn once for every SAE of every group (at full SynthSAEBench size the
    world's batch is ~15% of a step's work per SAE). ``keys[i]``, ``hps[i]``: group i's SAEs;
    the specs must agree on steps, batch and evaluation. Returns one ``SaeResult`` per group."""
    for name in SHARED_FIELDS:
        if len({getattr(s, name) for s in specs}) > 1:
            raise ValueError(
                f"train_mixed: every spec must share {name}, got {[getattr(s, name) for s in specs]}"
            )
    spec0 = specs[0]
    pieces = [make_sae(spec, source.n_hidden) for spec in specs]
    stream = source.stream(data_key)

    def body(carry, t):
        states, packed = carry
        _, h_HxB = source.inputs(arrays, packed)
        stepped = [
            jax.vmap(step, in_axes=(0, None, 0, None))(state, h_HxB, hp, t)
            for (_, step), state, hp in zip(pieces, states, hps)
        ]
        return (
            tuple(s for s, _ in stepped),
            source.draw(arrays, stream, t + 1, spec0.batch_size),
        ), tuple(loss for _, loss in stepped)

    states = tuple(jax.vmap(init)(k, hp) for (init, _), k, hp in zip(pieces, keys, hps))
    carry = (states, source.draw(arrays, stream, jnp.uint32(0), spec0.batch_size))
    (states, _), losses = jax.lax.scan(body, carry, jnp.arange(spec0.steps, dtype=jnp.uint32))
    params = [s.params for s in states]
    scores = evaluate(list(specs), source, params, list(hps), arrays, batched=True)
    return tuple(
        SaeResult(
            params=p, scores=sc, curve=jax.vmap(lambda l: curve_of(l, spec0), in_axes=1)(loss)
        )
        for p, sc, loss in zip(params, scores, losses)
    )


def sae_keys(base_seed: int, source_uids, sae_seeds) -> jax.Array:
    """One key per SAE from its source's uid and its own seed: independent of grouping, and
    shared across λ, k, dictionary sizes and kinds (paired comparisons: the same init directions
    where shapes agree, the same training inputs)."""
    base = jax.random.fold_in(jax.random.key(base_seed), SAE_STREAM)
    uids = jnp.asarray(source_uids, jnp.uint32)
    seeds = jnp.asarray(sae_seeds, jnp.uint32)
    return jax.vmap(lambda u, s: jax.random.fold_in(jax.random.fold_in(base, u), s))(uids, seeds)


def split_keys(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(init keys, data keys) from SAE keys: the data stream is the same for every SAE that
    shares a key, whatever its kind or size."""
    both = jax.vmap(lambda k: jax.random.split(k))(keys)
    return both[:, 0], both[:, 1]
