"""What SPD decomposes: a model written as a function of named weight matrices (docs/spd.md,
"Targets").

A ``Target`` is one frozen record: the matrices (``sites``) the decomposition replaces, how to read
them from a trained model's parameters (``weights``), and the model's forward pass written once
against a callback ``linear(site, a_IxB) -> O×B`` that applies matrix ``site`` to the activations
``a``. SPD calls the same forward pass with different callbacks: the trained weights (the
target's output, recording each site's input activations on the way), every site replaced by its
masked subcomponents (the stochastic reconstruction), or one site at a time (the layerwise one).
Everything else in the model (biases, fixed embeddings, non-linearities) stays as trained.

A site may be *tied* to another (``Site.tied_to``): its matrix is the other's transpose, as W and
Wᵀ in the tied TMS model x' = ReLU(WᵀWx + b). A tied site has no subcomponents of its own: it uses
the other site's, transposed (U Vᵀ)ᵀ = V Uᵀ, and the gradient of both uses reaches them. It keeps
its own causal-importance functions and masks (what is ablatable where W is read differs from
where Wᵀ is).

The ground truth the scores compare against: at each *scored* site, the matrix's response to each
feature's input direction D_j (``feature_inputs``: the identity for TMS's W, whose column j is
feature j's direction). Subcomponent c responds U_c (V_cᵀ D_j); the paper's MMCS and ML2R are the
cosine and the norm ratio of the two (``toymodels.spd.metrics``).

A new model to decompose is one ``Target`` built in one file (the compressed-computation residual
MLP of Braun et al. plugs in this way). Array names carry their shape: ``I`` a site's input
width, ``O`` its output width, ``F`` features, ``B`` batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from toymodels.data import DataSpec
from toymodels.models import residual
from toymodels.registry import ConfigError


@dataclasses.dataclass(frozen=True)
class Site:
    """One decomposed matrix: ``d_out`` × ``d_in``; ``tied_to``: the site whose transpose it is."""

    name: str
    d_out: int
    d_in: int
    tied_to: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """A model to decompose. Functions receive the target's arrays ``{"params": trained
    parameters, "density_F": feature probabilities}`` (one model; vmapped for many).

    - ``sites``: the decomposed matrices, in the order of the forward pass.
    - ``weights(arrays) -> {site: W_OxI}``: the trained matrices (a tied site's is the transpose).
    - ``forward(linear, arrays, x_FxB) -> out_OxB``: the model, with ``linear(site, a_IxB)``
      applying matrix ``site``.
    - ``data``: the input distribution (``toymodels.data``), drawn at ``arrays["density_F"]``.
    - ``scored``: the sites compared against the ground truth; ``feature_inputs(arrays) ->
      {site: D_IxF}`` gives each feature's input direction there.
    """

    name: str
    sites: tuple
    weights: Callable
    forward: Callable
    n_features: int
    data: DataSpec = DataSpec()
    scored: tuple = ()
    feature_inputs: Callable | None = None
    doc: str = ""

    def __post_init__(self):
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ConfigError(
                "spd.target", f"{self.name}: site names must be distinct, got {names}"
            )
        by_name = {s.name: s for s in self.sites}
        for s in self.sites:
            if s.tied_to is None:
                continue
            source = by_name.get(s.tied_to)
            if source is None or source.tied_to is not None:
                raise ConfigError(
                    "spd.target",
                    f"{self.name}: site {s.name!r} is tied to {s.tied_to!r}, "
                    "which must be an untied site of the same target",
                )
            if (source.d_out, source.d_in) != (s.d_in, s.d_out):
                raise ConfigError(
                    "spd.target",
                    f"{self.name}: tied site {s.name!r} must be the transpose of "
                    f"{s.tied_to!r} ({source.d_in}×{source.d_out})",
                )
        for name in self.scored:
            if name not in by_name:
                raise ConfigError(
                    "spd.target", f"{self.name}: scored site {name!r} is not one of {names}"
                )

    def site(self, name: str) -> Site:
        return next(s for s in self.sites if s.name == name)

    @property
    def owned(self) -> tuple:
        """The sites that own subcomponents (every untied site)."""
        return tuple(s for s in self.sites if s.tied_to is None)

    @property
    def n_weights(self) -> int:
        """N of the faithfulness loss: the number of decomposed weights, every site counted."""
        return sum(s.d_out * s.d_in for s in self.sites)

    def output(self, arrays, x_FxB):
        """The trained model's output, and every site's input activations on the way."""
        W = self.weights(arrays)
        acts = {}

        def linear(site, a_IxB):
            acts[site] = a_IxB
            return W[site] @ a_IxB

        return self.forward(linear, arrays, x_FxB), acts


# --- targets of the toy models (``toymodels.models``) ------------------------------------------------


def tms(
    n_features: int, n_hidden: int, identity: bool = False, data: DataSpec = DataSpec()
) -> Target:
    """The tied TMS model x' = ReLU(WᵀWx + b) of kind ``relu`` (params ``W`` m×n, ``b``): sites
    ``W`` (n → m) and ``W_T`` (its transpose, tied). ``identity``: the paper's TMS+ID, x' =
    ReLU(Wᵀ I W x + b) with a fixed m×m identity ``I`` between them, decomposed too. Training
    with a fixed identity is training without it, so one trained ``relu`` model serves both.
    Scored: ``W`` against the identity (its column j is feature j's direction), as in the paper's
    Table 1."""
    m, n = n_hidden, n_features
    sites = (
        [Site("W", m, n)]
        + ([Site("I", m, m)] if identity else [])
        + [Site("W_T", n, m, tied_to="W")]
    )

    def weights(arrays):
        W = arrays["params"]["W"]
        return {"W": W, "W_T": W.T, **({"I": jnp.eye(m, dtype=W.dtype)} if identity else {})}

    def forward(linear, arrays, x_FxB):
        h = linear("W", x_FxB)
        if identity:
            h = linear("I", h)
        return jax.nn.relu(linear("W_T", h) + arrays["params"]["b"][:, None])

    def feature_inputs(arrays):
        return {"W": jnp.eye(n)}

    return Target(
        name="tms_id" if identity else "tms",
        sites=tuple(sites),
        weights=weights,
        forward=forward,
        n_features=n,
        data=data,
        scored=("W",),
        feature_inputs=feature_inputs,
        doc="x' = ReLU(Wᵀ[I]Wx + b): W and its tied transpose (and a fixed identity)",
    )


def residual_mlp(
    n_features: int, n_hidden: int, layers: int, data: DataSpec = DataSpec(kind="signed")
) -> Target:
    """Our ``residual_mlp`` kind (``toymodels.models.residual``): r₀ = E x with the fixed
    orthogonal E, L layers r += W_out ReLU(W_in r + b_in), output Eᵀr. Sites ``W_in.l`` (k×d) and
    ``W_out.l`` (d×k) of every layer; scored: every ``W_in.l`` against the features' stream
    directions E_j (the direction feature j alone puts on the stream before any layer writes)."""
    d, k = n_features, n_hidden // layers
    sites = []
    for layer in range(layers):
        sites += [Site(f"W_in.{layer}", k, d), Site(f"W_out.{layer}", d, k)]

    def weights(arrays):
        p = arrays["params"]
        return {
            **{f"W_in.{i}": p["W_in"][i] for i in range(layers)},
            **{f"W_out.{i}": p["W_out"][i] for i in range(layers)},
        }

    def forward(linear, arrays, x_FxB):
        E = residual.embedding(d)
        r = E[:, :n_features] @ x_FxB
        for i in range(layers):
            h = jax.nn.relu(linear(f"W_in.{i}", r) + arrays["params"]["b_in"][i][:, None])
            r = r + linear(f"W_out.{i}", h)
        return E.T @ r

    def feature_inputs(arrays):
        E_in = residual.embedding(d)[:, :n_features]
        return {f"W_in.{i}": E_in for i in range(layers)}

    return Target(
        name=f"residual_mlp{layers}",
        sites=tuple(sites),
        weights=weights,
        forward=forward,
        n_features=n_features,
        data=data,
        scored=tuple(f"W_in.{i}" for i in range(layers)),
        feature_inputs=feature_inputs,
        doc="residual MLP: W_in and W_out of every layer",
    )
