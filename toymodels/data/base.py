"""What a data kind is (docs/science/models.md), and the static description of one input distribution.

Every kind turns counter-based uniforms (``toymodels.rng``) into a feature-major batch: one
uniform per feature, plus ``extra_rows`` more per example for kinds that draw per set. An
*elementwise* kind makes each feature from its own uniform alone, by ``value``: with u ~ U[0, 1),
``u < p`` has probability p and, given it, v = u / p is U[0, 1), so one draw decides activity and
gives the magnitude (the notebook's two-draw distribution with half the random bits, which
dominate CPU time for tiny models). Elementwise kinds also run in the unrolled rows form of tiny
models. Other kinds build the whole batch with ``batch``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import jax
import numpy as np

from toymodels.registry import ConfigError, frozen_options


# The callables of a kind, typed (a type checker checks a user's kind against them).
class ValueFn(Protocol):
    def __call__(self, v: jax.Array, p: jax.Array, spec: DataSpec) -> jax.Array:
        """An active feature's value from v ~ U[0, 1) at density p (broadcast)."""
        ...


class BatchFn(Protocol):
    def __call__(self, u_RxB: jax.Array, density_F: jax.Array, spec: DataSpec) -> jax.Array:
        """The F×B inputs from ``uniform_rows`` uniforms per example."""
        ...


class ExtraRowsFn(Protocol):
    def __call__(self, n_features: int, spec: DataSpec) -> int: ...


class KurtosisFn(Protocol):
    def __call__(self, spec: DataSpec, density_F: Any) -> np.ndarray:
        """Each feature's E[x⁴]/E[x²]²."""
        ...


class DataCheckFn(Protocol):
    def __call__(self, spec: DataSpec, n_features: int) -> None:
        """Raise ``ConfigError`` naming the key for a setting the kind cannot draw."""
        ...


class WeightsFn(Protocol):
    def __call__(self, u_RxB: jax.Array, density_F: jax.Array, spec: DataSpec) -> jax.Array:
        """Per-entry loss weights (F×B) from the same uniforms as the batch."""
        ...


@dataclasses.dataclass(frozen=True, eq=False)
class DataKind:
    """One data kind.

    - ``value(v, p, spec)``: an elementwise kind's value of an active feature from v ~ U[0, 1)
      at density p (broadcast); None for a kind that builds whole batches.
    - ``batch(u_RxB, density_F, spec)``: the F×B inputs from ``uniform_rows`` uniforms per example
      (kinds that are not elementwise).
    - ``extra_rows(n_features, spec)``: uniforms per example beyond one per feature.
    - ``signed``: features take negative values (neurons respond to both signs of a weight).
    - ``sets``: features come in consecutive sets of the ``set_size`` option that share one
      density (the correlated-features figures apply).
    - ``kurtosis(spec, density_F)``: each feature's E[x⁴]/E[x²]², or None (NaN is stored).
    - ``options``: the kind's static options and their defaults (``data.<option>`` in the config).
    - ``check(spec, n_features)``: raise ``ConfigError`` naming the key for a setting the kind
      cannot draw.
    - ``weights(u_RxB, density_F, spec)``: per-entry loss weights (F×B) from the same uniforms as
      the batch, for a kind whose loss covers only some entries of each example (a new target
      every sample); mean 1 over the features of an example keeps the loss on the scale of one
      squared error per entry. None (the default): every entry weighs 1, and the training
      program is the one without weights.
    - ``zero_density``: a density of 0 is meaningful (the density of a background, not of the
      signal), so ``data.density`` and the density axes accept 0 for this kind.
    """

    name: str
    value: ValueFn | None = None
    batch: BatchFn | None = None
    extra_rows: ExtraRowsFn = lambda n_features, spec: 0
    signed: bool = False
    sets: bool = False
    kurtosis: KurtosisFn | None = None
    options: Mapping = dataclasses.field(default_factory=dict)
    check: DataCheckFn | None = None
    weights: WeightsFn | None = None
    zero_density: bool = False
    doc: str = ""

    @property
    def elementwise(self) -> bool:
        return self.value is not None


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Static description of the input distribution; densities are per model (``HParams``).

    ``options`` are the kind's options as sorted (name, value) pairs (``data_spec`` fills the
    defaults). ``rest_scale`` multiplies every feature after the first (noise features: 0.1 makes
    them U[0, 0.1] next to a U[0, 1] target feature)."""

    kind: str = "sparse"
    rest_scale: float = 1.0
    options: tuple = ()

    def option(self, name: str):
        return dict(self.options)[name]


def spec_for(kind: DataKind, rest_scale: float = 1.0, **options) -> DataSpec:
    """The DataSpec of ``kind`` with ``options`` over its defaults; an option the kind does not
    have is refused, naming it."""
    unknown = sorted(set(options) - set(kind.options))
    if unknown:
        allowed = ", ".join(kind.options) or "none"
        raise ConfigError(
            f"data.{unknown[0]}",
            f"data kind {kind.name!r} has no option {unknown[0]!r}; its options: {allowed}",
        )
    return DataSpec(
        kind=kind.name,
        rest_scale=float(rest_scale),
        options=frozen_options({**kind.options, **options}),
    )
