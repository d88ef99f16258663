"""The one chunk machinery of every job kind (``sweeps.jobs.kind``): model and chunk ids, splitting
a plan into chunks and padding them, a chunk's memory budget, running its program, the non-finite
check and the columns every row starts from.

``run_chunk`` is what any executor runs for one chunk: a plain payload in, a table out, nothing
shared. Executors (``sweeps.executors``) decide where chunks run and report each finished or
failed chunk to the driver's callbacks as soon as it is known; the driver writes its rows to the
store (``sweeps.store.SweepStore.write_chunk``).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sweeps import resources
from sweeps.jobs.kind import Chunk, JobKind, Plan


class ChunkFailed(RuntimeError):
    """A chunk that failed by itself (bad numbers, not a lost worker): recorded, not retried."""


# ---------------------------------------------------------------- ids


def crc_id(payload: Any) -> int:
    """A stable 31-bit id of a JSON-able payload (keys sorted; other values as their str)."""
    return zlib.crc32(json.dumps(payload, sort_keys=True, default=str).encode()) & 0x7FFFFFFF


def model_uid(coords: Iterable[tuple[str, Any]], seed: int) -> int:
    """A model's id from its grid coordinates and seed: its row in the store, and (toy models) its
    PRNG stream, fold_in(base_seed, uid). The same grid point and seed give the same id in every
    plan, however the grid is chunked or extended."""
    return crc_id({"coords": [[k, v] for k, v in coords], "seed": seed})


def chunk_id(fields: dict, base_seed: int, points: Sequence) -> str:
    """A chunk's id: a hash of its content (what its models share, ``fields``, and every point).

    The JSON is that of ``dataclasses.asdict`` of each point, with keys sorted, built without
    asdict's deep copy of every value (2.6 of 3.0 s of a 16,000-model plan's chunking)."""
    payload = json.dumps(
        {**fields, "base_seed": base_seed, "points": list(points)},
        sort_keys=True,
        default=_json_value,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _json_value(value: Any) -> Any:
    """A dataclass instance as the dict of its fields (its JSON, keys sorted, is that of
    ``dataclasses.asdict``: nested dataclasses, tuples and dicts are encoded alike); anything
    else JSON cannot encode as its str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return str(value)


# ---------------------------------------------------------------- splitting, padding, budget


def auto_chunk_size(job: JobKind, spec: Any, device: resources.Device) -> int:
    """Most models per chunk and device when sweep.chunk_size is 0: on a GPU or TPU as many as fill
    its memory share (the kind's ``model_bytes``); on a CPU as many as keep a step's working set
    near the caches."""
    if device.is_accelerator and job.model_bytes is not None:
        return resources.fill_device(job.model_bytes(spec, device.platform), device)
    return resources.fill_cache(job.working_set(spec))


def split(n: int, cap: int, min_chunks: int, devices: int = 1) -> tuple[int, int, int]:
    """(size, width, one-worker width) of ``n`` models in chunks of at most ``cap`` per device on
    ``devices`` devices, balanced, at least ``min_chunks`` of them while they stay non-empty: each
    chunk holds ``size`` models (the last fewer) in slices of ``width``, one per device; the
    one-worker width is the slices' width with one worker on one device."""
    n_chunks = min(n, max(-(-n // (cap * devices)), min_chunks))
    size = -(-n // n_chunks)
    return size, -(-size // devices), -(-n // -(-n // cap))


def make_chunks(
    plan: Plan,
    units: Sequence | None = None,
    min_chunks: int = 1,
    device: resources.Device | None = None,
) -> list[Chunk]:
    """Split ``units`` (default: the whole plan) into chunks of one spec each, balanced in size.

    ``min_chunks`` asks for at least that many chunks per spec (so that every worker has one), as
    long as chunks stay non-empty. Chunk sizes (sweep.chunk_size 0) are chosen for ``device``
    (default: the plan's): on a GPU, few large chunks, one per worker when they fit. A chunk's
    process spreads its models over its devices (``sweeps.jobs.devices``), so a chunk holds up to
    ``device.count`` (at most sweep.devices) times what one device holds, in slices of
    ``pad_to`` models, one per device.
    """
    job, device = plan.job, device or plan.device
    devices = max(1, min(device.count, plan.placement.devices or device.count))
    by_spec: dict[Any, list] = {}
    for spec, point in plan.units if units is None else units:
        by_spec.setdefault(spec, []).append(point)
    chunks = []
    for spec, points in by_spec.items():
        cap = plan.chunk_size or auto_chunk_size(job, spec, device)
        size, width, one_worker = split(len(points), cap, min_chunks, devices)
        if plan.chunk_size and job.model_bytes is not None:
            resources.check_chunk(job.model_bytes(spec, device.platform), width, device)
        fields, kinds = job.id_fields(spec), job.user_kinds(spec)
        for start in range(0, len(points), size):
            part = tuple(points[start : start + size])
            chunks.append(
                Chunk(
                    chunk_id(fields, plan.base_seed, part),
                    job,
                    spec,
                    plan.base_seed,
                    part,
                    one_worker if job.pad_to_one_worker else width,
                    kinds,
                    job.carry(plan.carry, part),
                    plan.placement,
                )
            )
    return chunks


def chunks_left(
    plan: Plan, units: Sequence, min_chunks: int = 1, device: resources.Device | None = None
) -> list[Chunk]:
    """The chunks of ``units`` (the plan's models left to train) as an uninterrupted run cuts the
    whole plan: each chunk of the whole plan whose models are all left, so that a resume (after a
    failed chunk, a kill, Ctrl-C) trains every model in the chunk it had, with the same bits, for
    every job kind. Models of a chunk partly stored (the chunking changed since: another
    ``sweep.chunk_size`` or number of workers; another driver's share) are cut anew."""
    left = {point.uid for _, point in units}
    chunks, rest = [], set()
    for chunk in make_chunks(plan, None, min_chunks, device):
        ids = {point.uid for point in chunk.points}
        if ids <= left:
            chunks.append(chunk)
        else:
            rest |= ids & left
    if rest:
        chunks += make_chunks(
            plan, [(spec, point) for spec, point in units if point.uid in rest], min_chunks, device
        )
    return chunks


# ---------------------------------------------------------------- running a chunk


def run_chunk(chunk: Chunk) -> pd.DataFrame:
    """Train every model of ``chunk`` in one compiled program, over every device of this process
    (``sweeps.jobs.devices``); one row per model."""
    from sweeps.jobs.devices import run_on_devices
    from toymodels.plugins import ensure_registered

    ensure_registered(chunk.kinds)
    program = chunk.job.program(chunk)
    start = time.perf_counter()
    result = run_on_devices(program.fn, program.args, program.axes, chunk.pad_to, chunk.placement)
    seconds = time.perf_counter() - start
    check_finite(chunk, *chunk.job.checked(result))
    with gc_paused():  # a row's lists of floats: millions of objects, no cycles
        return chunk.job.rows(chunk, program, result, seconds)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector off for a block that makes millions of containers and no cycles
    (a chunk's rows: a list of floats per snapshot and parameter): its collections rescan every
    live container again and again, three quarters of such a block's time (16,000 toy models'
    rows, loaded: 4.3-5.5 s -> 1.0-1.5 s; converting the table to or from Arrow gains nothing).
    Nothing about the objects changes; collection resumes at the end of the block (if it was on)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def rows_as_arrow(table: pd.DataFrame) -> pa.Table:
    """A chunk's rows as the Arrow table the store writes (the store converts a DataFrame
    the same way; tests/sweeps/store/test_rows_travel.py checks the files are the same
    bytes): how a Ray worker sends them, its buffers shipped as they are, where a DataFrame's lists
    of floats were pickled there and unpickled by the driver (16,000 toy models: 94 MB of pickle,
    3.6 s to pickle and 8.7 s to unpickle, loaded)."""
    return pa.Table.from_pandas(table, preserve_index=False)


def check_finite(chunk: Chunk, loss: Any, params: Any) -> None:
    """Fail the chunk when any model's loss or parameters are not finite (a diverged model can
    still report a finite loss: ReLU maps NaN to 0 on some backends). Every leaf has a leading
    models axis (``loss`` too: one number per model, or more)."""
    import jax

    n = chunk.n_models
    finite = np.isfinite(np.asarray(loss)[:n]).reshape(n, -1).all(axis=1)
    for leaf in jax.tree.leaves(params):
        finite &= np.isfinite(np.asarray(leaf)[:n]).reshape(n, -1).all(axis=1)
    bad = [chunk.points[i] for i in np.flatnonzero(~finite)]
    if bad:
        where = dict(bad[0].coords, seed=bad[0].seed)
        raise ChunkFailed(
            f"non-finite loss or weights for {len(bad)} {chunk.job.noun}(s), first at {where}"
        )


def identity_columns(chunk: Chunk, point: Any, between: Iterable[tuple[str, Any]] = ()) -> dict:
    """Where a model sits, the columns every row starts from: its grid coordinates (then
    ``between``, a kind's own), seed, uid, order in the plan and chunk."""
    return {
        **dict(point.coords),
        **dict(between),
        "seed": point.seed,
        "uid": point.uid,
        "order": point.order,
        "chunk": chunk.id,
    }
