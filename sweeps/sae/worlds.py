"""Synthetic worlds of an SAE sweep (``sae.source=world``): the static ``WorldSource`` the planner
groups by (``SaelensSource`` for a SAELens world, ``sweeps.sae.saelens``), and the world's arrays, built where the chunk runs from its parameters alone
(``toymodels.sae.build``; deterministic in ``world_seed``)."""

from __future__ import annotations

import numpy as np

from toymodels.sae import synthbench
from toymodels.sae.build import composition_world, exactly_world, simple_world
from toymodels.sae.worlds import WorldSource


def _bench(world: dict) -> synthbench.BenchConfig:
    import dataclasses

    return dataclasses.replace(synthbench.SYNTHBENCH_SMALL, seed=int(world["world_seed"]))


def world_source(world: dict) -> WorldSource:
    """The static part of the world ``world`` (sae.world's keys, its kind as world_kind): what a
    compiled program fixes."""
    if world["world_kind"] == "saelens":
        from sweeps.sae.saelens import world_of

        return world_of(world["saelens"])[0]
    kind, n, m = world["world_kind"], int(world["n_features"]), int(world["n_hidden"])
    if kind == "composition":
        return WorldSource(2, m, firing="patterns")
    if kind == "exactly":
        return WorldSource(n, m, firing="exactly", active=int(world["active"]))
    if kind == "synthbench_small":
        return synthbench.bench_source(_bench(world))
    return WorldSource(n, m)


def build_world(world: dict):
    """The ``World`` arrays of ``world`` (sae.world's keys, its kind as world_kind, after the grid's values)."""
    if world["world_kind"] == "saelens":
        from sweeps.sae.saelens import world_of

        return world_of(world["saelens"])[1]
    kind, seed = world["world_kind"], int(world["world_seed"])
    if kind == "composition":
        return composition_world(
            int(world["n_hidden"]),
            float(world["alone"]),
            float(world["together"]),
            world["magnitude"],
            seed,
        )[1]
    if kind == "exactly":
        return exactly_world(
            int(world["n_features"]),
            int(world["n_hidden"]),
            int(world["active"]),
            world["magnitude"],
            seed,
        )[1]
    if kind == "synthbench_small":
        return synthbench.build(_bench(world))[1]
    return simple_world(
        int(world["n_features"]),
        int(world["n_hidden"]),
        float(world["density"]),
        directions_kind=world["directions"],
        magnitude=world["magnitude"],
        cosine=float(world["cosine"]),
        seed=seed,
    )[1]


def world_arrays(points) -> object:
    """One ``World`` per SAE (a leading SAE axis on every leaf), each distinct world built once."""
    import jax

    built: dict[int, object] = {}
    for p in points:
        if p.source_uid not in built:
            built[p.source_uid] = build_world(dict(p.source))
    return jax.tree.map(lambda *leaves: np.stack(leaves), *(built[p.source_uid] for p in points))
