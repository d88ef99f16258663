"""What an optional loss term is: one object (``LossTerm``) that declares its per-model settings,
when it is on, its term in the training loss, the per-model arrays that term reads and the store's
columns of its settings. The core owns the math (``penalty``); ``sweeps`` reads the declaration
to turn a config into those settings, check them and store them (``sweeps.jobs.terms``), so that
a new term is one file (a ``LossTerm`` registered in ``toymodels.terms.TERMS``) plus a config.

The training loss of a model is its reconstruction loss plus, for each term compiled into the
chunk's program (``TrainSpec.terms``, in that order), ``penalty(inputs, arrays)``; the evaluation
loss stored as ``loss`` is the reconstruction loss alone. A term is compiled in when some model
of the sweep uses it (a ``switches`` setting away from its default, or swept), so a sweep that
never uses it compiles the program without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np

Values = Mapping[str, Any]  # one model's settings of a term: parameter name -> value


@dataclasses.dataclass(frozen=True)
class TermParam:
    """One per-model setting of a term: config key ``train.<name>`` (``train.terms.<name>`` for a
    term the schema does not name), grid axis ``<name>``, and the rule its values follow (a
    finite number, an integer with ``integer``, within [low, high] or open at either end;
    ``high_key``: the upper bound, exclusive, is that config key's value, e.g. a feature index
    below ``model.n_features``)."""

    name: str
    default: float | int
    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    high_key: str | None = None
    what: str = ""  # the phrase before "must be", e.g. "a feature index (or -1 for none)"


@dataclasses.dataclass(frozen=True)
class TermInputs:
    """What a term's penalty may read at one training step of one model: its parameters, its kind,
    its hidden activations on the batch (in ``ops``' form: ``toymodels.models.base``) and the step."""

    params: Mapping[str, jax.Array]
    kind: Any  # toymodels.models.ModelKind
    hidden: Any
    ops: Any
    step: jax.Array  # uint32: the training step being taken (0-based)


class PenaltyFn(Protocol):
    def __call__(self, inputs: TermInputs, arrays: Mapping[str, jax.Array]) -> jax.Array:
        """The term's scalar addition to one model's training loss; ``arrays``: its per-model
        arrays (``ArraysFn``), one model's slice."""
        ...


class ArraysFn(Protocol):
    def __call__(self, values: Sequence[Values], n_features: int) -> dict[str, np.ndarray]:
        """The per-model arrays ``penalty`` reads, from every model's settings (leading axis: models)."""
        ...


class ColumnsFn(Protocol):
    def __call__(self, values: Values | None) -> dict[str, Any]:
        """The store's columns of one model's settings (``values`` None: the term is not compiled in)."""
        ...


class MeasuresFn(Protocol):
    def __call__(self, values: Values | None, capacity_F: np.ndarray) -> dict[str, Any]:
        """Columns measured on the trained model (``capacity_F``: its features' final capacities),
        stored after every term's settings."""
        ...


class SweepValues(Protocol):
    """A sweep's values, as a term's ``check`` sees them."""

    def values(self, name: str) -> list:
        """Every value ``name`` takes in the sweep: a term's parameter, ``steps`` or ``n_features``."""
        ...

    def key(self, name: str, index: int = 0) -> str:
        """The config key of ``name``'s ``index``-th value (``sweep.grid.<name>[i]`` when swept)."""
        ...


class CheckFn(Protocol):
    def __call__(self, sweep: SweepValues) -> None:
        """Raise ``toymodels.registry.ConfigError`` naming the key for settings the term cannot train."""
        ...


def float_arrays(values: Sequence[Values], n_features: int) -> dict[str, np.ndarray]:
    """Each setting as a float32 array over the models (the default ``ArraysFn``)."""
    return {name: np.array([v[name] for v in values], np.float32) for name in values[0]}


def stored_when_on(values: Values | None) -> dict[str, Any]:
    """Each setting as a column of its own, only in sweeps that compile the term in (the default
    ``ColumnsFn``)."""
    return dict(values) if values is not None else {}


@dataclasses.dataclass(frozen=True, eq=False)
class LossTerm:
    """One optional loss term (the module docstring).

    - ``params``: its per-model settings (``TermParam``), in the order they are stored.
    - ``switches``: the settings that turn it on: a value other than the default, or a grid axis.
    - ``penalty``: ``PenaltyFn``; ``arrays``: ``ArraysFn`` (default: each setting as float32).
    - ``columns``: ``ColumnsFn`` (default: each setting, only when on); ``measures``: ``MeasuresFn``.
    - ``check``: ``CheckFn``, for what depends on several keys (a step within train.steps).
    """

    name: str
    params: tuple[TermParam, ...]
    switches: tuple[str, ...]
    penalty: PenaltyFn
    arrays: ArraysFn = float_arrays
    columns: ColumnsFn = stored_when_on
    measures: MeasuresFn | None = None
    check: CheckFn | None = None
    doc: str = ""
