"""The whole training loop as one pure function, ``train(key, hparams)``.

Shape-setting values (n, m, batch, steps, schedule, snapshot interval) live in a static
``TrainSpec`` fixed when the function is built; per-model values (density, importance, learning
rate, weight decay) are array leaves of ``HParams``, so ``jit(vmap(train))`` trains any number of
same-shaped models in one compiled program.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import struct

from toymodels import metrics, rng
from toymodels.data import (
    DataSpec,
    draw,
    draw_shared,
    from_uniforms,
    uniform_rows,
    weights_from_uniforms,
)
from toymodels.models import (
    Params,
    bind_kind,
    init_params,
    init_std,
    is_tiny,
    loss_and_hidden,
    model_loss,
)
from toymodels.optim import make_optimizer
from toymodels.terms import TERMS, TermInputs

EVAL_BATCH = 4096


def snapshot_marks(steps: int, every: int) -> tuple[int, ...]:
    """Steps after which a snapshot is taken: every ``every`` steps, and the last (``every`` of 0
    or at least ``steps``: the last only)."""
    every = every if 0 < every < steps else steps
    marks = list(range(every, steps + 1, every))
    if not marks or marks[-1] != steps:
        marks.append(steps)
    return tuple(marks)


def scan_intervals(interval, carry, steps: int, every: int):
    """Training in snapshot intervals: ``interval(carry, start, length) -> (carry, measures)`` over
    steps [0, ``steps``) in intervals of ``every`` steps (``snapshot_marks``). The equal intervals
    share one inner scan inside an outer scan (one compiled body); a shorter tail runs after.
    Returns the last carry and each measure stacked over the snapshots."""
    n_equal = steps // every
    carry, equal = jax.lax.scan(
        lambda c, s: interval(c, s, every), carry, jnp.arange(n_equal, dtype=jnp.uint32) * every
    )
    snaps = [equal]
    if steps > n_equal * every:
        carry, tail = interval(carry, jnp.uint32(n_equal * every), steps - n_equal * every)
        snaps.append(jax.tree.map(lambda a: a[None], tail))
    return carry, tuple(jnp.concatenate(parts) for parts in zip(*snaps))


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Static settings: models that share a TrainSpec share one compiled program."""

    n_features: int
    n_hidden: int
    model: str = "relu"  # a kind of toymodels.models.MODELS
    model_options: tuple = ()  # the kind's static options as sorted (name, value) pairs
    data: DataSpec = DataSpec()
    # Optional loss terms (names in ``toymodels.terms.TERMS``) compiled in, added to the loss in
    # this order: only those some model of the chunk uses. Each reads ``HParams.terms[name]``.
    terms: tuple[str, ...] = ()
    # Compute each step's batch in this many column blocks (a scan), averaging their gradients:
    # the same data bit for bit and the same gradient up to float rounding, with a working set
    # that stays in cache (see docs/benchmark.md). 1: the whole batch at once.
    batch_blocks: int = 1
    # Models draw their inputs from shared streams (``train_many``'s ``stream_words``), picked by
    # ``HParams.stream``, instead of one stream each: data.streams = seed (docs/sweeps.md, Random streams).
    shared_streams: bool = False
    steps: int = 10_000
    batch_size: int = 1024
    schedule: str = "constant"
    warmup_steps: int = 0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    init: str = "xavier"
    init_instances: int = 10
    snapshot_every: int = 100
    eval_samples: int = 65_536
    eval_seed: int = 0

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        return snapshot_marks(self.steps, self.snapshot_every)


@struct.dataclass
class HParams:
    """Per-model values; every leaf gains a leading model axis under vmap."""

    density_F: jax.Array
    importance_F: jax.Array
    lr: jax.Array
    weight_decay: jax.Array
    stream: jax.Array | None = (
        None  # index into train_many's stream_words (needs spec.shared_streams)
    )
    # The per-model arrays of each loss term of ``spec.terms``: term name -> its ``arrays``
    # (``toymodels.terms.base.LossTerm``).
    terms: dict = dataclasses.field(default_factory=dict)


@struct.dataclass
class Snapshots:
    step_S: jax.Array  # training steps completed at each snapshot
    loss_S: jax.Array  # mean training loss over the interval ending there
    norms_SxF: jax.Array  # ‖W_i‖
    capacity_SxF: jax.Array  # C_i
    # Kinds with ``read_matrices`` only: each layer's ‖R_i‖ and C_i of its read vectors (S×L×n).
    layer_norms_SxLxF: jax.Array | None = None
    layer_capacity_SxLxF: jax.Array | None = None


@struct.dataclass
class TrainResult:
    params: Params
    eval_loss: jax.Array
    snapshots: Snapshots


def make_train(spec: TrainSpec):
    """Build ``train(key, hparams) -> TrainResult`` for one model; vmap it for many."""
    std = init_std(spec.n_features, spec.n_hidden, spec.init, spec.init_instances)
    kind = bind_kind(spec.model, spec.n_features, spec.n_hidden, spec.model_options)
    terms = [TERMS.get(name) for name in spec.terms]
    marks = spec.snapshot_steps
    n_eval_batches = -(-spec.eval_samples // EVAL_BATCH)

    def loss_fn(params, batch, importance_F):
        x_FxB, weight_FxB = batch
        return model_loss(params, x_FxB, importance_F, kind, weight_FxB=weight_FxB)

    def train_loss_fn(params, batch, hp, t):
        """The loss being minimised at step ``t``: the model's loss plus the optional terms
        (``spec.terms``, in order). Snapshots record it; the evaluation loss is the model's loss alone."""
        x_FxB, weight_FxB = batch
        loss, hidden, ops = loss_and_hidden(params, x_FxB, hp.importance_F, kind, weight_FxB)
        inputs = TermInputs(params=params, kind=kind, hidden=hidden, ops=ops, step=t)
        for term in terms:
            loss = loss + term.penalty(inputs, hp.terms[term.name])
        return loss

    rows = uniform_rows(spec.data, spec.n_features)
    tiny = is_tiny(spec.n_features, spec.n_hidden)  # the model takes its batch as feature rows

    def inputs(packed, density_F):
        """The model's batch from packed uniforms (``data.draw``), feature rows for tiny models, and
        the data kind's per-entry loss weights in the same form (None for kinds without them)."""
        u = (rng.unpack_rows if tiny else rng.unpack)(packed, rows)
        return from_uniforms(spec.data, u, density_F), weights_from_uniforms(
            spec.data, u, density_F
        )

    def evaluate(params, hp):
        # One fixed evaluation stream for every model: seeds at a grid point are ranked on
        # identical data (a paired comparison), independent of their training streams. Its
        # uniforms are the same for every model of the vmap; carried (drawn one batch ahead, see
        # block_loss_and_grad) they are computed once for all of them.
        eval_words = rng.key_words(jax.random.key(spec.eval_seed))

        def draw_eval(i):
            return draw(spec.data, eval_words, i, spec.n_features, EVAL_BATCH)

        def one(state, i):
            total, packed = state
            loss = loss_fn(params, inputs(packed, hp.density_F), hp.importance_F)
            return (total + loss, draw_eval(i + 1)), None

        (total, _), _ = jax.lax.scan(
            one,
            (jnp.zeros(()), draw_eval(jnp.uint32(0))),
            jnp.arange(n_eval_batches, dtype=jnp.uint32),
        )
        return total / n_eval_batches

    def train(key: jax.Array, hp: HParams, stream_words: jax.Array | None = None) -> TrainResult:
        init_key, data_key = jax.random.split(key)
        params = init_params(
            init_key, spec.n_features, spec.n_hidden, std, kind, spec.model_options
        )
        words = rng.key_words(data_key)
        opt = make_optimizer(
            hp.lr,
            hp.weight_decay,
            spec.schedule,
            spec.steps,
            spec.warmup_steps,
            spec.b1,
            spec.b2,
            spec.eps,
        )

        K = spec.batch_blocks

        def draw_block(t, j):
            """The packed uniforms of block j of step t (``data.draw``): this model's own, or with
            shared streams those of every stream (S × …), the same for all models of the vmap."""
            block = None if K == 1 else (j, K)
            if spec.shared_streams:
                assert stream_words is not None, "shared streams need train_many's stream_words"
                return draw_shared(
                    spec.data, stream_words, t, spec.n_features, spec.batch_size, block
                )
            return draw(spec.data, words, t, spec.n_features, spec.batch_size, block)

        def block_loss_and_grad(params, t, j, packed):
            """(loss, gradient) of block j of step t from its packed uniforms, and the packed
            uniforms of the block after it (block 0 of step t + 1 after the last). Drawing one
            block ahead keeps the uniforms in a loop carry: XLA stores a carried array, so each
            Threefry call is computed once for both of its words (``rng.uniform_pairs``); unstored,
            XLA would fuse the generator into each reader and, with shared streams, draw every
            stream once per model after all."""
            batch = inputs(packed[hp.stream] if spec.shared_streams else packed, hp.density_F)
            following = draw_block(t + (j + 1) // K, (j + 1) % K)
            return jax.value_and_grad(train_loss_fn)(params, batch, hp, t), following

        def batch_loss_and_grad(params, t, packed):
            if K == 1:
                return block_loss_and_grad(params, t, jnp.uint32(0), packed)

            # Equal blocks: the mean of block means is the batch mean, for the loss and its gradient.
            def one(state, j):
                total, packed = state
                value_and_grad, packed = block_loss_and_grad(params, t, j, packed)
                return (jax.tree.map(jnp.add, total, value_and_grad), packed), None

            zero = jax.tree.map(jnp.zeros_like, (jnp.zeros(()), params))
            (total, packed), _ = jax.lax.scan(one, (zero, packed), jnp.arange(K, dtype=jnp.uint32))
            return jax.tree.map(lambda a: a / K, total), packed

        def step(carry, t):
            params, opt_state, packed = carry  # packed: block 0 of step t's uniforms
            (loss, grads), packed = batch_loss_and_grad(params, t, packed)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, packed), loss

        def interval(carry, start, length):
            carry, losses = jax.lax.scan(step, carry, start + jnp.arange(length, dtype=jnp.uint32))
            W = kind.features(carry[0])
            layers = (
                () if kind.read_matrices is None else _layer_measures(kind.read_matrices(carry[0]))
            )
            return carry, (jnp.mean(losses), metrics.feature_norms(W), metrics.capacity(W), *layers)

        carry = (params, opt.init(params), draw_block(jnp.uint32(0), jnp.uint32(0)))
        carry, (loss_S, norms_SxF, capacity_SxF, *layers) = scan_intervals(
            interval, carry, spec.steps, marks[0]
        )

        params = carry[0]
        return TrainResult(
            params=params,
            eval_loss=evaluate(params, hp),
            snapshots=Snapshots(
                step_S=jnp.asarray(marks, jnp.int32),
                loss_S=loss_S,
                norms_SxF=norms_SxF,
                capacity_SxF=capacity_SxF,
                **dict(zip(("layer_norms_SxLxF", "layer_capacity_SxLxF"), layers)),
            ),
        )

    return train


def _layer_measures(R_LxKxF):
    """Each layer's ‖R_i‖ and C_i of its read vectors (L×n each)."""
    return metrics.feature_norms(R_LxKxF), metrics.capacity(R_LxKxF)


@partial(jax.jit, static_argnums=0)
def train_many(
    spec: TrainSpec, keys: jax.Array, hparams: HParams, stream_words: jax.Array | None = None
) -> TrainResult:
    """Train ``len(keys)`` same-shaped models in one compiled program.

    With ``spec.shared_streams``, ``stream_words`` (S×2 uint32, from ``stream_key_words``) are the
    data streams the models share: model i draws from stream ``hparams.stream[i]``. Drawn once per
    batch block for all the models of a stream instead of once per model."""
    if spec.shared_streams and (stream_words is None or hparams.stream is None):
        raise ValueError("spec.shared_streams needs stream_words and hparams.stream")
    return jax.vmap(make_train(spec), in_axes=(0, 0, None))(keys, hparams, stream_words)


def model_keys(base_seed: int, uids) -> jax.Array:
    """One PRNG key per model from a stable per-model id, independent of how models are chunked."""
    base = jax.random.key(base_seed)
    return jax.vmap(lambda u: jax.random.fold_in(base, u))(jnp.asarray(uids, jnp.uint32))


# Stream ids are offset past every model uid (31 bits), so no stream is any model's own.
STREAM_ID_OFFSET = 2**31


def stream_key_words(base_seed: int, seeds) -> jax.Array:
    """Key words (S×2 uint32) of the shared data stream of each seed index in ``seeds``: the stream
    every model of that seed index draws from when streams are shared (``TrainSpec.shared_streams``)."""
    base = jax.random.key(base_seed)
    ids = jnp.asarray(seeds, jnp.uint32) + jnp.uint32(STREAM_ID_OFFSET)
    return jax.vmap(lambda i: rng.key_words(jax.random.fold_in(base, i)))(ids)
