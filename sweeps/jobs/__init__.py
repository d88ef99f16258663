"""The one chunk machinery and the toy-model job kinds: what a job kind is (``kind``: ``JobKind``,
``Plan``, ``Chunk``), ids, splitting, padding, the memory budget and running a chunk (``chunks``),
a chunk's program over the devices of its process (``devices``), toy models of a grid
(``models``) on fresh data (``toy``) and on finite data (``finite``), the loss terms' config
plumbing (``terms``)."""

from sweeps.jobs.chunks import ChunkFailed, chunks_left, make_chunks, rows_as_arrow, run_chunk
from sweeps.jobs.kind import Chunk, ChunkProgram, JobKind, Plan

__all__ = [
    "Chunk",
    "ChunkFailed",
    "ChunkProgram",
    "JobKind",
    "Plan",
    "chunks_left",
    "make_chunks",
    "rows_as_arrow",
    "run_chunk",
]
