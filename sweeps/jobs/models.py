"""Toy models of a grid: config -> one ``ModelPoint`` per model, what the two toy-model job kinds
(fresh data, ``sweeps.jobs.toy``; finite data, ``sweeps.jobs.finite``) share. Each kind builds
its own static spec of a grid point (``TrainSpec``, ``FiniteSpec``); the points and their
per-model arrays are the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sweeps import resources
from sweeps.config import STATIC_AXES, Config, expand_axis
from sweeps.config_kinds import option_axes
from sweeps.jobs.chunks import model_uid
from sweeps.jobs.kind import Chunk
from sweeps.jobs.terms import TermValues, point_terms, terms_on
from toymodels.data import importance_profile
from toymodels.terms import LossTerm

SpecT = TypeVar("SpecT")
# The columns every toy model's row has (``JobKind.columns``): ``W`` is the kind's m×n feature
# directions, whatever its parameters.
TOY_COLUMNS = {
    "model": "text",
    "n_features": "integer",
    "n_hidden": "integer",
    "loss": "finite",
    "W": "matrix n_hidden×n_features",
}


@dataclass(frozen=True)
class ModelPoint:
    """One model: its grid coordinates, seed and the per-model values that follow from them."""

    coords: tuple[tuple[str, Any], ...]  # (axis, value) in grid order
    seed: int
    uid: int  # stable 31-bit id: the model's PRNG stream is fold_in(base_seed, uid)
    density_F: tuple[float, ...]
    importance_F: tuple[float, ...]
    lr: float
    weight_decay: float
    order: int  # position in the full plan, for a stable row order in the store
    dataset_seed: int = 0  # finite data: the training set is a function of this alone
    # The settings of each optional loss term its spec compiles in (sweeps.jobs.terms.point_terms).
    terms: TermValues = ()


def grid_axes(config: Config) -> dict[str, list]:
    return {name: expand_axis(name, spec) for name, spec in config.sweep.grid.items()}


def point_for(
    config: Config,
    coords: tuple,
    seed: int,
    n_features: int,
    order: int,
    terms: Sequence[LossTerm] = (),
) -> ModelPoint:
    values = dict(coords)
    d, imp = config.data, config.data.importance
    density = values.get("density", d.density)
    density_F = (
        [float(p) for p in density]
        if isinstance(density, (list, tuple))
        else [float(density)] * n_features
    )
    if "density_last" in values:  # the last feature's density, the others as configured
        density_F[-1] = float(values["density_last"])
    if "density_last_ratio" in values:  # the last feature's density as a multiple of its own
        density_F[-1] = float(values["density_last_ratio"]) * density_F[-1]
    importance_F = importance_profile(
        n_features,
        imp.kind,
        float(values.get("importance_decay", imp.decay)),
        imp.ratio,
        tuple(imp.values),
    )
    if "importance_last" in values:  # the last feature's importance relative to the profile's first
        importance_F[-1] = float(values["importance_last"])
    return ModelPoint(
        coords=coords,
        seed=seed,
        uid=model_uid(coords, seed),
        density_F=tuple(density_F),
        importance_F=tuple(float(v) for v in importance_F),
        lr=float(values.get("lr", config.train.lr)),
        weight_decay=float(values.get("weight_decay", config.train.weight_decay)),
        order=order,
        dataset_seed=int(values.get("dataset_seed", config.data.dataset_seed)),
        terms=point_terms(config, terms, values),
    )


def plan_models(
    config: Config, device: resources.Device, spec_for: Callable[[Config, dict], SpecT]
) -> list[tuple[SpecT, ModelPoint]]:
    """The grid product × seeds, in grid order (last axis fastest, then seed); ``spec_for(config,
    static)`` is the static spec of a grid point's static axes. Refuses, before building any
    model, a plan too large for the driver or a spec that cannot fit ``device``."""
    axes = grid_axes(config)
    resources.check_plan_size(config, {name: len(values) for name, values in axes.items()})
    names = list(axes)
    static_axes = STATIC_AXES + option_axes(config)
    terms = terms_on(config)
    out: list[tuple[SpecT, ModelPoint]] = []
    seen: dict[int, tuple] = {}
    checked: set = set()
    for values in itertools.product(*axes.values()):
        coords = tuple(zip(names, values))
        static = {k: v for k, v in coords if k in static_axes}
        spec = spec_for(config, static)
        if spec not in checked:
            resources.check_spec(spec, device)  # type: ignore[arg-type]
            checked.add(spec)
        for seed in range(config.sweep.seeds):
            point = point_for(config, coords, seed, spec.n_features, len(out), terms)  # type: ignore[attr-defined]
            if point.uid in seen:
                raise ValueError(
                    f"model id collision between {seen[point.uid]} and {(coords, seed)}"
                )
            seen[point.uid] = (coords, seed)
            out.append((spec, point))
    return out


def hparams_arrays(chunk: Chunk[Any, ModelPoint]) -> dict[str, np.ndarray]:
    """The chunk's per-model values as arrays, padded to ``pad_to`` by repeating the last model."""
    points = chunk.padded()
    return {
        "uid": np.array([p.uid for p in points], np.uint32),
        "seed": np.array([p.seed for p in points], np.uint32),
        "density_F": np.array([p.density_F for p in points], np.float32),
        "importance_F": np.array([p.importance_F for p in points], np.float32),
        "lr": np.array([p.lr for p in points], np.float32),
        "weight_decay": np.array([p.weight_decay for p in points], np.float32),
        "dataset_seed": np.array([p.dataset_seed for p in points], np.uint32),
    }


def feature_columns(points, W_NxHxF: np.ndarray) -> dict[str, list]:
    """Per model, per feature: ‖W_i‖, capacity, interference (docs/science/metrics.md) and the densities and
    importances it was trained with; the columns every stored toy model has, fresh or finite data."""
    from toymodels import metrics

    return {
        "norms": metrics.feature_norms(W_NxHxF).tolist(),
        "capacity": metrics.capacity(W_NxHxF).tolist(),
        "interference": metrics.interference(W_NxHxF).tolist(),
        "feature_density": [list(p.density_F) for p in points],
        "feature_importance": [list(p.importance_F) for p in points],
    }


def toy_kinds(model: str, data: str | None = None, terms: Sequence[str] = ()) -> tuple:
    """The user's own model and data kinds and loss terms of a spec, for its chunks to carry to workers."""
    from toymodels.plugins import kinds_used

    return kinds_used([model], [data] if data is not None else [], terms)
