"""The optional loss terms' config plumbing (the terms themselves, and their math, are the core's:
``toymodels.terms``). Everything here reads a term's declaration, never a term by name:

- its settings: ``train.<param>`` where the schema has that key (the built-in terms'), else
  ``train.terms.<param>``, else the default; a grid axis ``<param>`` sweeps one;
- whether a sweep compiles it in (``terms_on``: a switch away from its default, or swept);
- each model's settings (``point_terms``), their per-model arrays (``term_arrays``) and the
  store's columns (``term_columns``);
- their checks: each value's rule and no unknown ``train.terms`` key (``check_term_values``), then
  each term's own (``check_term_rules``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from sweeps.config import Config, TrainConf, expand_axis
from toymodels.registry import ConfigError
from toymodels.terms import TERMS, LossTerm, TermParam

TermValues = tuple[
    tuple[str, tuple[tuple[str, Any], ...]], ...
]  # term name -> (param, value) pairs
_SCHEMA_KEYS = {f.name for f in dataclasses.fields(TrainConf)}


def all_params() -> list[TermParam]:
    """Every registered term's settings (each a grid axis)."""
    return [param for term in TERMS for param in term.params]


def param_axes() -> tuple[str, ...]:
    return tuple(param.name for param in all_params())


def integer_axes() -> tuple[str, ...]:
    return tuple(param.name for param in all_params() if param.integer)


def config_key(param: TermParam) -> str:
    """Where a setting lives in the config: ``train.<name>`` (a schema key) or ``train.terms.<name>``."""
    return f"train.{param.name}" if param.name in _SCHEMA_KEYS else f"train.terms.{param.name}"


def configured(config: Config, param: TermParam) -> Any:
    """A setting's one configured value (its grid axis aside)."""
    if param.name in _SCHEMA_KEYS:
        return getattr(config.train, param.name)
    return config.train.terms.get(param.name, param.default)


def _cast(param: TermParam, value: Any) -> int | float:
    return int(value) if param.integer else float(value)


def terms_on(config: Config) -> tuple[LossTerm, ...]:
    """The terms some model of ``config`` uses, in the order they are added to the loss."""
    grid = config.sweep.grid
    return tuple(
        term
        for term in TERMS
        if any(
            p.name in grid or configured(config, p) != p.default
            for p in term.params
            if p.name in term.switches
        )
    )


def point_terms(config: Config, terms: Sequence[LossTerm], values: Mapping[str, Any]) -> TermValues:
    """One model's settings of ``terms``: its grid coordinates ``values`` first, else the config's."""
    return tuple(
        (
            term.name,
            tuple(
                (p.name, _cast(p, values.get(p.name, configured(config, p)))) for p in term.params
            ),
        )
        for term in terms
    )


def term_arrays(
    terms: Iterable[LossTerm], points: Sequence[TermValues], n_features: int
) -> dict[str, dict]:
    """``HParams.terms``: each term's per-model arrays over ``points`` (their ``terms`` values)."""
    return {
        term.name: term.arrays([dict(dict(p)[term.name]) for p in points], n_features)
        for term in terms
    }


def term_columns(values: TermValues, capacity_F: np.ndarray) -> dict[str, Any]:
    """One model's columns of every registered term: settings (None for a term not compiled in),
    then what each term measures on the trained model."""
    on = {name: dict(settings) for name, settings in values}
    columns: dict[str, Any] = {}
    for term in TERMS:
        columns.update(term.columns(on.get(term.name)))
    for term in TERMS:
        if term.measures is not None:
            columns.update(term.measures(on.get(term.name), capacity_F))
    return columns


@dataclasses.dataclass(frozen=True)
class _Sweep:
    """A sweep's values as a term's ``check`` sees them (``toymodels.terms.base.SweepValues``)."""

    config: Config

    def values(self, name: str) -> list:
        grid = self.config.sweep.grid
        if name in grid:
            return expand_axis(name, grid[name])
        if name == "steps":
            return [self.config.train.steps]
        if name == "n_features":
            return [self.config.model.n_features]
        return [configured(self.config, next(p for p in all_params() if p.name == name))]

    def key(self, name: str, index: int = 0) -> str:
        if name in self.config.sweep.grid:
            return f"sweep.grid.{name}[{index}]"
        param = next((p for p in all_params() if p.name == name), None)
        return (
            config_key(param)
            if param
            else {"steps": "train.steps", "n_features": "model.n_features"}[name]
        )


def check_term_values(config: Config, check_value: Callable[[str, Any, TermParam], None]) -> None:
    """Every setting's configured value (``check_value(key, value, param)`` applies its rule) and
    no unknown ``train.terms`` key."""
    params = {p.name: p for p in all_params()}
    for name in config.train.terms:
        if name not in params or name in _SCHEMA_KEYS:
            known = ", ".join(n for n in params if n not in _SCHEMA_KEYS) or "none registered"
            raise ConfigError(
                f"train.terms.{name}",
                f"no loss term has a setting {name!r} here; the settings "
                f"train.terms takes: {known} (toymodels.terms)",
            )
    for param in params.values():
        check_value(config_key(param), configured(config, param), param)


def check_term_rules(config: Config) -> None:
    """Each term's own check of what depends on several keys (``LossTerm.check``)."""
    for term in TERMS:
        if term.check is not None:
            term.check(_Sweep(config))
