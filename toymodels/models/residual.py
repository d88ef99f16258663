"""Residual MLPs for capacity across layers (issue 17 item 4, "circuit economics").

The residual stream r (d-dimensional) starts at r₀ = E_in x, with E a fixed random orthogonal
d×d matrix (never trained: it is a constant of the program, so weight decay cannot shrink it) and
E_in its first n columns; each of L layers adds W_out·ReLU(W_in·r + b_in) (k = m/L units each, so
the total number of units m is fixed whatever L); the output is Eᵀr. Inputs are signed (U[−1, 1]
when active), so the skip path alone outputs x and each layer's units must supply |x| − x.

- ``residual_mlp``: targets |x_i| (d = n outputs, importance-weighted).
- ``residual_mlp_groups``: targets |x_i| and, for each group of 4 consecutive features,
  ReLU(Σ_{i∈g} |x_i| − 1) (d = n + n/4 outputs, every output weighted 1): a group feature is a
  function of |x|, which earlier layers can prepare for later ones.

Option ``layers`` (L, a static grid axis ``+sweep.grid.layers=[1,2,4]``) must divide the total
units m (``model.n_hidden``). Parameters: ``W_in`` L×k×d, ``b_in`` L×k, ``W_out`` L×d×k. The
feature directions ``W`` (m×n) stack every layer's read vectors W_in·E_in; ``read_matrices``
gives them per layer (L×k×n), so the snapshots record each layer's capacity of every feature.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.models.base import DENSE, ModelKind
from toymodels.registry import ConfigError

GROUP = 4  # features per group feature (residual_mlp_groups)
EMBED_SEED = 0  # E is the same orthogonal matrix in every model and run


def embedding(d: int) -> jax.Array:
    """The fixed orthogonal d×d matrix E (QR of a seeded Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(np.random.default_rng(EMBED_SEED).normal(size=(d, d)))
    return jnp.asarray(q * np.sign(np.diag(r)), jnp.float32)


def n_outputs_groups(n_features: int, options) -> int:
    return n_features + n_features // GROUP


def make_init(n_outputs):
    def init(key, n_features: int, n_hidden: int, std: float, options) -> dict:
        """W_in and W_out normal with the configured std, b_in zero."""
        L, d = options["layers"], n_outputs(n_features, options)
        k = n_hidden // L
        in_key, out_key = jax.random.split(key)
        return {
            "W_in": std * jax.random.normal(in_key, (L, k, d)),
            "b_in": jnp.zeros((L, k)),
            "W_out": std * jax.random.normal(out_key, (L, d, k)),
        }

    return init


def _n_features(x, ops) -> int:
    return len(x) if ops.rows else x.shape[0]


def embedded(params, x, ops):
    """(E, r₀ = E_in x): the stream's start."""
    E = embedding(params["W_in"].shape[-1])
    return E, ops.matmul(E[:, : _n_features(x, ops)], x)


def layer_write(params, layer: int, r, ops):
    """(layer's units h, its write W_out h) on the stream r."""
    h = ops.apply(
        jax.nn.relu, ops.add_bias(ops.matmul(params["W_in"][layer], r), params["b_in"][layer])
    )
    return h, ops.matmul(params["W_out"][layer], h)


def forward(params, x, ops):
    E, r = embedded(params, x, ops)
    units = []
    for layer in range(params["W_in"].shape[0]):
        h, write = layer_write(params, layer, r, ops)
        r = ops.add(r, write)
        units.append(h)
    hidden = [row for unit in units for row in unit] if ops.rows else jnp.concatenate(units, axis=0)
    return ops.matmul(E.T, r), hidden


def forward_ablated(params, x_FxB, layer: int, write_D=None):
    """Dense outputs with ``layer``'s write replaced by the constant ``write_D`` (its mean over
    the data: mean-ablation), or by 0 when None."""
    E, r = embedded(params, x_FxB, DENSE)
    for ell in range(params["W_in"].shape[0]):
        _, write = layer_write(params, ell, r, DENSE)
        if ell == layer:
            write = (
                jnp.zeros_like(write)
                if write_D is None
                else jnp.broadcast_to(write_D[:, None], write.shape)
            )
        r = r + write
    return E.T @ r


def layer_writes(params, x_FxB):
    """Every layer's write on the unablated stream (L×d×B)."""
    _E, r = embedded(params, x_FxB, DENSE)
    writes = []
    for layer in range(params["W_in"].shape[0]):
        _, write = layer_write(params, layer, r, DENSE)
        r = r + write
        writes.append(write)
    return jnp.stack(writes)


def make_read_matrices(inputs_of):
    """Each layer's read vectors of the n input features, W_in[l]·E_in (L×k×n); ``inputs_of(d)``
    recovers n from the stream width d (a static shape)."""

    def read(params):
        W_in = params["W_in"]
        d = W_in.shape[-1]
        return W_in @ embedding(d)[:, : inputs_of(d)]

    return read


def make_features(read):
    def features(params):
        R = read(params)  # (…×)L×k×n: the store calls this on a chunk's stacked parameters
        return R.reshape(R.shape[:-3] + (-1, R.shape[-1]))  # layers stacked: m×n

    return features


def target_abs(x, importance_F, ops):
    return ops.apply(jnp.abs, x)


def target_groups(x, importance_F, ops):
    a = ops.apply(jnp.abs, x)
    n = _n_features(x, ops)
    if ops.rows:
        return a + [
            jax.nn.relu(sum(a[g * GROUP : (g + 1) * GROUP]) - 1.0) for g in range(n // GROUP)
        ]
    sums = jnp.sum(a[: n // GROUP * GROUP].reshape(n // GROUP, GROUP, -1), axis=1)
    return jnp.concatenate([a, jax.nn.relu(sums - 1.0)], axis=0)


def make_check(groups: bool):
    def check(n_features: int, n_hidden: int, options) -> None:
        L = options["layers"]
        if not isinstance(L, int) or isinstance(L, bool) or L < 1:
            raise ConfigError("model.options.layers", f"must be an integer >= 1, got {L!r}")
        if n_hidden % L:
            raise ConfigError(
                "model.options.layers",
                f"{L} layers must share the model.n_hidden={n_hidden} "
                "units equally (the total is fixed): choose a divisor",
            )
        if groups and n_features % GROUP:
            raise ConfigError(
                "model.n_features",
                f"group features take groups of {GROUP}: n_features must be "
                f"a multiple of {GROUP}, got {n_features}",
            )

    return check


_read_abs = make_read_matrices(lambda d: d)
_read_groups = make_read_matrices(
    lambda d: max(n for n in range(d + 1) if n_outputs_groups(n, {}) <= d)
)

RESIDUAL_MLP = ModelKind(
    name="residual_mlp",
    init=make_init(lambda n, options: n),
    forward=forward,
    target=target_abs,
    features=make_features(_read_abs),
    read_matrices=_read_abs,
    privileged=True,
    options={"layers": 1},
    check=make_check(groups=False),
    doc="r₀ = E x (fixed orthogonal E), r += W_out ReLU(W_in r + b_in) per layer, output Eᵀr, target |x|",
)
RESIDUAL_MLP_GROUPS = ModelKind(
    name="residual_mlp_groups",
    init=make_init(n_outputs_groups),
    forward=forward,
    target=target_groups,
    n_outputs=n_outputs_groups,
    importance_weighted=False,
    features=make_features(_read_groups),
    read_matrices=_read_groups,
    privileged=True,
    options={"layers": 1},
    check=make_check(groups=True),
    doc="the residual MLP with outputs |x_i| and ReLU(Σ_{i∈g}|x_i| − 1) over groups of 4",
)
