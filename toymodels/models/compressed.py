"""The compressed-computation residual MLP (Braun et al. 2025, the APD paper; reused by the SPD
paper). Science and derivations: docs/science/compressed-computation.md.

n features x (signed: U[−1, 1] when active, the ``signed`` data kind) are embedded in a residual
stream of width d by a fixed random W_E (n×d, unit-norm rows, never trained), r₀ = W_Eᵀx; each of
L layers adds W_out ReLU(W_in r) (k = m/L neurons each, no biases); the output is read out by
W_U = W_Eᵀ: ŷ = W_E r_L. With M = W_E W_Eᵀ (n×n, unit diagonal):

    ŷ = M x + Σ_l B_l h_l,   h_l = ReLU(A_l x + Σ_{j<l} C_lj h_j),
    A_l = W_in[l] W_Eᵀ (k×n),  B_l = W_E W_out[l] (n×k),  C_lj = W_in[l] W_out[j] (k×k),

exactly (associativity): the program never forms a d-dimensional activation, so a step costs
O(batch·m·(n + m)) plus O(d·m·(n + m)) for the products above, not O(batch·d·(n + m)).

Options (static: ``model.options.<name>`` or a grid axis ``+sweep.grid.<name>=[...]``):

- ``layers`` L (1): must divide m (``model.n_hidden``). The papers: 1 layer of 50, 2 of 25, 3 of 17
  (n = 102).
- ``d_embed`` d (1000): the residual width, ≥ n. The mixing M − I shrinks as d grows (its
  off-diagonal entries have variance ≈ 1/d).
- ``embed_seed`` (0): W_E is drawn from numpy's generator with this seed (``embedding``): the same
  W_E for every model and seed of a sweep (the papers' code draws one per training seed); sweep
  it to vary W_E.
- ``labels`` ("embed"): what the model is trained to output.
  ``embed``: y = x + ReLU(x) (the papers), so the MLP must output ReLU(x) − (M − I)x: the residual
  stream's mixing is in the labels. ``clean``: y = M x + ReLU(x), the residual's own output plus
  ReLU(x): the MLP must output ReLU(x) alone. ``mixing``: y = M x + ReLU(x) − S x with S a fixed
  random symmetric matrix with zero diagonal and ‖S‖_F = ‖M − I‖_F (``mixing_matrix``): explicit
  mixing of the same size, not made by the embedding.
- ``param`` ("stream"): what Adam trains. ``stream``: W_in (L×k×d) and W_out (L×d×k), as the
  papers. ``effective``: A (L×k×n), B (L×n×k) and, for L > 1, C (L×L×k×k, used below the
  diagonal) directly: the same function class (d ≥ n + m) and the same initial function, but
  Adam's per-coordinate steps differ, so training dynamics differ (Bhagat et al.'s simplified
  model is ``effective`` at L = 1). Measured in the results page.

Initialisation follows the papers' code (torch ``nn.Linear``): W_in ~ U(±1/√d), W_out ~ U(±1/√k);
``effective`` starts from the projections of those same draws, so both start at the same function.
``model.init`` is not used. Parameters are stored under these names; ``W`` (the metrics' feature
directions) is the stacked A (m×n): how each neuron reads each feature.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.models.base import ModelKind
from toymodels.registry import ConfigError

LABELS = ("embed", "clean", "mixing")
PARAMS = ("stream", "effective")
OPTIONS = {"layers": 1, "d_embed": 1000, "embed_seed": 0, "labels": "embed", "param": "stream"}
MIXING_STREAM = 1  # S is drawn from the generator seeded (embed_seed, 1): independent of W_E


@functools.lru_cache(maxsize=16)
def _embedding64(n: int, d: int, seed: int) -> np.ndarray:
    W = np.random.default_rng(seed).normal(size=(n, d))
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def embedding(n: int, d: int, seed: int = 0) -> np.ndarray:
    """W_E (n×d, float32): row i is feature i's unit direction in the stream, Gaussian then
    normalised (the papers' draw), from numpy's generator seeded ``seed``."""
    return _embedding64(n, d, seed).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _mixing64(n: int, d: int, seed: int, labels: str) -> np.ndarray:
    if labels == "clean":
        return np.zeros((n, n))
    W = _embedding64(n, d, seed)
    N = W @ W.T
    np.fill_diagonal(N, 0.0)
    if labels == "embed":
        return N
    G = np.random.default_rng((seed, MIXING_STREAM)).normal(size=(n, n))
    S = np.triu(G, 1) + np.triu(G, 1).T
    return S * (np.linalg.norm(N) / np.linalg.norm(S))


def mixing_matrix(n: int, d: int, seed: int = 0, labels: str = "embed") -> np.ndarray:
    """N (n×n, float64, symmetric, zero diagonal): the MLP's task is y_eff = ReLU(x) − N x.
    ``embed``: M − I; ``clean``: 0; ``mixing``: S, a symmetric Gaussian matrix with zero diagonal
    scaled to ‖S‖_F = ‖M − I‖_F (drawn with seed (embed_seed, 1))."""
    return _mixing64(n, d, seed, labels).copy()


def _stack(x, ops):
    return jnp.stack(x) if ops.rows else x


def _unstack(x, ops):
    return [x[i] for i in range(x.shape[0])] if ops.rows else x


def _below(L: int):
    return jnp.tril(jnp.ones((L, L)), -1)


@dataclasses.dataclass(frozen=True, eq=False)
class Constants:
    """The fixed matrices of one (n, options): W_E (n×d), M = W_E W_Eᵀ and the label mixing N."""

    W_E: np.ndarray
    M: np.ndarray
    N: np.ndarray

    @staticmethod
    def of(n: int, options) -> Constants:
        W = _embedding64(n, options["d_embed"], options["embed_seed"])
        N = mixing_matrix(n, options["d_embed"], options["embed_seed"], options["labels"])
        return Constants(W.astype(np.float32), (W @ W.T).astype(np.float32), N.astype(np.float32))


def reduced(params: dict, options, W_E=None) -> dict:
    """The stream's reduced maps {A: L×k×n, B: L×n×k, and for L > 1 C: L×L×k×k with
    C[l, j] = W_in[l] W_out[j] below the diagonal, zero elsewhere} of either parameterisation
    (the module docstring). ``W_E`` (n×d) is needed for ``stream``. Works on stacked parameters
    (leading model axes) too."""
    if options["param"] == "effective":
        out = {"A": params["A"], "B": params["B"]}
        if "C" in params:
            out["C"] = params["C"] * _below(params["C"].shape[-3])[:, :, None, None]
        return out
    W_in, W_out = params["W_in"], params["W_out"]  # (…, L, k, d), (…, L, d, k)
    E = jnp.asarray(W_E)
    out = {"A": W_in @ E.T, "B": E @ W_out}
    L = W_in.shape[-3]
    if L > 1:
        C = jnp.einsum("...lkd,...jdq->...ljkq", W_in, W_out)
        out["C"] = C * _below(L)[:, :, None, None]
    return out


def make_forward(consts: Constants, options):
    def forward(params, x, ops):
        """(ŷ = M x + Σ_l B_l h_l, the neurons h of every layer stacked)."""
        x = _stack(x, ops)
        R = reduced(params, options, consts.W_E)
        A, B = R["A"], R["B"]
        hs: list[jax.Array] = []
        for ell in range(A.shape[0]):
            pre = A[ell] @ x
            for j in range(ell):
                pre = pre + R["C"][ell, j] @ hs[j]
            hs.append(jax.nn.relu(pre))
        out = jnp.asarray(consts.M) @ x + sum(B[ell] @ h for ell, h in enumerate(hs))
        return _unstack(out, ops), _unstack(jnp.concatenate(hs, axis=0), ops)

    return forward


def make_target(consts: Constants, options):
    def target(x, importance_F, ops):
        """embed: x + ReLU(x); clean: M x + ReLU(x); mixing: M x + ReLU(x) − S x."""
        x = _stack(x, ops)
        relu = jax.nn.relu(x)
        if options["labels"] == "embed":
            return _unstack(x + relu, ops)
        y = jnp.asarray(consts.M) @ x + relu
        if options["labels"] == "mixing":
            y = y - jnp.asarray(consts.N) @ x
        return _unstack(y, ops)

    return target


def init(key, n_features: int, n_hidden: int, std: float, options) -> dict:
    """torch nn.Linear's default draws (the papers' code): W_in ~ U(±1/√d), W_out ~ U(±1/√k);
    ``effective`` keeps their projections A, B, C (the same initial function). ``std`` (the
    configured ``model.init``) is not used."""
    L, d = options["layers"], options["d_embed"]
    k = n_hidden // L
    in_key, out_key = jax.random.split(key)
    W_in = jax.random.uniform(in_key, (L, k, d), minval=-1.0, maxval=1.0) / np.sqrt(d)
    W_out = jax.random.uniform(out_key, (L, d, k), minval=-1.0, maxval=1.0) / np.sqrt(k)
    params = {"W_in": W_in, "W_out": W_out}
    if options["param"] == "stream":
        return params
    return reduced(
        params, {**options, "param": "stream"}, embedding(n_features, d, options["embed_seed"])
    )


def check(n_features: int, n_hidden: int, options) -> None:
    L, d, seed = options["layers"], options["d_embed"], options["embed_seed"]
    for key, value in (("layers", L), ("d_embed", d)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"model.options.{key}", f"must be an integer >= 1, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("model.options.embed_seed", f"must be an integer >= 0, got {seed!r}")
    if n_hidden % L:
        raise ConfigError(
            "model.options.layers",
            f"{L} layers must share the model.n_hidden={n_hidden} neurons "
            "equally: choose a divisor",
        )
    if d < n_features:
        raise ConfigError(
            "model.options.d_embed",
            f"must be at least model.n_features={n_features} (each feature "
            f"its own independent direction in the stream), got {d}",
        )
    if options["labels"] not in LABELS:
        raise ConfigError(
            "model.options.labels",
            f"{options['labels']!r} is not allowed; choose one of {', '.join(LABELS)}",
        )
    if options["param"] not in PARAMS:
        raise ConfigError(
            "model.options.param",
            f"{options['param']!r} is not allowed; choose one of {', '.join(PARAMS)}",
        )


def bind(kind: ModelKind, n_features: int, n_hidden: int, options) -> ModelKind:
    """The kind specialised to one shape and its options: its forward, target and feature
    directions close over W_E, M and N."""
    consts = Constants.of(n_features, options)

    def read(params):
        return reduced(params, options, consts.W_E)["A"]  # (…×)L×k×n

    def features(params):
        A = read(params)
        return A.reshape(A.shape[:-3] + (-1, A.shape[-1]))

    return dataclasses.replace(
        kind,
        forward=make_forward(consts, options),
        target=make_target(consts, options),
        features=features,
        read_matrices=read,
        bind=None,
    )


def _unbound(*args, **kwargs):
    raise TypeError(
        "cc_residual needs its options: use toymodels.models.bind_kind(kind, n, m, options)"
    )


CC_RESIDUAL = ModelKind(
    name="cc_residual",
    init=init,
    forward=_unbound,
    target=_unbound,
    features=_unbound,
    privileged=True,
    options=OPTIONS,
    check=check,
    bind=bind,
    doc="compressed computation (Braun et al.): r₀ = W_Eᵀx (fixed random unit rows, d = d_embed), L layers "
    "r += W_out ReLU(W_in r), output W_E r, target x + ReLU(x) (labels: embed | clean | mixing)",
)
