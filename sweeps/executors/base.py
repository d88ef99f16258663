"""Where chunks run: the executor interface and the in-process executor (Ray in
``sweeps.executors.ray_executor``). An executor runs ``sweeps.jobs.run_chunk`` on each chunk
and reports each finished or failed chunk to the driver's callbacks as soon as it is known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import pandas as pd
import pyarrow as pa

from sweeps.jobs import Chunk, run_chunk

# A chunk's rows: a DataFrame, or the Arrow table of one (``sweeps.jobs.rows_as_arrow``: how a Ray
# worker sends them); the store takes either.
OnDone = Callable[[Chunk, "pd.DataFrame | pa.Table"], None]
OnFailed = Callable[[Chunk, BaseException], None]


class Executor(Protocol):
    """Runs chunks somewhere and reports each one to the driver as soon as it ends."""

    @property
    def workers(self) -> int:
        """How many chunks it runs at once (the runner makes at least that many)."""
        ...

    # Optionally ``device``: the devices its chunks run on, when the executor asked them (a Ray
    # worker's report, for TPU chips and GPUs the driver cannot see); None or absent:
    # sweeps.resources.chunk_device decides (the runner reads getattr(executor, "device", None)).

    def run(self, chunks: Sequence[Chunk], on_done: OnDone, on_failed: OnFailed) -> None: ...

    def close(self) -> None:
        """Release what the executor started (a local Ray, say)."""


class InProcessExecutor:
    """Runs chunks one after another in this process, each over all of its devices (sweeps.jobs.devices)."""

    workers = 1
    device = None

    def run(self, chunks: Sequence[Chunk], on_done: OnDone, on_failed: OnFailed) -> None:
        for chunk in chunks:
            try:
                table = run_chunk(chunk)
            except Exception as error:  # noqa: BLE001 - a chunk failing by itself must not stop the others
                on_failed(chunk, error)
            else:
                on_done(chunk, table)

    def close(self) -> None:
        pass
