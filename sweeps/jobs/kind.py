"""What a job kind is, and the three objects every kind's models pass through: the typed ``Plan``,
its ``Chunk``s and a chunk's ``ChunkProgram``.

A *job kind* is what a sweep trains: toy models on fresh batches (``sweeps.jobs.toy``), on finite
datasets (``sweeps.jobs.finite``), sparse autoencoders (``sweeps.sae.job``). It is one
``JobKind`` object that supplies what differs between them: how a config becomes its models
(``plan``), what one model costs in memory (``working_set``, ``model_bytes``), the compiled
program of a chunk (``program``) and the store's columns of its models (``rows``). Everything
else happens once, in ``sweeps.jobs.chunks`` for every kind: model ids, chunk ids, splitting a
plan into chunks and padding them, the memory budget of a chunk, running a chunk's program, the
non-finite check, and (``sweeps.store``) writing the rows.

Data flows one way: config → ``Plan`` (``sweeps.plan.plan_sweep``, the only step that reads the
config) → ``Chunk``s (``make_chunks``) → executors run ``run_chunk`` on each → rows → the store
→ figures and wandb. A chunk is a plain payload: an executor ships it anywhere (Ray pickles it)
and nothing below the plan sees a config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import pandas as pd

from sweeps.jobs.devices import Placement
from sweeps.resources import Device


class Point(Protocol):
    """One model of a plan (a toy model, an SAE, ...): a frozen dataclass with at least these
    fields. ``coords`` are its grid coordinates (axis, value) in grid order; ``uid`` its stable
    31-bit id (``sweeps.jobs.chunks.model_uid``); ``order`` its position in the plan."""

    @property
    def coords(self) -> tuple[tuple[str, Any], ...]: ...

    @property
    def seed(self) -> int: ...

    @property
    def uid(self) -> int: ...

    @property
    def order(self) -> int: ...


class Spec(Protocol):
    """What the models of one chunk share: a frozen (hashable) dataclass whose ``steps`` is each
    model's training steps (the progress line counts model·steps)."""

    @property
    def steps(self) -> int: ...

    def __hash__(self) -> int: ...


SpecT = TypeVar("SpecT", bound=Hashable)
PointT = TypeVar("PointT")


@dataclass(frozen=True)
class Chunk(Generic[SpecT, PointT]):
    """Same-shaped models trained by one compiled program; identified by a hash of its content
    (``sweeps.jobs.chunks.chunk_id``)."""

    id: str
    job: JobKind[SpecT, PointT]  # what runs it (``run_chunk``); not part of its id
    spec: SpecT
    base_seed: int
    points: tuple[PointT, ...]
    # Models per program: a chunk's models are trained in slices of this many (the last repeating
    # its last model), one slice per device (``sweeps.jobs.devices``), so that every chunk of a spec
    # compiles once.
    pad_to: int
    # The user's own kinds (not built in) the chunk trains, carried to workers that never loaded
    # their plugin file (toymodels.plugins); not part of the chunk's id.
    kinds: tuple = ()
    # What else the chunk's program reads that its points do not hold (an SAE chunk's toy models'
    # weights, ``JobKind.carry``); not part of its id.
    carry: Mapping = field(default_factory=dict, hash=False, compare=False)
    placement: Placement = Placement()  # sweep.devices and sweep.sharding; not part of the id

    @property
    def n_models(self) -> int:
        return len(self.points)

    def padded(self) -> list[PointT]:
        """The chunk's points, the last repeated up to at least ``pad_to`` (``sweeps.jobs.devices``
        pads the last slice of a chunk of several)."""
        return list(self.points) + [self.points[-1]] * (self.pad_to - len(self.points))


@dataclass(frozen=True)
class ChunkProgram:
    """One chunk's compiled program and its arguments: ``fn(*args)`` trains every (padded) model.
    ``axes[i]`` is 0 when every leaf of ``args[i]`` has a leading models axis, None when it is the
    same for every model (what a program run over several devices slices). ``context``: what the
    rows need of the inputs (the trained per-model values, a source's arrays)."""

    fn: Callable
    args: tuple
    axes: tuple
    context: Any = None


@dataclass(frozen=True)
class Plan(Generic[SpecT, PointT]):
    """A sweep as typed values, built once from its config (``sweeps.plan.plan_sweep``): every
    model (its static spec and its point, in plan order) and what chunking needs."""

    job: JobKind[SpecT, PointT]
    units: tuple[tuple[SpecT, PointT], ...]
    base_seed: int
    chunk_size: (
        int  # most models per chunk and device (sweep.chunk_size); 0: from the device's memory
    )
    device: Device  # where the chunks run: their sizes and the memory checks
    carry: Mapping = field(
        default_factory=dict
    )  # what ``JobKind.carry`` picks each chunk's share from
    placement: Placement = Placement()  # how a chunk's process spreads it over its devices


class PlanFn(Protocol[SpecT, PointT]):
    def __call__(self, config: Any, device: Device) -> tuple[list[tuple[SpecT, PointT]], Mapping]:
        """Every model of ``config`` as (spec, point), in plan order, and what its chunks carry
        (``Plan.carry``; {} for most kinds). Refuses, before building any model, a plan too large
        for the driver or a spec that cannot fit ``device`` (a ConfigError naming the key)."""
        ...


class ProgramFn(Protocol[SpecT, PointT]):
    def __call__(self, chunk: Chunk[SpecT, PointT]) -> ChunkProgram:
        """The compiled program of ``chunk`` over its ``chunk.padded()`` models."""
        ...


class RowsFn(Protocol[SpecT, PointT]):
    def __call__(
        self, chunk: Chunk[SpecT, PointT], program: ChunkProgram, result: Any, seconds: float
    ) -> pd.DataFrame:
        """One row per model of ``chunk`` (not its padding) from the program's host ``result``;
        ``seconds``: the program's wall time."""
        ...


def _dataclass_fields(spec: Any) -> dict:
    return {"spec": dataclasses.asdict(spec)}


def _no_carry(carry: Mapping, points: Sequence) -> Mapping:
    return {}


def _no_kinds(spec: Any) -> tuple:
    return ()


def _grid_axes(config: Any) -> Sequence[str]:
    return list(config.sweep.grid)


@dataclass(frozen=True, eq=False)
class JobKind(Generic[SpecT, PointT]):
    """One job kind (the module docstring). Functions receive the kind's own spec and point types.

    - ``applies(config)``: whether a config is a sweep of this kind (``sweeps.plan.JOB_KINDS``
      asks each in turn; the first that says yes plans the sweep).
    - ``validate(config)``: the kind's checks, after the ones every config passes; a ConfigError
      naming the key.
    - ``plan``: ``PlanFn``.
    - ``working_set(spec)``: bytes one model's step touches: a CPU chunk holds as many models as
      keep that near the caches (``sweeps.resources.CPU_CHUNK_BUDGET``).
    - ``model_bytes(spec, platform)``: bytes one model keeps on a device while it trains: a GPU
      chunk holds as many as fill its share of the card, and an explicit sweep.chunk_size that
      cannot fit is refused. None: chunks are sized by ``working_set`` on every device.
    - ``pad_to_one_worker``: train every chunk in slices of the width it has with one worker on
      one device, so that its bits never depend on the executor or the device count (XLA may
      round a vmapped program's sums differently at another width); False: slices of the chunk's
      own size over its devices (toy models, as their stores were trained).
    - ``program``: ``ProgramFn``; ``checked(result) -> (loss, params)``: what the non-finite
      check reads (a model whose loss or any parameter is not finite fails its chunk).
    - ``rows``: ``RowsFn``: the store's columns, in the order the kind's stores have them.
    - ``id_fields(spec)``: the spec's part of a chunk id (default: its dataclass fields).
    - ``user_kinds(spec)``: the user's own kinds the spec names, carried to workers.
    - ``carry(plan_carry, points)``: a chunk's share of ``Plan.carry``.
    - ``noun``: what its models are called in messages ("model", "SAE").
    - ``columns``: the columns its rows must have beyond the ones every row has (uid, order, seed,
      chunk, the grid axes), each ``text``, ``integer``, ``finite`` (a finite floating-point
      number) or ``matrix R×C`` (an R×C matrix of finite numbers, R and C integer columns). The
      store checks every chunk against them before it counts as done or is read as a result; a
      damaged one is set aside and its models trained again (``sweeps.store.rows``).
    - ``row_axes(config)``: the grid axes every one of its rows has a column for (default: all of
      them); the store refuses a chunk without one of them.
    """

    name: str
    applies: Callable[[Any], bool]
    validate: Callable[[Any], None]
    plan: PlanFn[SpecT, PointT]
    working_set: Callable[[SpecT], int]
    program: ProgramFn[SpecT, PointT]
    checked: Callable[[Any], tuple[Any, Any]]
    rows: RowsFn[SpecT, PointT]
    model_bytes: Callable[[SpecT, str], int] | None = None
    pad_to_one_worker: bool = True
    id_fields: Callable[[SpecT], dict] = _dataclass_fields
    user_kinds: Callable[[SpecT], tuple] = _no_kinds
    carry: Callable[[Mapping, Sequence[PointT]], Mapping] = _no_carry
    noun: str = "model"
    doc: str = ""
    columns: Mapping[str, str] = field(default_factory=dict)
    row_axes: Callable[[Any], Sequence[str]] = _grid_axes
