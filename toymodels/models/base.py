"""What a model kind is, and the two forms a batch takes through it.

A kind (``ModelKind``) is one frozen record: how to initialise its parameters, its forward pass
written once against ``ops`` (below), what it is trained to output, and a few facts the rest of
the pipeline asks about. Parameters are a flat dict of named arrays; the store writes every one of
them as a column of the same name, so a kind with a new weight needs no edit anywhere else.

The forward pass never sees which form its batch is in. ``DENSE`` holds a batch as one F×B array
(feature-major: the long batch axis contiguous). ``ROWS`` holds it as a list of F separate batch
rows and writes every product as sums of scaled rows: for models with at most
``UNROLL_MAX_WEIGHTS`` weights per layer XLA fuses the whole model into one vectorised loop per
batch element, where dots of such tiny shapes run as many small matrix calls (n=2, m=1 x2500:
~2x; n=10, m=5 x100: ~1.4x on 2 CPU cores). Rows stay separate between layers: stacking and
re-slicing them cost ~20% at n=5, m=2.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp

Params = dict  # name -> array; the name is also the store's column

# Models whose layers have at most this many weights take the unrolled rows form.
UNROLL_MAX_WEIGHTS = 50
INIT_KINDS = ("xavier", "notebook")


class Dense:
    """Batches as F×B arrays."""

    rows = False

    @staticmethod
    def matmul(A_OxI, x):
        """A x."""
        return A_OxI @ x

    @staticmethod
    def apply(fn, x):
        """An elementwise function."""
        return fn(x)

    @staticmethod
    def add(x, y):
        return x + y

    @staticmethod
    def add_bias(x, b_O):
        return x + b_O[:, None]

    @staticmethod
    def weighted_square_sum(x, v_F=None):
        """Σ_i v_i x_i² over features (v = 1 when None): one output row."""
        return jnp.sum((x * x if v_F is None else v_F[:, None] * x * x), axis=0, keepdims=True)

    @staticmethod
    def weighted_mse(y, yhat, w_O, w_OxB=None):
        """Σ_o w_o (y_o − ŷ_o)², mean over batch and outputs; each entry also weighted by
        ``w_OxB`` when given (a data kind's per-entry loss weights)."""
        if w_OxB is None:
            return jnp.mean(w_O[:, None] * (y - yhat) ** 2)
        return jnp.mean(w_O[:, None] * w_OxB * (y - yhat) ** 2)

    @staticmethod
    def l1(h):
        """Mean over the batch of ‖h‖₁."""
        return jnp.mean(jnp.sum(jnp.abs(h), axis=0))

    @staticmethod
    def batch(x):
        return jnp.stack(x) if isinstance(x, list) else x

    @staticmethod
    def stack(x):
        return x


class Rows:
    """Batches as lists of batch rows, products unrolled (see the module docstring)."""

    rows = True

    @staticmethod
    def matmul(A_OxI, rows_I):
        n_out, n_in = A_OxI.shape
        return [sum(A_OxI[o, i] * rows_I[i] for i in range(n_in)) for o in range(n_out)]

    @staticmethod
    def apply(fn, rows):
        return [fn(r) for r in rows]

    @staticmethod
    def add(x, y):
        return [a + b for a, b in zip(x, y)]

    @staticmethod
    def add_bias(rows, b_O):
        return [r + b_O[o] for o, r in enumerate(rows)]

    @staticmethod
    def weighted_square_sum(rows, v_F=None):
        return [sum((r * r if v_F is None else v_F[i] * r * r) for i, r in enumerate(rows))]

    @staticmethod
    def weighted_mse(y, yhat, w_O, w_OxB=None):
        if w_OxB is None:
            return sum(
                w_O[i] * jnp.mean((a - b) ** 2) for i, (a, b) in enumerate(zip(y, yhat))
            ) / len(y)
        return sum(
            w_O[i] * jnp.mean(w * (a - b) ** 2) for i, (a, b, w) in enumerate(zip(y, yhat, w_OxB))
        ) / len(y)

    @staticmethod
    def l1(h):
        return sum(jnp.mean(jnp.abs(r)) for r in h)

    @staticmethod
    def batch(x):
        return x if isinstance(x, list) else [x[i] for i in range(x.shape[0])]

    @staticmethod
    def stack(x):
        return jnp.stack(x)


DENSE, ROWS = Dense(), Rows()

# The callables of a kind, typed (a type checker checks a user's kind against them). A batch is in
# one of ``Ops``' two forms: an F×B array (``DENSE``) or a list of F batch rows (``ROWS``).
Batch = jax.Array | Sequence[jax.Array]
Ops = Dense | Rows
Options = Mapping[str, Any]


class InitFn(Protocol):
    def __call__(
        self, key: jax.Array, n_features: int, n_hidden: int, std: float, options: Options
    ) -> Params:
        """The kind's initial parameters, a dict of named arrays."""
        ...


class ForwardFn(Protocol):
    def __call__(self, params: Params, x: Batch, ops: Ops) -> tuple[Batch, Batch]:
        """(outputs, hidden) of one model on a batch in ``ops``' form."""
        ...


class TargetFn(Protocol):
    def __call__(self, x: Batch, importance_F: jax.Array, ops: Ops) -> Batch:
        """What the outputs are trained towards, in ``ops``' form."""
        ...


class NOutputsFn(Protocol):
    def __call__(self, n_features: int, options: Options) -> int: ...


class FeaturesFn(Protocol):
    def __call__(self, params: Params) -> jax.Array:
        """The m×n matrix whose column i is feature i's direction."""
        ...


class ModelCheckFn(Protocol):
    def __call__(self, n_features: int, n_hidden: int, options: Options) -> None:
        """Raise ``toymodels.registry.ConfigError`` naming the key for a setting the kind cannot train."""
        ...


class ReadMatricesFn(Protocol):
    def __call__(self, params: Params) -> jax.Array:
        """Each layer's read vectors of the features, L×k×n."""
        ...


class BindFn(Protocol):
    def __call__(
        self, kind: ModelKind, n_features: int, n_hidden: int, options: Options
    ) -> ModelKind:
        """The kind specialised to one shape and its static options (``ModelKind.bind``)."""
        ...


def identity_target(x, importance_F, ops):
    return x


def default_features(params: Params) -> jax.Array:
    return params["W"]


@dataclasses.dataclass(frozen=True, eq=False)
class ModelKind:
    """One model kind. Functions receive and return the parameter dict.

    - ``init(key, n_features, n_hidden, std, options) -> params``: ``std`` is the configured
      init's scale for an m×n matrix (``init_std``); ``options`` the kind's static options
      (``model.options``, defaults in ``options``).
    - ``forward(params, x, ops) -> (outputs, hidden)``: ``x`` is a batch in ``ops``' form.
    - ``target(x, importance_F, ops)``: what the outputs are trained towards (default x itself).
    - ``n_outputs(n_features, options)``: default n.
    - ``importance_weighted``: the loss weights output i by I_i; otherwise every output by 1
      (the quadratic model, whose importances live in its target).
    - ``features(params)``: the m×n matrix whose columns are the features' directions; the
      metrics (‖W_i‖, capacity, interference) and the ``W`` column are of it.
    - ``privileged``: the hidden layer has an elementwise non-linearity, so its units are a
      privileged basis (one neuron = one axis; the neuron figures apply).
    - ``output_activation``: for tied models x' = act(WᵀWx + b), the elementwise ``act``; the
      finite-data trainer's hand-written full-batch gradient needs it (None: no finite data).
    - ``check(n_features, n_hidden, options)``: raise ``toymodels.registry.ConfigError`` naming
      the key for a setting the kind cannot train.
    - ``read_matrices(params)``: for a kind with several layers of units, each layer's read
      vectors of the features (L×k×n: column i of layer l is how layer l's k units read feature
      i). When given, the snapshots and the store also record every layer's ‖R_i‖ and C_i
      (``snap_layer_norms``, ``snap_layer_capacity``); None adds nothing to the program.
    - ``bind(kind, n_features, n_hidden, options)``: for a kind whose forward pass, target or
      feature directions depend on its static options (fixed matrices drawn from them): returns
      the kind specialised to them (``toymodels.models.bind_kind``; the trainer and the store call
      it once per compiled program). None: the kind's functions are used as they are.
    """

    name: str
    init: InitFn
    forward: ForwardFn
    target: TargetFn = identity_target
    n_outputs: NOutputsFn = lambda n_features, options: n_features
    importance_weighted: bool = True
    features: FeaturesFn = default_features
    privileged: bool = False
    output_activation: Callable[[jax.Array], jax.Array] | None = None
    options: Mapping = dataclasses.field(default_factory=dict)
    check: ModelCheckFn | None = None
    read_matrices: ReadMatricesFn | None = None
    bind: BindFn | None = None
    doc: str = ""


def init_std(
    n_features: int, n_hidden: int, init: str = "xavier", init_instances: int = 10
) -> float:
    """Standard deviation of the normal init of an m×n weight matrix.

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


def is_tiny(n_features: int, n_hidden: int) -> bool:
    """Whether models of this shape take the unrolled rows form (each layer has n·m weights)."""
    return n_features * n_hidden <= UNROLL_MAX_WEIGHTS


def ops_for(n_features: int, n_hidden: int):
    return ROWS if is_tiny(n_features, n_hidden) else DENSE
