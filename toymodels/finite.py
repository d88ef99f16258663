"""Finite training sets: memorisation, double descent and repeated data (docs/science/double-descent.md,
docs/science/metrics.md, docs/science/index.md).

Henighan et al. 2023 train the ReLU-output model full-batch on T points drawn once, each rescaled
to unit L2 norm, and measure the loss on fresh points. At their scale (n = 10,000, S = 0.999,
T up to 10⁵) a dense T×n dataset is 4 GB per model, so a point is stored sparsely as K (index,
value) pairs, and the full-batch loss and its gradient (``toymodels.finite_loss``) are summed over
pieces of points, each piece dense only in its n outputs: memory O(piece·n + T·K), never O(T·n).

The dataset comes from ``dataset_seed`` alone (models differing in weight decay or init share
it), the init from the model key, and the test set is one fixed stream shared by every model.
A point with no active feature (probability (1−p)^n, ~5e-5 at paper scale) cannot be rescaled:
it stays x = 0 (the model must output ReLU(b) ≈ 0 there), is kept, and is counted (``n_empty``).
Array names carry their shape: N points, K stored features, F features (n), H hidden (m),
P pieces, B points per piece, R repeated points, S snapshots.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from toymodels import rng
from toymodels.finite_loss import (  # noqa: F401  (the loss is part of this module's interface)
    FiniteParams,
    SparsePoints,
    dataset_loss,
    dataset_loss_and_grad,
    default_piece_size,
    finite_kind,
    finite_kinds,
    fused_by_default,
    hidden_vectors,
    output_activation,
    piece_layout,
)
from toymodels.models import init_params, init_std
from toymodels.optim import make_optimizer
from toymodels.train import scan_intervals, snapshot_marks

DATA_STREAM, TEST_STREAM = 0, 1  # fold_in tags: a dataset seed equal to test_seed gives other data
NORM_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class FiniteSpec:
    """Static settings: models sharing a FiniteSpec share one compiled program.

    ``max_active`` (K) caps the stored features per point; pick it with ``max_active_for`` so a
    dataset overflows with negligible probability (overflows are truncated and counted).
    ``repeats`` (R) and ``n_repeated``: the first ``n_repeated`` points each appear R times
    (consecutively) among the T; R ≤ 1 means no repetition, the points are still tracked (the
    control of the repeated-data experiment).
    """

    n_features: int
    n_hidden: int
    n_train: int
    steps: int = 50_000
    warmup_steps: int = 2_500
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    model: str = "relu"
    max_active: int = 32
    piece_size: int = 0  # 0: the default of the device that runs it (``default_piece_size``)
    n_test: int = 10_000
    repeats: int = 0
    n_repeated: int = 0
    snapshot_every: int = 500
    init: str = "xavier"
    init_instances: int = 10
    test_seed: int = 0
    hidden_points: int = 256

    def __post_init__(self):
        finite_kind(self.model)
        if (
            min(self.n_features, self.n_hidden, self.n_train, self.n_test, self.max_active) < 1
            or self.piece_size < 0
        ):
            raise ValueError(
                "n_features, n_hidden, n_train, n_test and max_active must be ≥ 1, piece_size ≥ 0"
            )
        if self.n_repeated * self.copies > self.n_train:
            raise ValueError(
                f"{self.n_repeated} points × {self.copies} copies exceed n_train = {self.n_train}"
            )

    @property
    def K(self) -> int:
        return min(self.max_active, self.n_features)

    @property
    def copies(self) -> int:
        return max(self.repeats, 1)

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        return snapshot_marks(self.steps, self.snapshot_every)


@struct.dataclass
class FiniteHParams:
    """Per-model values; every leaf gains a leading model axis under vmap."""

    density: jax.Array  # p = 1 − S, the same for every feature
    importance_F: jax.Array
    lr: jax.Array
    weight_decay: jax.Array
    dataset_seed: jax.Array  # uint32: the training set is a function of this alone


@struct.dataclass
class FiniteSnapshots:
    step_S: jax.Array
    train_loss_S: jax.Array
    test_loss_S: jax.Array
    norm_W_S: jax.Array  # ‖W‖_F
    norm_b_S: jax.Array  # ‖b‖


@struct.dataclass
class FiniteResult:
    params: FiniteParams
    train_loss: jax.Array
    test_loss: jax.Array
    snapshots: FiniteSnapshots
    hidden_first_PxH: jax.Array  # h_t = W x_t of the first min(hidden_points, T) points
    hidden_repeated_RxH: jax.Array  # h of each repeated point
    data_dims_T: (
        jax.Array
    )  # data-point dimensionality of every training position (docs/science/metrics.md)
    feature_dims_F: jax.Array
    repeated_rank_R: jax.Array  # fraction of distinct points of strictly higher dimensionality
    n_overflow: jax.Array  # distinct points with more than K active features (truncated)
    n_empty: jax.Array  # distinct points with no active feature (kept as x = 0)


def max_active_for(n_features: int, density: float, n_points: int = 1, tail: float = 1e-6) -> int:
    """Smallest K with n_points · P(Binomial(n, p) > K) < tail: with n_points = T the whole
    dataset is stored exactly except with probability below ``tail``."""
    if density >= 1.0:
        return n_features
    k = np.arange(n_features + 1)
    lgam = np.vectorize(math.lgamma)
    log_pmf = (
        lgam(n_features + 1.0)
        - lgam(k + 1.0)
        - lgam(n_features - k + 1.0)
        + k * math.log(max(density, 1e-300))
        + (n_features - k) * math.log1p(-density)
    )
    above_K = np.cumsum(np.exp(log_pmf)[::-1])[::-1][1:]  # P(count > K) for K = 0..n-1
    ok = np.flatnonzero(n_points * above_K < tail)
    return int(ok[0]) if len(ok) else n_features


def sample_raw_points(words: jax.Array, density: jax.Array, n_points: int, n_features: int, K: int):
    """Sparse points before normalising: (idx_NxK, raw_NxK, count_N), ``count`` the number of
    active features, K + 1 meaning more than K (an overflow: the first K are kept).

    Exact: features are independently active with probability p, so the gaps between active
    indices are i.i.d. Geometric(p); K + 1 gaps locate the first K active features and tell
    whether there are more. Active values are U[0, 1]. O(N·K) random words instead of O(N·n)."""
    u_NxG = rng.uniform(words, jnp.uint32(0), (n_points, 2 * K + 1))
    u_gap, u_val = u_NxG[:, : K + 1], u_NxG[:, K + 1 :]
    # P(G > g) = P(U ≤ (1-p)^g) = (1-p)^g: G = 1 + floor(log U / log(1-p)), capped past the end.
    ratio = jnp.where(
        density >= 1.0, 0.0, jnp.log(u_gap) / jnp.log1p(-jnp.minimum(density, 1.0 - 1e-7))
    )
    gap = 1 + jnp.floor(
        jnp.clip(jnp.nan_to_num(ratio, nan=n_features + 1.0), 0.0, n_features + 1.0)
    )
    pos_NxG = jnp.cumsum(gap.astype(jnp.int32), axis=1) - 1
    stored_NxK = pos_NxG[:, :K] < n_features
    count_N = jnp.sum(stored_NxK, axis=1) + (pos_NxG[:, K] < n_features)  # K + 1: "more than K"
    idx_NxK = jnp.where(stored_NxK, pos_NxG[:, :K], 0)
    raw_NxK = jnp.where(stored_NxK, u_val, 0.0)
    return idx_NxK, raw_NxK, count_N


def unit_norm(raw_NxK: jax.Array) -> jax.Array:
    """Rescale each point to unit L2 norm (docs/science/double-descent.md); a point with no active
    feature stays 0."""
    norm_N = jnp.sqrt(jnp.sum(raw_NxK * raw_NxK, axis=1, keepdims=True))
    return raw_NxK / jnp.where(norm_N > 0, norm_N, 1.0)


def repeat_layout(spec: FiniteSpec):
    """(source_N, distinct_N, repeated_R) over the padded training positions: position t holds
    generated point source[t]; repeated point j sits at j·R … j·R + R − 1 and is reported at j·R;
    ``distinct`` marks real positions that are not a later copy."""
    B, P = piece_layout(spec.n_train, spec.piece_size)
    t_N = np.arange(P * B)
    c = spec.copies
    source_N = np.where(t_N < spec.n_repeated * c, (t_N // c) * c, t_N)
    distinct_N = (source_N == t_N) & (t_N < spec.n_train)
    return source_N, distinct_N, np.arange(spec.n_repeated) * c


def _points(key: jax.Array, density: jax.Array, n_points: int, spec: FiniteSpec, source_N=None):
    B, P = piece_layout(n_points, spec.piece_size)
    idx, raw, count = sample_raw_points(rng.key_words(key), density, P * B, spec.n_features, spec.K)
    if source_N is not None:
        idx, raw, count = idx[source_N], raw[source_N], count[source_N]
    weight = (jnp.arange(P * B) < n_points).astype(jnp.float32)
    return SparsePoints(idx, unit_norm(raw), weight), count


def training_set(spec: FiniteSpec, density: jax.Array, dataset_seed: jax.Array):
    """(points, count_N): the T training points with repeats in place, padded to whole pieces."""
    key = jax.random.fold_in(jax.random.key(dataset_seed), DATA_STREAM)
    return _points(key, density, spec.n_train, spec, jnp.asarray(repeat_layout(spec)[0]))


def held_out_set(spec: FiniteSpec, density: jax.Array) -> SparsePoints:
    """Fresh held-out points, one fixed stream for every model (paired comparisons)."""
    return _points(
        jax.random.fold_in(jax.random.key(spec.test_seed), TEST_STREAM), density, spec.n_test, spec
    )[0]


def densify(points: SparsePoints, n_features: int) -> jax.Array:
    """Dense F×N inputs (small sizes only: tests and references)."""
    rows = jnp.arange(points.idx_NxK.shape[0])[:, None]
    return (
        jnp.zeros((points.idx_NxK.shape[0], n_features))
        .at[rows, points.idx_NxK]
        .add(points.val_NxK)
        .T
    )


def dimensionality(V_NxH, weight_N=None):
    """D_t = (v_t·v_t)² / Σ_s w_s (v_t·v_s)² for the rows v_t (docs/science/metrics.md): feature
    dimensionality
    on W's columns, data-point dimensionality on hidden vectors. Σ_s (v_t·v_s)² = v_tᵀ M v_t with
    M = Σ_s w_s v_s v_sᵀ (H×H): O(N·m²), where the Gram matrix would be N×N. 0 for a zero row."""
    xp = np if isinstance(V_NxH, np.ndarray) else jnp
    w_N = xp.ones(V_NxH.shape[0]) if weight_N is None else weight_N
    M_HxH = (V_NxH * w_N[:, None]).T @ V_NxH
    sq_N = xp.sum(V_NxH * V_NxH, axis=1)
    denom_N = xp.sum((V_NxH @ M_HxH) * V_NxH, axis=1)
    return xp.where(denom_N > NORM_EPS**2, sq_N**2 / xp.maximum(denom_N, NORM_EPS**2), 0.0)


def rank_fraction(dims_N, index, distinct_N=None):
    """Fraction of (distinct) points whose dimensionality is strictly above point ``index``'s."""
    xp = np if isinstance(dims_N, np.ndarray) else jnp
    mask = xp.ones(dims_N.shape, bool) if distinct_N is None else xp.asarray(distinct_N, bool)
    return xp.sum(mask & (dims_N > dims_N[index])) / xp.maximum(xp.sum(mask), 1)


def memorised(dims_T, index, top: float = 0.001, distinct_T=None):
    """The memorisation detector: point ``index``'s data dimensionality is in the top ``top``
    fraction (default 0.1%) of the training set's; with fewer than 1/top points, the maximum."""
    return rank_fraction(dims_T, index, distinct_T) < top


def train_finite(spec: FiniteSpec, key: jax.Array, hp: FiniteHParams) -> FiniteResult:
    """Full-batch AdamW (linear warm-up then cosine to 0) on one finite dataset
    (docs/science/double-descent.md)."""
    n, m = spec.n_features, spec.n_hidden
    W_HxF = init_params(key, n, m, init_std(n, m, spec.init, spec.init_instances))["W"]
    params = FiniteParams(W_HxF=W_HxF, b_F=jnp.zeros((n,)))
    train_pts, count_N = training_set(spec, hp.density, hp.dataset_seed)
    test_pts = held_out_set(spec, hp.density)
    opt = make_optimizer(
        hp.lr,
        hp.weight_decay,
        "warmup_cosine",
        spec.steps,
        spec.warmup_steps,
        spec.b1,
        spec.b2,
        spec.eps,
    )
    train_loss = partial(
        dataset_loss,
        points=train_pts,
        importance_F=hp.importance_F,
        n_points=spec.n_train,
        spec=spec,
    )
    test_loss = partial(
        dataset_loss, points=test_pts, importance_F=hp.importance_F, n_points=spec.n_test, spec=spec
    )

    def step(carry, _):
        params, opt_state = carry
        _, grads = dataset_loss_and_grad(params, train_pts, hp.importance_F, spec.n_train, spec)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    def interval(carry, start, length):  # full batch: the step's data does not depend on the step
        carry, _ = jax.lax.scan(step, carry, None, length=length)
        p = carry[0]
        return carry, (
            train_loss(p),
            test_loss(p),
            jnp.linalg.norm(p.W_HxF),
            jnp.linalg.norm(p.b_F),
        )

    marks = spec.snapshot_steps
    carry, (train_S, test_S, norm_W_S, norm_b_S) = scan_intervals(
        interval, (params, opt.init(params)), spec.steps, marks[0]
    )
    params = carry[0]

    _, distinct_N, repeated_R = repeat_layout(spec)
    h_NxH = hidden_vectors(params.W_HxF, train_pts)
    dims_N = dimensionality(h_NxH, jnp.asarray(distinct_N, jnp.float32))
    distinct = jnp.asarray(distinct_N)
    return FiniteResult(
        params=params,
        train_loss=train_S[-1],
        test_loss=test_S[-1],
        snapshots=FiniteSnapshots(
            jnp.asarray(marks, jnp.int32), train_S, test_S, norm_W_S, norm_b_S
        ),
        hidden_first_PxH=h_NxH[: min(spec.hidden_points, spec.n_train)],
        hidden_repeated_RxH=h_NxH[repeated_R],
        data_dims_T=dims_N[: spec.n_train],
        feature_dims_F=dimensionality(params.W_HxF.T),
        repeated_rank_R=jax.vmap(lambda r: rank_fraction(dims_N, r, distinct))(
            jnp.asarray(repeated_R, jnp.int32)
        ),
        n_overflow=jnp.sum(distinct & (count_N > spec.K)),
        n_empty=jnp.sum(distinct & (count_N == 0)),
    )


@partial(jax.jit, static_argnums=0)
def train_finite_many(spec: FiniteSpec, keys: jax.Array, hp: FiniteHParams) -> FiniteResult:
    """Train ``len(keys)`` same-shaped models on their datasets in one compiled program."""
    return jax.vmap(partial(train_finite, spec))(keys, hp)
