"""The kinds a config names, looked up in the core's registries (``toymodels.models.MODELS``,
``toymodels.data.DATA``): their checks before any compute, and the static specs the planner
builds from them. Nothing here knows a kind by name.
"""

from __future__ import annotations

import itertools

from toymodels.data import DATA, DataKind, DataSpec
from toymodels.data.base import spec_for
from toymodels.models import MODELS
from toymodels.registry import ConfigError, frozen_options


def _values(config, axis: str, scalar) -> list:
    from sweeps.config import expand_axis

    grid = config.sweep.grid
    return expand_axis(axis, grid[axis]) if axis in grid else [scalar]


def model_kinds(config) -> list[str]:
    """Every model kind the sweep trains (``model.kind``, or the values of a ``model`` axis)."""
    return _values(config, "model", config.model.kind)


def option_axes(config) -> tuple[str, ...]:
    """Static grid axes the model kinds add: their options (``sweep.grid.<option>``)."""
    names: dict[str, None] = {}
    for name in model_kinds(config):
        kind = MODELS.find(name)
        names.update(dict.fromkeys(kind.options if kind else ()))
    return tuple(names)


def model_options(config, kind_name: str, static: dict) -> tuple:
    """The kind's options for one grid point: defaults, then ``model.options``, then the point's
    option axes; as sorted (name, value) pairs (a static part of the TrainSpec)."""
    kind = MODELS.get(kind_name)
    given = {**kind.options, **dict(config.model.options)}
    given.update({k: v for k, v in static.items() if k in kind.options})
    return frozen_options({k: v for k, v in given.items() if k in kind.options})


def data_options(config, kind: DataKind) -> dict:
    """The data kind's options: ``data.<option>`` where the schema has that key (``set_size``,
    ``magnitude``), else ``data.options.<option>``, else the kind's default."""
    d = config.data
    return {
        name: d.options.get(name, getattr(d, name, default))
        for name, default in kind.options.items()
    }


def data_spec_of(config) -> DataSpec:
    kind = DATA.get(config.data.kind)
    return spec_for(kind, float(config.data.rest_scale), **data_options(config, kind))


def n_features_values(config) -> list:
    return _values(config, "n_features", config.model.n_features)


def check_kinds(config) -> None:
    """Refuse, naming the key, a kind that is not registered or a setting it cannot train."""
    d = config.data
    kind = DATA.get(d.kind)
    extra = sorted(set(d.options) - set(kind.options))
    if extra:
        raise ConfigError(
            f"data.options.{extra[0]}",
            f"data kind {kind.name!r} has no option {extra[0]!r}; its "
            f"options: {', '.join(kind.options) or 'none'}",
        )
    spec = data_spec_of(config)
    for n in n_features_values(config):
        if kind.check is not None and isinstance(n, int):
            kind.check(spec, n)
    if kind.sets:
        _check_sets(config, spec)
    hidden = _values(config, "n_hidden", config.model.n_hidden)
    for name in model_kinds(config):
        model = MODELS.get(name)
        if kind.weights is not None:  # per-entry loss weights are of the n features' outputs
            for n in n_features_values(config):
                outputs = (
                    model.n_outputs(n, {**model.options, **dict(config.model.options)})
                    if isinstance(n, int)
                    else n
                )
                if outputs != n:
                    raise ConfigError(
                        "data.kind",
                        f"{kind.name!r} weighs the loss of each feature's output; model "
                        f"kind {name!r} has {outputs} outputs for {n} features",
                    )
        unknown = sorted(set(config.model.options) - set(model.options))
        if unknown and "model" not in config.sweep.grid:
            raise ConfigError(
                f"model.options.{unknown[0]}",
                f"model kind {name!r} has no option {unknown[0]!r}; "
                f"its options: {', '.join(model.options) or 'none'}",
            )
        if model.check is None:
            continue
        axes = [a for a in model.options if a in config.sweep.grid]
        for n, m, *values in itertools.product(
            n_features_values(config), hidden, *(_values(config, a, None) for a in axes)
        ):
            model.check(n, m, dict(model_options(config, name, dict(zip(axes, values)))))


def _check_sets(config, spec: DataSpec) -> None:
    d, size = config.data, spec.option("set_size")
    if isinstance(d.density, (list, tuple)):
        for start in range(0, len(d.density), size):
            if len(set(d.density[start : start + size])) > 1:
                raise ConfigError(
                    "data.density",
                    f"members of one {d.kind} set share one density; features "
                    f"{start}..{start + size - 1} differ",
                )
    for axis in ("density_last", "density_last_ratio"):
        if axis in config.sweep.grid and size > 1:
            raise ConfigError(
                f"sweep.grid.{axis}",
                f"would split the last {d.kind} set's density; sweep density instead",
            )
