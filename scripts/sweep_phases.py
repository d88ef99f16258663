"""Where a sweep's wall time goes (docs/ray.md, "Where a sweep's time goes"): one sweep run as
``toymodels-sweep`` runs it, with the driver's phases timed by wrapping the functions that do
them (no profiler: its own cost would land on the Python-heavy phases). A chunk's own phases are
timed where they run, in this process (``sweep.executor=local``); on Ray they are inside "Ray
task", which also holds the worker's start and the rows' trip back.

    scripts/sweep-phases [--experiment NAME] [--keep DIR] [OVERRIDES...]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
import time
from collections import defaultdict

START = time.perf_counter()

import jax  # noqa: E402,F401 - timed as an import of the driver

import sweeps.executors.base  # noqa: E402
import sweeps.jobs.chunks  # noqa: E402
import sweeps.jobs.devices  # noqa: E402
import sweeps.runner  # noqa: E402
import sweeps.store  # noqa: E402
import sweeps.tracking  # noqa: E402
from sweeps.api import compose  # noqa: E402
from sweeps.plan import job_kind_of  # noqa: E402

IMPORTS = time.perf_counter() - START
SECONDS: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)

# (label, owner, attribute): the label's seconds are every call's, wherever it is called from.
PHASES = [
    ("plan (models, ids, device)", sweeps.runner, "plan_sweep"),
    ("store: check and bind the config", sweeps.store.SweepStore, "prepare"),
    ("executor: start (a local Ray)", sweeps.runner, "make_executor"),
    ("chunks: cut the plan", sweeps.runner, "chunks_left"),
    ("store: claims, stored models", sweeps.runner, "_claim_next"),
    ("chunk: program's arguments", None, "program"),
    ("chunk: compile + train", sweeps.jobs.devices, "run_on_devices"),
    ("chunk: finite check", sweeps.jobs.chunks, "check_finite"),
    ("chunk: rows", None, "rows"),
    ("store: write a chunk", sweeps.store.SweepStore, "write_chunk"),
    ("  to parquet (every write)", sweeps.store, "_arrow"),
    ("  rows check (every check)", sweeps.store, "check_rows"),
    ("  atomic write + fsync (every file)", sweeps.store, "atomic_write"),
    ("wandb: log a chunk", sweeps.tracking.Tracker, "log_chunk"),
    ("wandb: close", sweeps.tracking.Tracker, "close"),
    ("store: results.parquet", sweeps.store.SweepStore, "consolidate"),
    ("  read the chunks", sweeps.store.SweepStore, "table"),
    ("executor: stop", sweeps.runner._Executors, "close"),
]
# What Ray adds around a chunk when it runs there (``patch`` times ``ray.wait`` and ``ray.get``).
RAY_TASK = "Ray task (worker start, chunk, rows back)"
RAY_GET = "Ray: receive the rows"
# The phases that do not overlap, their sum against the run's total: all but the indented ones,
# which are parts of the phase above them.
TOP = {label for label, _, _ in PHASES if not label.startswith(" ")} | {RAY_TASK, RAY_GET}


def timed(label: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SECONDS[label] += time.perf_counter() - start
            CALLS[label] += 1

    return wrapper


def patch(job) -> None:
    for label, owner, name in PHASES:
        if owner is None:  # the job kind's own function (a frozen dataclass's field)
            object.__setattr__(job, name, timed(label, getattr(job, name)))
        else:
            setattr(owner, name, timed(label, getattr(owner, name)))
    try:
        import ray
    except ImportError:
        return
    ray.wait = timed(RAY_TASK, ray.wait)
    ray.get = timed(RAY_GET, ray.get)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="tms_phase_2d")
    parser.add_argument(
        "--keep", help="sweep.out to keep (default: a temporary directory, removed)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, as toymodels-sweep takes them"
    )
    args = parser.parse_args()
    out = args.keep or tempfile.mkdtemp(prefix="sweep-phases-")
    try:
        start = time.perf_counter()
        config = compose(args.experiment, [*args.overrides, f"sweep.out={out}"])
        composed = time.perf_counter() - start
        patch(job_kind_of(config))
        start = time.perf_counter()
        report = sweeps.runner.run_sweep(config, progress=False)
        total = time.perf_counter() - start
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    print(
        f"{args.experiment} {' '.join(args.overrides)}: {report.trained} models trained "
        f"({report.planned} planned), executor {config.sweep.executor}"
    )
    print(f"{'phase':44s} {'seconds':>8s} {'calls':>6s}")
    print(f"{'imports (jax, sweeps)':44s} {IMPORTS:8.2f}")
    print(f"{'config (hydra compose, validate)':44s} {composed:8.2f}")
    labels = [label for label, _, _ in PHASES]
    at = labels.index("store: write a chunk")
    labels[at:at] = [RAY_TASK, RAY_GET]
    for label in labels:
        if CALLS[label]:
            print(f"{label:44s} {SECONDS[label]:8.2f} {CALLS[label]:6d}")
    accounted = sum(SECONDS[label] for label in TOP)
    print(f"{'other (driver loop, tracking setup, ...)':44s} {total - accounted:8.2f}")
    print(f"{'run_sweep in all':44s} {total:8.2f}")


if __name__ == "__main__":
    main()
