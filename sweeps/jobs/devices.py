"""One chunk's program over every device of its process (docs/devices.md).

A chunk is one ``jit(vmap(train))`` program over its models (toy models on fresh or finite data,
SAEs: ``train_many``, ``train_finite_many``, ``train_saes``). ``run_on_devices`` runs such a
program over the local devices of JAX's default platform (every GPU of a host, every chip of a
TPU host, forced CPU devices) and returns what one call would return, on the host.

The models are cut into *slices* of ``width`` models (the chunk's ``pad_to``; the last slice is
padded by repeating its last model) and the slices are spread over the devices, D at a time:

- ``exact`` (the default): each slice is the one-device program of width ``width`` on one
  device, the devices' slices dispatched at once from one thread per device. A slice computes
  what it would compute on a single device, so a chunk's bits do not depend on how many devices
  ran it. It compiles once per device (in parallel; on a GPU the compilation cache serves the
  later ones).
- ``mesh``: each round of D slices is one program over a one-axis ``jax.sharding`` mesh (the
  models axis split across the D devices, per-model arguments sharded, shared ones replicated):
  one compile in all. XLA compiles such a program through its SPMD pipeline, which may order
  the same arithmetic differently: on the CPU (JAX 0.10) an SAE's decoder gradient then divides
  by ‖V_j‖ where the one-device program multiplies by its reciprocal (~1e-7 apart); toy models
  on fresh and finite data came out bit-identical. docs/devices.md has the measurements.

Why not split a chunk of N models into D programs of width N/D: XLA's fusion decisions depend
on array sizes, and the models axis is one of them, so a narrower program may round the same
formula differently (an SAE's reverse MMCS at width 2 against 8: one fusion split in two; any
program at width 1, whose models axis XLA drops). Slices keep the width fixed instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

MODES = ("exact", "mesh")


@dataclass(frozen=True)
class Placement:
    """How a chunk's process spreads its models over its devices (``sweep.devices``,
    ``sweep.sharding``)."""

    devices: int = 0  # the most devices to use; 0: every local device of the default platform
    mode: str = "exact"  # one of MODES


def local_devices(limit: int = 0) -> list:
    """This process's devices of JAX's default platform, at most ``limit`` of them (0: all)."""
    import jax

    devices = jax.local_devices()
    return devices[:limit] if limit > 0 else devices


def n_models(args: Sequence, axes: Sequence) -> int:
    """The length of the models axis of ``args`` (the leading axis of every per-model leaf)."""
    import jax

    for arg, axis in zip(args, axes):
        if axis == 0:
            leaves = jax.tree.leaves(arg)
            if leaves:
                return int(leaves[0].shape[0])
    raise ValueError(
        "run_on_devices: no argument has a models axis (axes: 0 for per-model arguments)"
    )


def _rows(args: Sequence, axes: Sequence, index: np.ndarray) -> tuple:
    """The models ``index`` of every per-model argument; shared ones as they are."""
    import jax

    return tuple(
        jax.tree.map(lambda leaf: leaf[index], arg) if axis == 0 else arg
        for arg, axis in zip(args, axes)
    )


def _join(parts: list, n: int):
    """One host pytree from the slices' results (device arrays), cut back to ``n`` models."""
    import jax

    parts = jax.device_get(parts)
    return jax.tree.map(lambda *leaves: np.concatenate(leaves)[:n], *parts)


def run_on_devices(
    program: Callable,
    args: Sequence,
    axes: Sequence,
    width: int,
    placement: Placement = Placement(),
):
    """``program(*args)`` computed over the local devices, as numpy arrays on the host.

    ``program`` is a jitted ``vmap`` over models: every leaf of an argument whose ``axes`` entry
    is 0 has a leading models axis, an argument with ``None`` is the same for every model, and
    every output leaf has the models axis first. Models are run in slices of ``width``
    (module docstring); with one slice or one device this is exactly ``program(*args)``.
    """
    import jax

    if placement.mode not in MODES:
        raise ValueError(f"placement.mode must be one of {MODES}, got {placement.mode!r}")
    n = n_models(args, axes)
    width = max(1, min(width, n))
    slices = math.ceil(n / width)
    devices = local_devices(placement.devices)[:slices]
    if len(devices) <= 1 and slices == 1:
        return jax.device_get(program(*args))
    if placement.mode == "mesh" and len(devices) > 1:
        return _run_mesh(program, args, axes, width, devices, n)

    def run_slices(d: int) -> list:
        """Slices d, d + D, d + 2D, ... on device d, one after another (JAX queues them)."""
        out = []
        for s in range(d, slices, len(devices)):
            index = np.minimum(
                np.arange(s * width, (s + 1) * width), n - 1
            )  # the last model repeated
            out.append((s, program(*jax.device_put(_rows(args, axes, index), devices[d]))))
        return out

    if len(devices) == 1:
        done = run_slices(0)
    else:  # a thread per device: each compiles its program and dispatches its slices at once
        with ThreadPoolExecutor(len(devices)) as pool:
            done = [part for parts in pool.map(run_slices, range(len(devices))) for part in parts]
    return _join([result for _, result in sorted(done, key=lambda part: part[0])], n)


def _run_mesh(program: Callable, args: Sequence, axes: Sequence, width: int, devices: list, n: int):
    """Rounds of len(devices) slices, each one program over a one-axis mesh of the devices."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(devices), ("models",))
    split, same = NamedSharding(mesh, PartitionSpec("models")), NamedSharding(mesh, PartitionSpec())
    per_round = width * len(devices)
    parts = []
    for start in range(0, n, per_round):
        index = np.minimum(np.arange(start, start + per_round), n - 1)
        rows = _rows(args, axes, index)
        placed = tuple(
            jax.device_put(arg, split if axis == 0 else same) for arg, axis in zip(rows, axes)
        )
        parts.append(program(*placed))
    return _join(parts, n)
