"""Planning an SAE sweep: config -> one ``SaePoint`` per SAE -> chunks of same-shaped SAEs.

The SAE job kind's planner (``sweeps.sae.job``) for configs with an ``sae:`` section
(``sweeps.sae.config``); ``sweeps.jobs.chunks`` splits its SAEs into chunks as it does every
kind's models. A chunk is one ``toymodels.sae.train_saes`` program: every SAE in it shares an
``SaeSpec`` (kind, dictionary size, steps, batch, k_max, the kind's static hyperparameters) and a
static source (a world's firing and shape, or a toy model's kind, data kind and shape);
everything else (lr, λ_o, the kind's per-SAE hyperparameters: λ, k, ε, θ₀, α, ...; the world's
density, magnitudes, cosine, seed, the toy model's weights) is a per-SAE array.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweeps.jobs.chunks import crc_id, model_uid
from sweeps.sae.config import (
    FOLLOW_ACTIVE,
    SAE_STATIC_AXES,
    WORLD_RULES,
    WORLD_STATIC_AXES,
    reads,
    resolve_dict_size,
    sae_values,
)
from toymodels.registry import ConfigError, frozen_options
from toymodels.sae import SAE_KINDS, SaeSpec
from toymodels.sae.base import Source

WORLD_FIELDS = tuple(WORLD_RULES)  # every world parameter, in the order of sae.world


@dataclass(frozen=True)
class SaePoint:
    """One SAE: its grid coordinates (only the axes its kind reads), seed and per-SAE values."""

    coords: tuple[tuple[str, object], ...]
    seed: int
    uid: int  # stable 31-bit id of the SAE (its row in the store)
    order: int
    source_uid: int  # its world's or toy model's id: SAEs of one source and seed share key and data
    lr: float
    ortho: float
    values: tuple[tuple[str, object], ...]  # the kind's per-SAE hyperparameters (name, value)
    source: tuple[
        tuple[str, object], ...
    ]  # the world's parameters, or the toy model's stored values

    def value(self, name: str, missing=None):
        return dict(self.values).get(name, missing)


@dataclass(frozen=True)
class SaeGroup:
    """What SAEs of one chunk share: the compiled program's static values."""

    spec: SaeSpec
    source: Source  # toymodels.sae.worlds.WorldSource, toymodels.sae.toy.ToySource, ...
    world: tuple = ()  # the world's static parameters (kind, shape, directions, active)

    @property
    def steps(self) -> int:
        return self.spec.steps


def _grid(config) -> list[tuple[tuple[str, object], ...]]:
    from sweeps.config import expand_axis

    axes = {name: expand_axis(name, spec) for name, spec in config.sweep.grid.items()}
    return [tuple(zip(axes, values)) for values in itertools.product(*axes.values())]


def _read(coords: tuple, config, axis: str):
    return dict(coords).get(axis, sae_values(config, axis)[0])


def _kind_coords(coords: tuple, config) -> tuple:
    """The coordinates an SAE's kind reads (``sweeps.sae.config.reads``): one SAE per setting it reads."""
    kind = SAE_KINDS.get(_read(coords, config, "kind"))
    return tuple((a, v) for a, v in coords if reads(kind, a))


def _k(coords: tuple, config, value) -> int:
    """A k value, ``active`` read as this SAE's world's number of active features (k follows l)."""
    return int(_read(coords, config, "active")) if value == FOLLOW_ACTIVE else int(value)


def _k_max(config, coords: tuple) -> int:
    """The largest k of the config, with ``active`` its own world's: never changed by chunking, and
    a world of l = 1 does not pay for the largest l's top-k."""
    return max(_k(coords, config, v) for v in sae_values(config, "k"))


def _spec(config, coords: tuple, kind: str, dict_size: int, static: dict) -> SaeSpec:
    s = config.sae
    sae_kind = SAE_KINDS.get(kind)
    options = {
        h.name: h.cast(_read(coords, config, h.name)) for h in sae_kind.hparams if not h.per_sae
    }
    # AuxK is compiled in for a kind that declares its coefficient when any SAE of the sweep has one
    # above 0 (as the orthogonality penalty: chunking never changes a program), unless no latent can
    # be dead by its window in so few steps (it counts the steps before each one)
    steps = static.get("steps", s.steps)
    aux_k = (
        sae_kind.hparam("aux_coefficient") is not None
        and max(sae_values(config, "aux_coefficient")) > 0
        and steps > min(sae_values(config, "dead_window")) + 1
    )
    return SaeSpec(
        dict_size=dict_size,
        kind=kind,
        steps=steps,
        batch_size=static.get("batch_size", s.batch_size),
        k_max=_k_max(config, coords) if sae_kind.top_k else 0,
        ortho=max(sae_values(config, "ortho")) > 0,
        clip=max(sae_values(config, "grad_clip")) > 0,  # as ortho: 0 everywhere compiles it out
        aux_k=aux_k,
        options=frozen_options(options),
        resample_every=s.resample_every,
        eval_batch=s.eval_batch,
        fold_b_dec=s.fold_b_dec,
        per_sae_source=True,
        shared_data=False,
    )


def _values(config, coords: tuple, kind: str) -> dict:
    """lr, λ_o and the kind's per-SAE hyperparameters; one the kind does not read takes its
    declared default in the program, where nothing reads it."""
    values = tuple(
        (
            h.name,
            _k(coords, config, _read(coords, config, "k"))
            if h.name == "k"
            else h.cast(_read(coords, config, h.name)),
        )
        for h in SAE_KINDS.get(kind).hparams
        if h.per_sae
    )
    return dict(
        lr=float(_read(coords, config, "lr")),
        ortho=float(_read(coords, config, "ortho")),
        values=values,
    )


def _world_sources(config, coords: tuple):
    """[(WorldSource, the world's static parameters, its id, all its parameters)] of the one world at
    ``coords``: the same shape as ``sweeps.sae.toy.toy_sources``' list of toy models."""
    from sweeps.sae.worlds import world_source

    if config.sae.world.kind == "saelens":  # its config or directory is the whole world
        from sweeps.sae.saelens import canonical

        params: tuple[tuple[str, Any], ...] = (
            ("world_kind", "saelens"),
            ("saelens", canonical(config.sae.world.saelens)),
        )
        return [(world_source(dict(params)), params, crc_id({"world": params}), params)]
    world = {
        "world_kind": config.sae.world.kind,  # not an axis: the SAE's kind is "kind"
        **{name: _read(coords, config, name) for name in WORLD_FIELDS if name != "kind"},
    }
    static = tuple((name, world[name]) for name in ("world_kind", *WORLD_STATIC_AXES, "alone"))
    params = tuple(world.items())
    return [(world_source(world), static, crc_id({"world": params}), params)]


def plan_saes(config, device=None) -> tuple[list[tuple[SaeGroup, SaePoint]], dict]:
    """Every SAE of the grid × sources × seeds, in grid order (last axis fastest, then source,
    then seed); each kind once per setting it reads. And what chunks carry: each toy source's
    arrays by its uid ({} for worlds, built where a chunk runs from the points alone)."""
    from sweeps.config import expand_axis
    from sweeps.resources import check_plan_size
    from sweeps.sae.toy import toy_carry, toy_sources

    check_plan_size(config, {a: len(expand_axis(a, v)) for a, v in config.sweep.grid.items()})
    toys = toy_sources(config) if config.sae.source == "toy" else None
    out: list[tuple[SaeGroup, SaePoint]] = []
    seen = set()
    for coords in _grid(config):
        coords = _kind_coords(coords, config)
        kind = _read(coords, config, "kind")
        static = {a: v for a, v in coords if a in SAE_STATIC_AXES}
        sources = toys if toys is not None else _world_sources(config, coords)
        for source, world_static, source_uid, info in sources:
            size = resolve_dict_size(_read(coords, config, "dict_size"), source.n_features)
            spec = _spec(config, coords, kind, size, static)
            if spec.k_max > size:
                raise ConfigError(
                    "sae.k", f"k={spec.k_max} exceeds the dictionary size {size} of kind {kind!r}"
                )
            group = SaeGroup(spec, source, world_static)
            for seed in range(config.sweep.seeds):
                at = coords + ((("toy_uid", source_uid),) if toys is not None else ())
                uid = model_uid(at, seed)
                if (uid, seed) in seen:
                    continue  # an axis the kind does not read: the same SAE again
                seen.add((uid, seed))
                out.append(
                    (
                        group,
                        SaePoint(
                            coords,
                            seed,
                            uid,
                            len(out),
                            source_uid,
                            **_values(config, coords, kind),
                            source=info,
                        ),
                    )
                )
    return out, (toy_carry(config) if toys is not None else {})


def working_set(group: SaeGroup) -> int:
    """Per SAE and step: activations, codes, reconstruction and their gradients (~8 B×(H+D) float32
    arrays), and the evaluation batch."""
    spec = group.spec
    return 4 * 8 * max(spec.batch_size, spec.eval_batch) * (group.source.n_hidden + spec.dict_size)


def hparam_lists(points) -> dict[str, np.ndarray]:
    """``toymodels.sae.hparams``' arguments for ``points`` (SAEs of one kind)."""
    lists = {name: np.array([getattr(p, name) for p in points]) for name in ("lr", "ortho")}
    names = [name for name, _ in points[0].values]
    lists.update({name: np.array([p.value(name) for p in points]) for name in names})
    return lists
