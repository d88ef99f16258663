"""Devices, memory estimates and size limits: how large a chunk may be, and what cannot run at all.

The driver decides chunk sizes and refuses what cannot fit before any compute, so it needs the
memory of the devices a chunk will run on without running anything there: GPUs when Ray tasks
get them (``ray.gpus_per_task > 0``, asked of ``nvidia-smi``, never of JAX, so the driver does not
start JAX's GPU backend for workers that will), TPU chips when Ray tasks get them
(``ray.tpus_per_task``: assumed until a worker reports JAX's own ``memory_stats()``, see
``sweeps.executors.ray_executor``), or JAX's devices when chunks run in this process; the host's memory
otherwise. A chunk's process spreads its models over all its devices (``sweeps.jobs.devices``), so a
chunk holds up to ``Device.count`` times what one device holds. Per-model memory comes from the
static spec (``TrainSpec``/``FiniteSpec``) by counting the arrays one step keeps (tests compare the
counts with XLA's own memory analysis).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from toymodels.finite import FiniteSpec, piece_layout
from toymodels.train import EVAL_BATCH, TrainSpec

if TYPE_CHECKING:
    from sweeps.config import Config

GiB = 2**30
# CPU chunks: the working-set budget of one chunk, so that its arrays stay near the caches, and
# the most models per chunk (more gives a worker no more speed, only longer chunks).
CPU_CHUNK_BUDGET = 256 * 2**20
CPU_MAX_CHUNK = 4096
# GPU chunks: the share of a task's GPU memory a chunk's arrays may take (the rest: XLA's
# workspace, fragmentation, estimate error), and the most models per chunk.
GPU_MEMORY_SHARE = 0.5
GPU_MAX_CHUNK = 65_536
GPU_MEMORY_UNKNOWN = 16 * GiB  # a GPU task's memory when nvidia-smi cannot tell (a remote cluster)
TPU_MEMORY_UNKNOWN = (
    16 * GiB
)  # a TPU chip's memory until a worker reports it (v5e's; v4, v6e 32, v5p 95)
HOST_MEMORY_SHARE = 0.8  # of the host's available memory, split between the workers running at once
# Size limits of a plan: every model is a Python object in the driver before anything runs.
MAX_AXIS_VALUES = 100_000
MAX_PLAN_MODELS = 1_000_000
MAX_PLAN_BYTES = 4 * GiB
PLAN_BYTES_PER_MODEL = 1024  # a ModelPoint and its grid coordinates, without its per-feature tuples
PLAN_BYTES_PER_FEATURE = 2 * 32  # density and importance, one Python float (and its slot) each
MAX_STEPS = 2**31 - 1  # the step counter is an int32/uint32 inside the compiled program
MAX_SNAPSHOTS = 1_000_000  # per model: every snapshot is a stored list entry of every row


def _size_error(key: str, message: str):
    """A ConfigError (imported here: sweeps.config imports this module)."""
    from sweeps.config import ConfigError

    return ConfigError(key, message)


@dataclass(frozen=True)
class Device:
    """Where a chunk runs: ``platform`` "cpu", "gpu" or "tpu", the memory a chunk may use on each
    of its devices, and how many devices its process spreads the chunk's models over."""

    platform: str
    memory_bytes: int  # per device
    name: str
    count: int = 1

    @property
    def is_gpu(self) -> bool:
        return self.platform == "gpu"

    @property
    def is_accelerator(self) -> bool:
        """A GPU or TPU: chunks fill its memory (few, large) instead of the CPU's caches."""
        return self.platform in ("gpu", "tpu")


def _gib(n: float) -> str:
    return f"{n / GiB:,.1f} GiB"


def nvidia_smi_memory() -> list[int] | None:
    """Total memory in bytes of each GPU ``nvidia-smi`` lists on this machine; None without one.
    Asks the driver's tool, not JAX: the driver never starts JAX's GPU backend for Ray's workers."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        return [int(float(line)) * 2**20 for line in out.split() if line.strip()] or None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def host_memory_bytes() -> int:
    """Memory available to new work on this host (``MemAvailable``; total memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_memory(device) -> int | None:
    """What JAX's allocator may use on ``device`` (``memory_stats()``' bytes_limit); None where
    JAX does not say (its CPU devices)."""
    stats = device.memory_stats() or {}
    return int(stats["bytes_limit"]) if stats.get("bytes_limit") else None


def local_device(limit: int = 0, where: str = "this process") -> Device:
    """The devices of JAX's default platform in this process (at most ``limit``, 0: all): what a
    chunk run here uses. Called in the process that runs chunks: the driver with
    ``sweep.executor=local``, or a Ray worker that reports it to the driver (``sweeps.executors.ray_executor``)."""
    from sweeps.jobs.devices import local_devices

    devices = local_devices(limit)
    first, count = devices[0], len(devices)
    if first.platform == "cpu":
        return Device(
            "cpu",
            int(HOST_MEMORY_SHARE * host_memory_bytes() / count),
            f"CPU ({where}, {count} device(s))",
            count,
        )
    reported = [device_memory(d) for d in devices]
    memory = [m for m in reported if m is not None]
    if len(memory) < len(
        reported
    ):  # an allocator that does not say: the driver's tool, else a small card
        memory = nvidia_smi_memory() or [
            GPU_MEMORY_UNKNOWN if first.platform == "gpu" else TPU_MEMORY_UNKNOWN
        ]
    return Device(first.platform, min(memory), f"{count}× {first.device_kind} ({where})", count)


def chunk_device(config: Config) -> Device:
    """The devices one chunk of ``config`` runs on, the memory it may use on each, and how many."""
    r = config.ray
    if config.sweep.executor == "local":
        return local_device(config.sweep.devices)
    if r.tpus_per_task > 0:  # the driver never starts JAX's TPU backend: it would hold the chips
        return Device(
            "tpu",
            TPU_MEMORY_UNKNOWN,
            f"{r.tpus_per_task:g} TPU chip(s) per task, memory unknown here: "
            "assumed 16 GiB per chip",
            int(r.tpus_per_task),
        )
    if r.gpus_per_task > 0:
        smi = nvidia_smi_memory()
        share = min(r.gpus_per_task, 1.0)  # a fraction of one card; whole cards are each a device
        total = min(smi) if smi else GPU_MEMORY_UNKNOWN
        what = f"{r.gpus_per_task:g} GPU per task" + (
            "" if smi else ", memory unknown here: assumed 16 GiB"
        )
        return Device("gpu", int(total * share), what, max(1, int(r.gpus_per_task)))
    workers = max(1, int((r.num_cpus or os.cpu_count() or 1) / r.cpus_per_task))
    return Device(
        "cpu", int(HOST_MEMORY_SHARE * host_memory_bytes() / workers), f"CPU, {workers} worker(s)"
    )


# ---------------------------------------------------------------- per-model memory


def train_spec_terms(spec: TrainSpec) -> dict[str, int]:
    """Bytes one model of ``spec`` keeps while training, by what sets them: the batch (each block's
    packed uniforms, inputs, hidden and output activations and their gradients, and the evaluation
    batch), the weights (parameters, gradients, AdamW's two moments) and the snapshots."""
    n, m = spec.n_features, spec.n_hidden
    block = spec.batch_size // max(spec.batch_blocks, 1)
    batch = 4 * (8 * n + 4 * m) * max(block, EVAL_BATCH)
    weights = 4 * 6 * (2 * n * m + n)
    snapshots = 4 * n_snapshots(spec.steps, spec.snapshot_every) * (2 * n + 1)
    return {"batch": batch, "weights": weights, "snapshots": snapshots}


def finite_spec_terms(spec: FiniteSpec, platform: str = "cpu") -> dict[str, int]:
    """Bytes one finite-data model keeps: a piece's dense piece×n arrays (stored on the CPU; on a
    GPU counted too, as a bound), its per-point arrays, the sparse training and test sets with
    their hidden vectors, the weights and the snapshots."""
    n, m, K = spec.n_features, spec.n_hidden, spec.K
    B, P = piece_layout(spec.n_train, spec.piece_size, platform)
    B_test, P_test = piece_layout(spec.n_test, spec.piece_size, platform)
    piece = 4 * 6 * max(B, B_test) * n + 4 * (3 * m + 8) * max(B, B_test) * K
    data = (4 * (2 * K + 2) + 4 * (m + 4)) * (P * B + P_test * B_test)
    weights = 4 * 6 * (n * m + n) + 4 * 2 * (n * m + n)
    snapshots = 4 * 5 * n_snapshots(spec.steps, spec.snapshot_every)
    return {"piece": piece, "data": data, "weights": weights, "snapshots": snapshots}


def model_bytes(spec: TrainSpec | FiniteSpec, platform: str = "cpu") -> int:
    """Bytes one model of ``spec`` keeps while it trains on ``platform``."""
    terms = (
        finite_spec_terms(spec, platform)
        if isinstance(spec, FiniteSpec)
        else train_spec_terms(spec)
    )
    return sum(terms.values())


def n_snapshots(steps: int, every: int) -> int:
    """len(toymodels.train.snapshot_marks(steps, every)), computed without building it."""
    every = every if 0 < every < steps else steps
    return steps // every + (steps % every != 0)


def fill_device(per_model: int, device: Device) -> int:
    """Most models per chunk on an accelerator: as many as fill its share of the card's memory
    (few, large chunks), ``per_model`` bytes each."""
    return int(max(1, min(GPU_MAX_CHUNK, GPU_MEMORY_SHARE * device.memory_bytes // per_model)))


def fill_cache(working_set: int) -> int:
    """Most models per chunk on a CPU: as many as keep a chunk's working set (``working_set``
    bytes per model and step) near the caches."""
    return int(max(1, min(CPU_MAX_CHUNK, CPU_CHUNK_BUDGET // working_set)))


# ---------------------------------------------------------------- size limits


def check_axis_length(key: str, num: int) -> None:
    """Refuse a generated grid axis longer than MAX_AXIS_VALUES before its values are built."""
    if num > MAX_AXIS_VALUES:
        raise _size_error(
            key, f"{num:,} values; an axis may have at most {MAX_AXIS_VALUES:,}: lower num"
        )


def check_plan_size(config: Config, axis_lengths: dict[str, int]) -> None:
    """Refuse a plan whose models would not fit in the driver, from the axis lengths alone."""
    seeds = config.sweep.seeds
    n_models = seeds * math.prod(axis_lengths.values())
    factors = {"sweep.seeds": seeds, **{f"sweep.grid.{a}": k for a, k in axis_lengths.items()}}
    largest = max(factors, key=factors.__getitem__)
    listing = " × ".join(f"{k}={v:,}" for k, v in factors.items())
    if n_models > MAX_PLAN_MODELS:
        raise _size_error(
            largest,
            f"the plan has {n_models:,} models ({listing}), more than the "
            f"{MAX_PLAN_MODELS:,} one sweep may hold; lower {largest} or split the sweep",
        )
    n_key = "sweep.grid.n_features" if "n_features" in axis_lengths else "model.n_features"
    n_max = _max_n_features(config)
    plan_bytes = n_models * (PLAN_BYTES_PER_MODEL + PLAN_BYTES_PER_FEATURE * n_max)
    if plan_bytes > MAX_PLAN_BYTES:
        key = n_key if PLAN_BYTES_PER_FEATURE * n_max > PLAN_BYTES_PER_MODEL else largest
        raise _size_error(
            key,
            f"the plan of {n_models:,} models with up to {n_max:,} features each would take "
            f"{_gib(plan_bytes)} in the driver (per-feature densities and importances), more "
            f"than {_gib(MAX_PLAN_BYTES)}; lower {key}",
        )


def _max_n_features(config: Config) -> int:
    from sweeps.config import expand_axis

    grid = config.sweep.grid
    values = (
        expand_axis("n_features", grid["n_features"])
        if "n_features" in grid
        else [config.model.n_features]
    )
    return max(int(v) for v in values)


# Which key shrinks each memory term, for a static spec of an ordinary or a finite-data sweep.
_TERM_KEYS = {
    "batch": "train.batch_size",
    "weights": "model.n_features",
    "snapshots": "train.snapshot_every",
    "piece": "train.piece_size",
    "data": "data.n_train",
}


def check_spec(spec: TrainSpec | FiniteSpec, device: Device) -> None:
    """Refuse a static spec whose steps, snapshots or single model cannot fit ``device``."""
    if spec.steps > MAX_STEPS:
        raise _size_error(
            "train.steps",
            f"{spec.steps:,} steps; at most {MAX_STEPS:,} (the compiled "
            "program counts steps in 32 bits): lower train.steps",
        )
    S = n_snapshots(spec.steps, spec.snapshot_every)
    if S > MAX_SNAPSHOTS:
        raise _size_error(
            "train.steps",
            f"{spec.steps:,} steps with a snapshot every {spec.snapshot_every:,} make "
            f"{S:,} snapshots per model, more than {MAX_SNAPSHOTS:,}: raise train.snapshot_every "
            "or lower train.steps",
        )
    terms = (
        finite_spec_terms(spec, device.platform)
        if isinstance(spec, FiniteSpec)
        else train_spec_terms(spec)
    )
    need = sum(terms.values())
    if need > device.memory_bytes:
        largest = max(terms, key=terms.__getitem__)
        key = _TERM_KEYS[largest]
        if largest == "piece" and isinstance(spec, FiniteSpec) and spec.piece_size == 0:
            key = "train.piece_size"  # its default: name it, so that the message says how to shrink
        raise _size_error(
            key,
            f"one model needs about {_gib(need)} ({', '.join(f'{k} {_gib(v)}' for k, v in terms.items())}), "
            f"more than the {_gib(device.memory_bytes)} a chunk has on its device ({device.name}); "
            f"lower {key}",
        )


def check_chunk(per_model: int, n_models: int, device: Device) -> None:
    """Refuse a chunk of ``n_models`` of ``per_model`` bytes each (an explicit sweep.chunk_size)
    that cannot fit ``device``."""
    if n_models * per_model > device.memory_bytes:
        raise _size_error(
            "sweep.chunk_size",
            f"{n_models:,} models per chunk need about {_gib(n_models * per_model)} "
            f"({_gib(per_model)} each), more than the {_gib(device.memory_bytes)} a chunk has on its "
            f"device ({device.name}); lower sweep.chunk_size (0: sized from the device)",
        )


# ---------------------------------------------------------------- persistent compilation cache

COMPILE_CACHE_OFF = ("", "0", "off", "none", "false")


def compile_cache_dir() -> str | None:
    """Where compiled programs are kept between runs: JAX_COMPILATION_CACHE_DIR when set, else
    TOYMODELS_COMPILE_CACHE (off, 0 or none: no cache), else ~/.cache/toymodels/jax. A rerun,
    a resume or another sweep of the same shapes loads them instead of compiling (on 2 CPU cores
    15–20 s of compiling became 3–4 s of tracing and loading, measured); on a GPU the kernels'
    autotuning is kept too."""
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.environ.get("TOYMODELS_COMPILE_CACHE")
    if path is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "toymodels", "jax")
    return None if path.strip().lower() in COMPILE_CACHE_OFF else os.path.expanduser(path)


def use_compile_cache() -> str | None:
    """Point this process's JAX at ``compile_cache_dir()`` (Ray's workers get it from
    ``ray_executor.worker_env``); the directory, or None when the cache is off."""
    path = compile_cache_dir()
    if path is None:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    return path
