"""Run chunks as Ray tasks: over the local cores by default, or on an existing cluster.

Each chunk is one task (``num_cpus``/``num_gpus``/TPU chips from config; a task spreads its chunk
over all the devices it gets, ``sweeps.jobs.devices``). Results come back to the driver through Ray's
object store, and the driver stores each chunk as soon as it is ready, so no shared filesystem is
needed. A task whose worker process dies is retried by Ray (``max_retries``); a chunk that raises
(a diverged model) is not retried and is reported as failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from sweeps.config import ConfigError, RayConf
from sweeps.executors.base import OnDone, OnFailed
from sweeps.jobs import Chunk, rows_as_arrow, run_chunk
from sweeps.resources import Device, compile_cache_dir, nvidia_smi_memory

PROBE_TIMEOUT_S = 180  # how long the driver waits for a worker to report its devices


_HELD_CORES: list = []  # lock files of the cores this worker process holds, open while it lives


def usable_cores() -> list[int]:
    """The cores this process may run on (all of them where the OS has no CPU affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin_to_free_cores(count: int, lock_dir: str | None = None) -> list[int]:
    """Pin this process to ``count`` cores that no other process pinned this way holds; the cores
    it pinned to ([] when it could not: fewer free cores, or pinned already).

    Each core is claimed by an exclusive lock on a file in the temporary directory, released by the
    OS when the process exits (a killed worker frees its core). Must run before JAX starts its CPU
    backend: XLA sizes its thread pool from the cores the process may use, so a pinned worker runs
    one thread per core instead of every worker running one per core of the machine. Measured on 2
    cores (n=2, m=1, 1,250 models per process): two pinned processes 245k models·steps/s in all,
    two unpinned 199k, one process on both cores 229k."""
    import fcntl
    import tempfile
    from pathlib import Path

    if not hasattr(os, "sched_setaffinity"):  # macOS and Windows have no CPU affinity: not pinned
        return []
    allowed = usable_cores()
    if _HELD_CORES or count < 1 or count >= len(allowed):
        return []
    locks = Path(lock_dir or Path(tempfile.gettempdir()) / "toymodels-cores")
    locks.mkdir(parents=True, exist_ok=True)
    held, cores = [], []
    for cpu in allowed:
        handle = open(locks / f"cpu{cpu}.lock", "w")  # noqa: SIM115 - held (locked) while the worker lives
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        held.append(handle)
        cores.append(cpu)
        if len(cores) == count:
            os.sched_setaffinity(0, cores)
            _HELD_CORES.extend(held)
            return cores
    for handle in held:
        handle.close()
    return []


def _ray_run_chunk(chunk: Chunk, pin_cores: int = 0):
    """The chunk's rows as the Arrow table the driver stores (``sweeps.jobs.rows_as_arrow``)."""
    import ray

    if pin_cores:
        pin_to_free_cores(pin_cores)
    table = run_chunk(chunk)
    table["ray_node"] = ray.get_runtime_context().get_node_id()
    return rows_as_arrow(table)


def worker_env(conf: RayConf) -> dict[str, str]:
    """Environment of the worker processes: JAX on the GPUs Ray assigned without taking all of
    their memory, on the TPU chips Ray assigned (and nothing else: a worker that cannot open them
    fails instead of training on its CPU), or on the CPU when the task has neither; the driver's
    compilation cache (a worker on another machine of a cluster keeps its own there, at the same path)."""
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if conf.tpus_per_task:
        env["JAX_PLATFORMS"] = "tpu"
    elif conf.gpus_per_task == 0:
        env["JAX_PLATFORMS"] = "cpu"
    cache = compile_cache_dir()
    if cache:
        env["JAX_COMPILATION_CACHE_DIR"] = cache
    return env


def remote_task(function, conf: RayConf, fresh_worker: bool = False, **options):
    """``function`` as a Ray task of a chunk's shape: its cores, GPUs or TPU chips, retries and
    environment (``options`` override). A TPU chip is open in one process at a time and a worker
    keeps its chips while it lives, so every TPU task (and a ``fresh_worker`` one) gets a worker
    process of its own, which frees them when it exits."""
    import ray

    resources = {"TPU": int(conf.tpus_per_task)} if conf.tpus_per_task else None
    remote = (
        ray.remote(max_calls=1)(function)
        if conf.tpus_per_task or fresh_worker
        else ray.remote(function)
    )
    return remote.options(
        **{
            **dict(
                num_cpus=conf.cpus_per_task,
                num_gpus=conf.gpus_per_task,
                resources=resources,
                max_retries=conf.max_retries,
                retry_exceptions=False,
                runtime_env={"env_vars": worker_env(conf)},
            ),
            **options,
        }
    )


def _report_device() -> Device:
    from sweeps.resources import local_device

    return local_device(where="reported by a Ray worker")


def probe_device(conf: RayConf, timeout: float = PROBE_TIMEOUT_S) -> Device | None:
    """The devices one chunk task gets and their memory, as a worker of that shape reports them
    from JAX (``memory_stats()``): for TPU chips, and GPUs the driver's nvidia-smi cannot see. The
    worker exits after it (frees its chips). None, with a warning, when none answered in time."""
    import ray

    ref = remote_task(_report_device, conf, fresh_worker=True, max_retries=0).remote()
    try:
        device = ray.get(ref, timeout=timeout)
    except (ray.exceptions.GetTimeoutError, ray.exceptions.RayError) as error:
        ray.cancel(ref, force=True)
        print(
            f"warning: no Ray worker reported its devices ({type(error).__name__}); chunk sizes assume "
            "16 GiB per device (set sweep.chunk_size to choose)",
            file=sys.stderr,
            flush=True,
        )
        return None
    if device.is_gpu and conf.gpus_per_task < 1:  # a fraction of the card
        device = Device(
            device.platform, int(device.memory_bytes * conf.gpus_per_task), device.name, 1
        )
    return device


class RayExecutor:
    def __init__(self, conf: RayConf | None = None):
        import ray

        self.conf = conf or RayConf()
        self._started = False
        self._local = None
        if not ray.is_initialized():
            address = self.conf.address or os.environ.get("RAY_ADDRESS") or None
            if (
                address is None
            ):  # a Ray of our own: loopback only, this run's token (sweeps.executors.ray_local)
                from sweeps.executors.ray_local import LocalRay

                self._started = True
                self._local = LocalRay(self.conf, log=_warning)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        resources = ray.cluster_resources()
        slots = resources.get("CPU", 1) / max(self.conf.cpus_per_task, 1e-9)
        for key, name, per_task in (
            ("ray.gpus_per_task", "GPU", self.conf.gpus_per_task),
            ("ray.tpus_per_task", "TPU", self.conf.tpus_per_task),
        ):
            if per_task > 0:
                slots = min(slots, resources.get(name, 0) / per_task)
                if slots < 1:
                    self.close()
                    raise ConfigError(
                        key,
                        f"{per_task:g} per task, but the Ray cluster has {resources.get(name, 0):g} "
                        f"{name}(s){' (Ray finds the chips of a TPU VM by itself)' if name == 'TPU' else ''}",
                    )
        self.workers = max(1, int(slots))
        # Where the driver cannot see the devices of a task, a worker reports them (chunk sizes).
        unseen = self.conf.tpus_per_task or (
            self.conf.gpus_per_task and nvidia_smi_memory() is None
        )
        self.device = probe_device(self.conf) if unseen else None

    def run(self, chunks: Sequence[Chunk], on_done: OnDone, on_failed: OnFailed) -> None:
        import ray
        from ray import cloudpickle
        from ray.exceptions import RayTaskError

        from toymodels.plugins import plugin_modules

        for module in plugin_modules({kind for chunk in chunks for kind in chunk.kinds}):
            cloudpickle.register_pickle_by_value(module)  # a user's kinds travel with the chunks
        task = remote_task(_ray_run_chunk, self.conf)
        # Pin whole-core CPU tasks (a fraction of a core, a GPU or a TPU task, is left to the OS).
        cpus, accelerated = (
            self.conf.cpus_per_task,
            self.conf.gpus_per_task or self.conf.tpus_per_task,
        )
        pin = int(cpus) if self.conf.pin_cpus and not accelerated and cpus == int(cpus) else 0
        pending = {task.remote(chunk, pin): chunk for chunk in chunks}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    chunk = pending.pop(ref)
                    try:
                        table = ray.get(ref)
                    except RayTaskError as error:  # the chunk raised: its own fault, not retried
                        on_failed(
                            chunk, error.cause if isinstance(error.cause, BaseException) else error
                        )
                    except ray.exceptions.RayError as error:  # retries exhausted, or lost
                        on_failed(chunk, error)
                    else:
                        on_done(chunk, table)
        finally:
            # Interrupted: stop what is still running; finished chunks are stored. A local Ray of
            # our own is shut down whole by close(), which kills its workers: cancelling tasks one
            # by one there can race a task's completion and abort the driver inside Ray (a known
            # Ray core race, "Tried to complete task that was not pending"), so only the tasks
            # on a cluster we joined are cancelled.
            if not self._started:
                for ref in pending:
                    ray.cancel(ref, force=True)

    def close(self) -> None:
        if (
            self._started and self._local is not None
        ):  # stops all of it, and restores the environment
            self._local.close()
        self._started = False


def _warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# The mark on a local Ray's processes and how they are stopped: sweeps.executors.ray_local.
from sweeps.executors.ray_local import OWNER  # noqa: E402,F401
from sweeps.executors.ray_local import marked_processes as _marked  # noqa: E402


def _processes_of(owner: str) -> list:
    return _marked(owner)
