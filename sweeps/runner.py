"""The sweep driver: plan, skip what is stored, execute, store each chunk as it finishes."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import pandas as pd

from sweeps.config import Config
from sweeps.execute import Executor, InProcessExecutor
from sweeps.plan import Chunk, make_chunks, plan_models
from sweeps.resources import use_compile_cache
from sweeps.store import SweepStore
from sweeps.tracking import Tracker, check_config as check_tracking


@dataclass
class SweepReport:
    out: str
    planned: int  # models in the whole sweep
    already_done: int  # models found in the store before this run
    trained: int = 0
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    model_steps: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        rate = self.model_steps / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.out}: {self.already_done + self.trained}/{self.planned} models stored "
            f"({self.trained} trained now, {self.already_done} already there) in {self.seconds:.1f}s, "
            f"{rate:,.0f} model·steps/s"
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
        text = (f"chunks {self.chunks}/{self.total_chunks}  models {self.models}/{self.total_models}  "
                f"{rate:,.0f} model·steps/s  ETA {eta:,.0f}s" + (f"  failed {self.failed}" if self.failed else ""))
        end = "\n" if self.chunks == self.total_chunks else ""
        print(f"\r{text}", end=end, file=self.stream, flush=True)


def make_executor(config: Config) -> Executor:
    if config.sweep.executor == "local":
        return InProcessExecutor()
    from sweeps.ray_executor import RayExecutor

    return RayExecutor(config.ray)


def run_sweep(config: Config, executor: Executor | None = None, progress: bool = True) -> SweepReport:
    """Train every model of ``config``'s grid not yet in ``sweep.out``; store each chunk whole.

    Without an ``executor``, one is made from ``sweep.executor`` (a local Ray by default) and
    closed at the end; only when some model is left to train.
    """
    use_compile_cache()  # before anything compiles: programs kept between runs (README: Where chunks run)
    models = plan_models(config)
    check_tracking(config, len(models))
    store = SweepStore(config.sweep.out)
    store.prepare(config)
    done = store.done_uids()
    todo = [(spec, p) for spec, p in models if p.uid not in done]
    if executor is None and todo:
        executor = make_executor(config)
        try:
            return _run(config, store, models, todo, executor, progress)
        finally:
            executor.close()
    return _run(config, store, models, todo, executor or InProcessExecutor(), progress)


def _run(config, store, models, todo, executor, progress) -> SweepReport:
    chunks = make_chunks(config, todo, min_chunks=executor.workers)
    report = SweepReport(out=str(store.root), planned=len(models), already_done=len(models) - len(todo))
    bar = Progress(chunks) if progress and chunks else None
    tracker = Tracker.for_sweep(config, store.root)  # wandb: never raises, a failure is a warning
    if chunks:
        tracker.prewarm()

    def on_done(chunk: Chunk, table: pd.DataFrame) -> None:
        store.write_chunk(chunk.id, table)
        report.trained += chunk.n_models
        report.model_steps += chunk.n_models * chunk.spec.steps
        if bar:
            bar.update(chunk)
        tracker.log_chunk(chunk.id, table)  # after the store, from the stored table

    def on_failed(chunk: Chunk, error: BaseException) -> None:
        info = {"n_models": chunk.n_models, "first_model": dict(chunk.points[0].coords, seed=chunk.points[0].seed)}
        store.write_failure(chunk.id, error, info)
        report.failed.append(dict(info, chunk=chunk.id, error=f"{type(error).__name__}: {error}"))
        if bar:
            bar.update(chunk, failed=True)

    start = time.perf_counter()
    try:
        executor.run(chunks, on_done, on_failed)
        tracker.log_stored(store.chunks_dir.glob("*.parquet"))  # stored earlier, never logged
    finally:
        report.seconds = time.perf_counter() - start
        store.consolidate()
        tracker.close()
    return report
