"""A trained toy model as a source of activations: its own data kind through its own forward pass
(issue 15 item 2, issue 16 item 1).

Each step draws x from the toy model's data distribution (``toymodels.data.sample_batch`` with
its ``DataSpec``: kind, set size, magnitude, rest scale) and takes the hidden activations of the
model's own forward pass (``toymodels.models.forward_with_hidden``): h = W x for the tied models,
ReLU(W x) for ``relu_hidden`` and ``abs``, whatever a user's kind computes.

**The true directions** are the hidden response to each feature alone, h(e_i) − h(0): W_i for
the tied models, ReLU(W_i) for ``relu_hidden``. A *signed* data kind (``signed``, ``kurtosis``)
gives each feature a second response, h(−e_i) − h(0) (−W_i, or ReLU(−W_i)): an SAE's codes are
non-negative, so x_i < 0 needs its own latent even where the two directions are opposite. We
therefore score signed data against 2n true features, (i, +) firing where x_i > 0 and (i, −)
where x_i < 0, in that order. Responses are to unit inputs; the built-in hidden layers have no
bias and are positively homogeneous, so the direction does not depend on the input's size.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from toymodels import rng
from toymodels.data import DATA, DataSpec, draw, from_uniforms, uniform_rows
from toymodels.models import forward_with_hidden, init_params

# A true direction shorter than this is not represented by the toy model: nothing to recover.
REPRESENTED_NORM = 0.1


def param_names(model: str, n_features: int, n_hidden: int) -> tuple[str, ...]:
    """The names of the model kind's parameters (the stored sweep's columns of the same names)."""
    return tuple(sorted(init_params(jax.random.key(0), n_features, n_hidden, 1.0, model)))


@dataclasses.dataclass(frozen=True)
class ToySource:
    """A toy model of kind ``model`` on data ``data``; its arrays are ``{"params": {...},
    "density_F": ...}`` (one model, or one per SAE when vmapped)."""

    model: str
    data: DataSpec
    n_features: int
    n_hidden: int

    @property
    def signed(self) -> bool:
        return DATA.get(self.data.kind).signed

    @property
    def n_true(self) -> int:
        return 2 * self.n_features if self.signed else self.n_features

    has_hierarchy = False

    def stream(self, key: jax.Array) -> jax.Array:
        return rng.key_words(key)

    def draw(self, arrays, words, t, batch_size: int) -> jax.Array:
        """The packed uniforms of batch ``t`` of the stream (``toymodels.data.draw``)."""
        return draw(self.data, words, jnp.asarray(t, jnp.uint32), self.n_features, batch_size)

    def inputs(self, arrays, packed) -> tuple[jax.Array, jax.Array]:
        """The true features' activity (n or 2n × B, ≥ 0) and h (m×B) from ``draw``'s uniforms:
        ``toymodels.data.sample_batch`` of the stream, bit for bit."""
        u_RxB = rng.unpack(packed, uniform_rows(self.data, self.n_features))
        x_FxB = from_uniforms(self.data, u_RxB, arrays["density_F"])
        _, h_HxB = forward_with_hidden(arrays["params"], x_FxB, self.model)
        if self.signed:
            return jnp.concatenate([jax.nn.relu(x_FxB), jax.nn.relu(-x_FxB)]), h_HxB
        return x_FxB, h_HxB

    def sample(self, arrays, words, t, batch_size: int) -> tuple[jax.Array, jax.Array]:
        return self.inputs(arrays, self.draw(arrays, words, t, batch_size))

    def truth(self, arrays) -> jax.Array:
        """h(±e_i) − h(0) for every feature (m × n_true)."""
        eye_FxF = jnp.eye(self.n_features)
        inputs = [eye_FxF, -eye_FxF] if self.signed else [eye_FxF]
        h0_Hx1 = forward_with_hidden(arrays["params"], jnp.zeros((self.n_features, 1)), self.model)[
            1
        ]
        return jnp.concatenate(
            [forward_with_hidden(arrays["params"], x, self.model)[1] - h0_Hx1 for x in inputs],
            axis=1,
        )

    def represented(self, arrays) -> jax.Array:
        return jnp.linalg.norm(self.truth(arrays), axis=0) >= REPRESENTED_NORM

    def parents(self, arrays):
        return None

    def pairs(self, arrays) -> jax.Array:
        return jnp.zeros((0, 2), jnp.int32)
