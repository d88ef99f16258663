"""What an SAE kind is, and the pieces every kind shares.

A kind (``SaeKind``) is one frozen record: its extra parameters, how it encodes activations into
codes, and the loss terms it adds to the reconstruction error. Everything else (the decoder, the
optimiser, the optional orthogonality penalty and dead-latent resampling, the evaluation) is the
same for every kind and lives in ``toymodels.sae.train``. Written for one SAE and one batch;
vmap over SAEs.

Array names carry their shape: ``H`` hidden (the activations' dimension), ``D`` dictionary
(latents), ``B`` batch, ``K`` a static maximum of k. Parameter names end in their shape
(``W_enc_DxH``), which is how dead-latent resampling finds each one's latent axis.

Every kind keeps unit-norm decoder columns by parametrisation: the decoder is ``V / ‖V_j‖``
column-wise, so it is unit-norm at every step without a projection after the optimiser, and no
sparsity penalty can be dodged by shrinking codes while growing columns. A kind that trains a
free-norm decoder V (JumpReLU; plain and gated with ``decoder=free``; BatchTopK and Matryoshka
with ``codes=scaled``) multiplies each code by ‖v_j‖ instead: the reconstruction is then V z +
b_dec, and the stored W_dec stays unit-norm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import jax
import jax.numpy as jnp

from toymodels.sae.hyperparams import HyperParam

if TYPE_CHECKING:
    from toymodels.sae.train import SaeHParams, SaeSpec

Params = dict  # name (ending in its shape letters) -> array
Aux = dict  # name -> array: what a kind's encoder hands its loss terms and state update

# The callables of a kind, typed (a type checker checks a user's kind against them). ``hp`` holds
# one SAE's hyperparameters (``SaeHParams``: one value per SAE, vmapped), ``spec`` the chunk's
# static ones (``SaeSpec``).


class SaeInitFn(Protocol):
    def __call__(
        self, key: jax.Array, n_hidden: int, dict_size: int, spec: SaeSpec, hp: SaeHParams
    ) -> Params:
        """The kind's parameters beyond the shared ones (``shared_params``)."""
        ...


class EncodeFn(Protocol):
    def __call__(
        self, params: Params, h_HxB: jax.Array, hp: SaeHParams, spec: SaeSpec, training: bool
    ) -> tuple[jax.Array, Aux]:
        """(codes f, D×B; what the loss terms need). ``training`` is static."""
        ...


class SaeTermsFn(Protocol):
    def __call__(
        self,
        params: Params,
        h_HxB: jax.Array,
        f_DxB: jax.Array,
        aux: Aux,
        hp: SaeHParams,
        spec: SaeSpec,
    ) -> dict[str, jax.Array]:
        """Named scalar terms added to the reconstruction error."""
        ...


class UpdateStateFn(Protocol):
    def __call__(self, params: Params, aux: Aux, spec: SaeSpec) -> Params:
        """The parameters with their untrained, tracked values updated after a step."""
        ...


class Source(Protocol):
    """Where an SAE's activations come from: a synthetic world (``toymodels.sae.worlds.WorldSource``,
    ``toymodels.sae.saelens.SaelensSource``) or a trained toy model (``toymodels.sae.toy.ToySource``).
    The source is static (it shapes the compiled program); ``arrays`` are its per-source arrays (a
    world's directions, a toy model's parameters), vmapped when each SAE has its own."""

    @property
    def n_features(self) -> int: ...

    @property
    def n_hidden(self) -> int:
        """h's dimension, the SAE's input."""
        ...

    @property
    def n_true(self) -> int:
        """How many true features the scores match latents against."""
        ...

    @property
    def has_hierarchy(self) -> bool: ...

    def stream(self, key: jax.Array, /) -> jax.Array:
        """The random words every batch of a training run is drawn from."""
        ...

    def draw(self, arrays: Any, words: jax.Array, t: Any, batch_size: int, /) -> jax.Array:
        """Batch ``t``'s packed uniforms."""
        ...

    def inputs(self, arrays: Any, packed: jax.Array, /) -> tuple[jax.Array, jax.Array]:
        """(true features' activity, h: n_hidden×B) from ``draw``'s uniforms."""
        ...

    def truth(self, arrays: Any, /) -> jax.Array:
        """The true features' directions in h (n_hidden × n_true)."""
        ...

    def represented(self, arrays: Any, /) -> jax.Array:
        """Which true features h represents (bool, n_true)."""
        ...

    def parents(self, arrays: Any, /) -> jax.Array: ...

    def pairs(self, arrays: Any, /) -> jax.Array: ...


@dataclasses.dataclass(frozen=True, eq=False)
class SaeKind:
    """One SAE kind. Functions receive the parameter dict, per-SAE hyperparameters ``hp``
    (``toymodels.sae.train.SaeHParams``: ``hp.<name>`` for each of ``hparams``) and the static
    ``spec`` (``SaeSpec``; a static hyperparameter is ``spec.option(name)``).

    - ``init(key, n_hidden, dict_size, spec, hp) -> params``: the kind's parameters beyond the
      shared ones (``shared_params``); default none.
    - ``encode(params, h_HxB, hp, spec, training) -> (f_DxB, aux)``: the codes, and whatever the
      loss terms need (a dict; ``aux["pre"]``, the pre-activations, is what AuxK ranks dead
      latents by). ``training`` is static: kinds whose codes depend on the whole batch
      (BatchTopK) encode each input alone at evaluation.
    - ``loss_terms(params, h_HxB, f_DxB, aux, hp, spec) -> dict``: named terms added to the
      reconstruction error ‖h − ĥ‖² (mean over the batch).
    - ``update_state(params, aux, spec) -> params``: applied after every optimiser step: values
      tracked rather than trained (BatchTopK's inference threshold) or projections (JumpReLU's
      θ ≥ 0); default none.
    - ``hparams``: the kind's own hyperparameters (``HyperParam``): their defaults, allowed
      values, whether per SAE or static, which one is its sparsity setting. The sweep config,
      planner, stored columns and figures read them.
    - ``top_k``: the kind selects its k largest codes, so it needs ``spec.k_max``.
    - ``init_scale``: the norm of the initial decoder columns V and of the encoder rows tied to
      them (the decoder itself is V/‖V‖ whatever the scale; a kind that reads ‖V‖ into its codes,
      JumpReLU, starts small, as SAELens's 0.1), or a function of (spec, hp) giving it (plain
      and gated: 0.1 with ``decoder=free``, 1 with ``unit``; BatchTopK and Matryoshka: their
      per-SAE ``hp.init_norm``, ``kinds.declared_init_norm``).
    """

    name: str
    encode: Callable
    loss_terms: Callable = lambda params, h_HxB, f_DxB, aux, hp, spec: {}
    init: Callable = lambda key, n_hidden, dict_size, spec, hp: {}
    update_state: Callable = lambda params, aux, spec: params
    hparams: tuple = ()
    top_k: bool = False
    init_scale: float | Callable = 1.0
    doc: str = ""

    def __post_init__(self):
        names = [h.name for h in self.hparams]
        if not all(isinstance(h, HyperParam) for h in self.hparams) or len(set(names)) != len(
            names
        ):
            raise ValueError(
                f"SAE kind {self.name!r}: hparams must be distinct HyperParam objects, "
                f"got {self.hparams!r}"
            )
        if self.top_k and "k" not in names:
            raise ValueError(f"SAE kind {self.name!r} is top_k but declares no hyperparameter 'k'")

    def hparam(self, name: str) -> HyperParam | None:
        return next((h for h in self.hparams if h.name == name), None)

    def initial_scale(self, spec, hp):
        """``init_scale`` for ``spec`` and one SAE's hyperparameters ``hp``."""
        return self.init_scale(spec, hp) if callable(self.init_scale) else self.init_scale

    @property
    def sparsity(self) -> HyperParam | None:
        """The hyperparameter that sets how sparse the kind's codes are (λ, k), if any."""
        return next((h for h in self.hparams if h.sparsity), None)


def shared_params(key: jax.Array, n_hidden: int, dict_size: int, scale: float = 1.0) -> Params:
    """Random decoder directions of norm ``scale``, the encoder tied to them at the start, zero biases."""
    V_HxD = jax.random.normal(key, (n_hidden, dict_size))
    V_HxD = scale * V_HxD / jnp.linalg.norm(V_HxD, axis=0, keepdims=True)
    return {
        "W_enc_DxH": V_HxD.T,
        "b_enc_D": jnp.zeros((dict_size,)),
        "V_HxD": V_HxD,
        "b_dec_H": jnp.zeros((n_hidden,)),
    }


def decoder(params: Params) -> jax.Array:
    """Unit-norm decoder columns W_dec = V / ‖V_j‖ (H×D)."""
    V_HxD = params["V_HxD"]
    return V_HxD / jnp.linalg.norm(V_HxD, axis=0, keepdims=True)


def decode(params: Params, f_DxB: jax.Array) -> jax.Array:
    return decoder(params) @ f_DxB + params["b_dec_H"][:, None]


def projection(params: Params, h_HxB: jax.Array, spec: SaeSpec | None = None) -> jax.Array:
    """W_enc (h − b_dec), D×B: what every kind's encoder starts from. With ``spec.fold_b_dec``,
    W_enc h − W_enc b_dec: the same function in other rounding, whose gradient in b_dec is a
    D-vector's product (−W_encᵀ Σ_b ∂pre) rather than a D×B one (docs/results/sae-bench.md)."""
    W_enc_DxH, b_dec_H = params["W_enc_DxH"], params["b_dec_H"]
    if spec is not None and spec.fold_b_dec:
        return W_enc_DxH @ h_HxB - (W_enc_DxH @ b_dec_H)[:, None]
    return W_enc_DxH @ (h_HxB - b_dec_H[:, None])


def pre_activation(params: Params, h_HxB: jax.Array, spec: SaeSpec | None = None) -> jax.Array:
    """W_enc (h − b_dec) + b_enc (``projection``; ``spec`` None: as ``fold_b_dec`` off)."""
    return projection(params, h_HxB, spec) + params["b_enc_D"][:, None]


def squared_error(h_HxB: jax.Array, hhat_HxB: jax.Array) -> jax.Array:
    """‖h − ĥ‖² summed over hidden dims, mean over the batch."""
    return jnp.mean(jnp.sum((h_HxB - hhat_HxB) ** 2, axis=0))


def l1_of(a_DxB: jax.Array) -> jax.Array:
    """Mean over the batch of Σ_j a_j (a ≥ 0)."""
    return jnp.mean(jnp.sum(a_DxB, axis=0))


def latent_axis(name: str) -> int | None:
    """The latent (D) axis of a parameter from its name's shape suffix, or None."""
    dims = name.rsplit("_", 1)[-1].split("x")
    return dims.index("D") if "D" in dims else None


# --- top-k selection with a per-SAE k under a static maximum ------------------------------------


def example_top_k_mask(pre_DxB: jax.Array, k: jax.Array, k_max: int) -> jax.Array:
    """Per input, the latents among its k largest positive pre-activations (bool D×B).

    ``lax.top_k`` needs a static count, so it takes the ``k_max`` largest and the k-th of them
    (k traced, per SAE) is each input's threshold: one compiled program serves any k ≤ k_max."""
    values_BxK, _ = jax.lax.top_k(pre_DxB.T, k_max)
    threshold_B = jnp.take(values_BxK, k - 1, axis=1)
    return (pre_DxB >= threshold_B[None, :]) & (pre_DxB > 0)


def kth_largest(values: jax.Array, k: jax.Array) -> jax.Array:
    """The k-th largest of non-negative ``values`` (any shape; k traced, ≥ 1), exactly: a bisection
    over float bit patterns, which non-negative floats order as their int32 values do. 31 fused
    counts over the array, where ``lax.top_k`` of k·B values sorts it (~4x slower on CPU)."""
    bits = jax.lax.bitcast_convert_type(values, jnp.int32)

    def halve(_, bounds):  # the answer's bits lie in [lo, hi]
        lo, hi = bounds
        mid = lo + (hi - lo + 1) // 2
        enough = jnp.sum(bits >= mid) >= k
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid - 1)

    lo, _ = jax.lax.fori_loop(0, 31, halve, (jnp.int32(0), jnp.int32(0x7F800000)))
    return jax.lax.bitcast_convert_type(lo, values.dtype)


def batch_top_k_mask(pre_DxB: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The k·B largest positive pre-activations of the whole batch (BatchTopK, Bussmann et al.
    2024): bool D×B, and the smallest kept value (the batch's threshold; 0 when fewer than k·B
    are positive, which keeps them all)."""
    threshold = kth_largest(jax.nn.relu(pre_DxB), k * pre_DxB.shape[1])
    return (pre_DxB >= threshold) & (pre_DxB > 0), threshold


# --- JumpReLU with straight-through threshold gradients (Rajamanoharan et al. 2024) --------------


def _rectangle(u):
    """The rectangle kernel K(u) = 1[|u| < ½] of the pseudo-derivatives."""
    return (jnp.abs(u) < 0.5).astype(u.dtype)


@jax.custom_vjp
def jump_relu(z, threshold, bandwidth):
    """z · H(z − θ). Its gradient in z is the exact H(z − θ); in θ the paper's pseudo-derivative
    −(θ/ε) K((z − θ)/ε) (eq. 11), since the true one is a Dirac delta."""
    return z * (z > threshold)


def _jump_relu_fwd(z, threshold, bandwidth):
    return jump_relu(z, threshold, bandwidth), (z, threshold, bandwidth)


def _jump_relu_bwd(res, g):
    z, threshold, bandwidth = res
    d_threshold = -(threshold / bandwidth) * _rectangle((z - threshold) / bandwidth) * g
    return g * (z > threshold), _sum_to(d_threshold, threshold), jnp.zeros_like(bandwidth)


jump_relu.defvjp(_jump_relu_fwd, _jump_relu_bwd)


@jax.custom_vjp
def step(z, threshold, bandwidth):
    """H(z − θ), the L0 count of a JumpReLU SAE. No gradient in z; in θ the pseudo-derivative
    −(1/ε) K((z − θ)/ε) (eq. 12)."""
    return (z > threshold).astype(z.dtype)


def _step_fwd(z, threshold, bandwidth):
    return step(z, threshold, bandwidth), (z, threshold, bandwidth)


def _step_bwd(res, g):
    z, threshold, bandwidth = res
    d_threshold = -(1.0 / bandwidth) * _rectangle((z - threshold) / bandwidth) * g
    return jnp.zeros_like(z), _sum_to(d_threshold, threshold), jnp.zeros_like(bandwidth)


step.defvjp(_step_fwd, _step_bwd)


def _sum_to(grad, like):
    """Reduce a broadcast gradient back to the shape of ``like`` (θ is D×1 against z's D×B)."""
    while grad.ndim > like.ndim:
        grad = grad.sum(axis=0)
    axes = tuple(i for i, (g, s) in enumerate(zip(grad.shape, like.shape)) if s == 1 and g != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad
