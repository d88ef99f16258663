"""The sweep driver: plan, skip what is stored or claimed, execute, store each chunk as it finishes.

Several drivers may run one config on one ``sweep.out`` at once: each claims the models it trains
(``sweeps.store.locks``), trains only models nobody stored or claimed, then waits for what live others
hold, and takes over what a driver that died had claimed.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from sweeps.config import Config
from sweeps.executors.base import Executor, InProcessExecutor
from sweeps.jobs import Chunk, Plan, chunks_left
from sweeps.plan import plan_sweep
from sweeps.resources import use_compile_cache
from sweeps.store import DamagedRows, RowSchema, SweepStore
from sweeps.tracking import Tracker
from sweeps.tracking import check_config as check_tracking


@dataclass
class SweepReport:
    out: str
    planned: int  # models in the whole sweep
    already_done: int  # models found in the store before this run
    trained: int = 0
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    model_steps: int = 0
    stored: int | None = None  # planned models in the store at the end (results.parquet)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        rate = self.model_steps / self.seconds if self.seconds else 0.0
        stored = self.already_done + self.trained if self.stored is None else self.stored
        others = max(0, stored - self.already_done - self.trained)
        lines = [
            (
                f"{self.out}: {stored}/{self.planned} models stored ({self.trained} trained now, {self.already_done} "
                f"already there{f', {others} by another run meanwhile' if others else ''}) in {self.seconds:.1f}s, "
                f"{rate:,.0f} model·steps/s"
            )
        ]
        for f in self.failed:
            lines.append(f"FAILED chunk {f['chunk']} ({f['n_models']} models): {f['error']}")
        return "\n".join(lines)


class Progress:
    """One live line: chunks and models done, throughput, ETA."""

    def __init__(self, chunks: list[Chunk], stream=sys.stderr):
        self.total_chunks = len(chunks)
        self.total_models = sum(c.n_models for c in chunks)
        self.total_work = sum(c.n_models * c.spec.steps for c in chunks)
        self.chunks = self.models = self.work = self.failed = 0
        self.start = time.perf_counter()
        self.stream = stream

    def update(self, chunk: Chunk, failed: bool = False) -> None:
        self.chunks += 1
        self.failed += failed
        if not failed:
            self.models += chunk.n_models
            self.work += chunk.n_models * chunk.spec.steps
        elapsed = time.perf_counter() - self.start
        rate = self.work / elapsed if elapsed > 0 else 0.0
        eta = (self.total_work - self.work) / rate if rate > 0 else float("nan")
        text = (
            f"chunks {self.chunks}/{self.total_chunks}  models {self.models}/{self.total_models}  "
            f"{rate:,.0f} model·steps/s  ETA {eta:,.0f}s"
            + (f"  failed {self.failed}" if self.failed else "")
        )
        end = "\n" if self.chunks == self.total_chunks else ""
        print(f"\r{text}", end=end, file=self.stream, flush=True)


POLL_SECONDS = 1.0  # how often a driver waiting for another one's models looks at the store


def make_executor(config: Config) -> Executor:
    if config.sweep.executor == "local":
        return InProcessExecutor()
    from sweeps.executors.ray_executor import RayExecutor

    return RayExecutor(config.ray)


class _Executors:
    """The given executor, or one made from the config the first time a model is left to train
    (closed at the end)."""

    def __init__(self, config: Config, given: Executor | None):
        self.config, self.given = config, given
        self.made: Executor | None = None

    def get(self) -> Executor:
        if self.given is not None:
            return self.given
        if self.made is None:
            self.made = make_executor(self.config)
        return self.made

    def close(self) -> None:
        if self.made is not None:
            self.made.close()


@contextmanager
def interrupts_deferred(note: str):
    """A Ctrl-C inside prints ``note`` instead of cutting the block short (the main thread only:
    elsewhere Python delivers no signal anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    noted: list[int] = []

    def note_it(signum, frame):
        if not noted:
            noted.append(signum)
            print(f"\n{note}", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, note_it)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_sweep(
    config: Config, executor: Executor | None = None, progress: bool = True, on_prepared=None
) -> SweepReport:
    """Train every model of ``config``'s grid not yet in ``sweep.out``; store each chunk whole.

    Without an ``executor``, one is made from ``sweep.executor`` (a local Ray by default) and
    closed at the end, even through a second Ctrl-C; only when some model is left to train.
    ``on_prepared(root)`` runs once the store has accepted this config (the CLI's record of the
    command: a refused run writes nothing into the store).
    """
    use_compile_cache()  # before anything compiles: programs kept between runs (docs/ray.md)
    plan = plan_sweep(config)
    check_tracking(config, len(plan.units))
    store = SweepStore(config.sweep.out)
    store.prepare(
        config, len(plan.units), RowSchema.of_job(plan.job.columns, plan.job.row_axes(config))
    )
    if on_prepared is not None:
        on_prepared(store.root)
    with store.locked():
        claim = store.claim()
    executors = _Executors(config, executor)
    try:
        return _drive(config, plan, store, claim, executors, progress)
    finally:
        with interrupts_deferred(
            "still stopping the local Ray this run started, so that none of it is left running"
        ):
            executors.close()
        claim.release()


def _claim_next(store, claim, models, attempted: set[int]):
    """In one exclusive step: what is stored, what other live drivers hold, and the models left
    to train (nobody stored or claimed them, this run has not tried them), claimed for this driver."""
    with store.locked():
        done = store.done_uids()
        held = set().union(*(store.others_claims(claim) or {}).values())
        skip = done | held | attempted
        todo = [(spec, p) for spec, p in models if p.uid not in skip]
        claim.hold(p.uid for _, p in todo)
    return todo, done, held


def _drive(config: Config, plan: Plan, store, claim, executors, progress) -> SweepReport:
    models = plan.units
    planned = {p.uid for _, p in models}
    report = SweepReport(out=str(store.root), planned=len(models), already_done=0)
    tracker = Tracker.for_sweep(config, store.root)  # wandb: never raises, a failure is a warning
    attempted: set[int] = set()  # trained or failed in this run: never tried twice
    waiting_noted = False
    start = time.perf_counter()
    try:
        todo, done, held = _claim_next(store, claim, models, attempted)
        report.already_done = len(planned & done)
        while True:
            if todo:
                _train(plan, store, todo, executors.get(), report, tracker, progress)
                attempted.update(p.uid for _, p in todo)
            elif not planned - done - attempted:
                break
            else:  # the rest is another live driver's: it stores them, or dies and leaves them to us
                if not waiting_noted:
                    waiting_noted = True
                    print(
                        f"{store.root}: waiting for {len(planned - done - attempted)} models another "
                        "toymodels-sweep is training on this sweep.out (it stores them; if it stops, this run "
                        "takes them over)",
                        file=sys.stderr,
                        flush=True,
                    )
                time.sleep(POLL_SECONDS)
            todo, done, held = _claim_next(store, claim, models, attempted)
        tracker.log_stored(store.chunk_files(exclude=held))  # stored earlier, never logged
    except BaseException:
        _finish(store, report, planned, tracker, start, quiet=True)
        raise
    _finish(store, report, planned, tracker, start)
    return report


def _finish(store, report, planned, tracker, start, quiet=False) -> None:
    """Consolidate and close tracking. ``quiet``: an error is already on its way out, and a second
    one from here (a disk still full, say) must not hide it."""
    report.seconds = time.perf_counter() - start
    try:
        with store.locked():
            table = store.consolidate()
            store.clear_failures(set(table["uid"]) if len(table) else set())
        report.stored = len(planned & set(table["uid"])) if len(table) else 0
    except (OSError, ValueError):
        if not quiet:
            raise
    finally:
        tracker.close()


def _train(plan: Plan, store, todo, executor, report, tracker, progress) -> None:
    # The whole plan's chunk boundaries, so a resume trains each model in its own chunk (its bits)
    chunks = chunks_left(
        plan, todo, min_chunks=executor.workers, device=getattr(executor, "device", None)
    )
    bar = Progress(chunks) if progress and chunks else None
    tracker.prewarm()

    def on_done(chunk: Chunk, table: pd.DataFrame | pa.Table) -> None:
        try:
            store.write_chunk(chunk.id, table)
        except DamagedRows as error:  # rows no store may hold (a user's kind, say): a failed chunk
            on_failed(chunk, error)
            return
        report.trained += chunk.n_models
        report.model_steps += chunk.n_models * chunk.spec.steps
        if bar:
            bar.update(chunk)
        if tracker.enabled:  # after the store, from the stored table (a Ray worker's is Arrow)
            tracker.log_chunk(
                chunk.id, table if isinstance(table, pd.DataFrame) else table.to_pandas()
            )

    def on_failed(chunk: Chunk, error: BaseException) -> None:
        info = {
            "n_models": chunk.n_models,
            "first_model": dict(chunk.points[0].coords, seed=chunk.points[0].seed),
            "uids": [int(p.uid) for p in chunk.points],
        }
        store.write_failure(chunk.id, error, info)
        report.failed.append(dict(info, chunk=chunk.id, error=f"{type(error).__name__}: {error}"))
        if bar:
            bar.update(chunk, failed=True)

    executor.run(chunks, on_done, on_failed)
