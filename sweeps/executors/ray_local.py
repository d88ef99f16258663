"""The Ray a sweep starts for itself: reachable from this machine only, authenticated, and gone
with the driver that started it, however the driver ends (docs/security.md, "The local Ray").

* **Loopback.** The node's address is 127.0.0.1, so every process of this Ray (GCS, raylet, the
  workers, the dashboard and runtime-env agents, the autoscaler's metrics) listens on the loopback
  interface only: no other machine can reach it. Ray 2.60 turns a loopback node address into the
  machine's network address unless its ``ENABLE_RAY_CLUSTER`` switch is off (as it is on macOS
  and Windows); it is turned off for the moment of ``ray.init``.
* **Token.** ``ray.auth_mode=token`` (the default): a fresh random token for each run, given to
  this Ray's processes in their environment (``RAY_AUTH_TOKEN``) and written nowhere, so that
  another user of this machine cannot use it either. ``RAY_AUTH_MODE`` in the environment does
  not decide for this Ray (it does for a cluster joined with ``ray.address``); the previous
  environment is restored when the Ray stops.
* **Nothing outlives the driver.** Every process of this Ray carries a mark in its environment
  (``TOYMODELS_RAY_OWNER``, inherited from the driver while Ray starts). A watchdog process, started
  first, waits on a pipe from the driver: when the driver ends, even by kill -9, the pipe closes
  and the watchdog stops every process carrying the mark (Ray's dashboard and runtime-env agents
  otherwise outlive a killed driver by minutes). A run also stops, before starting its own Ray,
  what a dead driver's Ray left behind (its watchdog killed too).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time

OWNER = "TOYMODELS_RAY_OWNER"
LOOPBACK = "127.0.0.1"
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _create_time(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:  # gone, or no psutil  # noqa: BLE001
        return None


def new_owner() -> str:
    """This driver's mark: its pid and start time (a reused pid is another process) and a token."""
    pid = os.getpid()
    return f"{pid}-{_create_time(pid)}-{secrets.token_hex(4)}"


def owner_alive(owner: str) -> bool:
    """Whether the driver that wrote ``owner`` may still run. Only a mark of this version's form
    (pid, start time, token) whose pid is gone, or is now another process (another start time),
    counts as dead; a mark of any other form (an older version's) is never taken for dead."""
    parts = owner.split("-")
    if len(parts) != 3:
        return True
    try:
        pid, started = int(parts[0]), float(parts[1])
    except ValueError:
        return True
    now = _create_time(pid)
    return now is not None and abs(now - started) < 0.05


def marked_processes(owner: str | None = None) -> list:
    """This user's processes carrying a toymodels Ray mark (``owner``'s only, if given)."""
    try:
        import psutil  # a dependency of ray
    except ImportError:
        return []
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        try:
            if proc.pid == me:
                continue
            mark = proc.environ().get(OWNER)
            if mark and (owner is None or mark == owner) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:  # gone, or another user's
            continue
    return found


def stop(processes, timeout: float = 3.0) -> None:
    """Terminate those still running (psutil checks that a pid was not reused), then kill."""
    if not processes:
        return
    import psutil

    alive = [p for p in processes if p.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(alive, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def stop_owned(owner: str, rounds: int = 5, pause: float = 0.5) -> None:
    """Stop every process of ``owner``'s Ray, again while new ones appear (a raylet being stopped
    may start an agent meanwhile)."""
    for _ in range(rounds):
        left = marked_processes(owner)
        if not left:
            return
        stop(left)
        time.sleep(pause)


def reap_orphans(log=None, among: set[int] | None = None) -> int:
    """Stop what the Ray of a driver that died (kill -9, a crash) left running (of the processes
    ``among``, when given); the count stopped."""
    import psutil

    orphans = []
    for proc in marked_processes():
        if among is not None and proc.pid not in among:
            continue
        try:
            if not owner_alive(proc.environ().get(OWNER, "")):
                orphans.append(proc)
        except psutil.Error:
            continue
    if orphans and log is not None:
        names = sorted({p.name() for p in orphans if p.is_running()})
        log(
            f"stopping {len(orphans)} process(es) a killed toymodels-sweep's Ray left running ({', '.join(names)})"
        )
    stop(orphans)
    return len(orphans)


def watch(owner: str) -> None:
    """The watchdog's body: wait until the driver closes the pipe (or dies), then stop its Ray."""
    try:
        sys.stdin.buffer.read()
    except (OSError, KeyboardInterrupt):
        pass
    stop_owned(owner)


class _Watchdog:
    def __init__(self, owner: str):
        env = {k: v for k, v in os.environ.items() if k != OWNER}
        env[OWNER + "_WATCHDOG"] = owner
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from sweeps.executors.ray_local import watch; watch({owner!r})",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            close_fds=True,
        )

    def close(self) -> None:
        """Let it stop whatever is left, and wait a moment for it."""
        assert self.proc.stdin is not None  # started with stdin=PIPE
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)


def _reinitialise_ray_config() -> None:
    """Make this process's Ray read its authentication settings from the environment again (Ray
    reads them once, at import)."""
    with contextlib.suppress(ImportError, AttributeError):
        # ray's _raylet.pyi declares only its id classes and ObjectRef; the compiled module has
        # these (Ray 2.60); an older Ray without them is the ImportError suppressed here.
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


class LocalRay:
    """A local Ray started by ``ray.init`` on this machine's loopback interface; ``close`` stops
    all of it and restores the environment."""

    def __init__(self, conf, log=None):
        import ray

        self.owner = new_owner()
        self._saved = {name: os.environ.get(name) for name in _AUTH_ENV}
        self._closed = False
        reap_orphans(log)
        self._watchdog = _Watchdog(self.owner)
        try:
            self._start(ray, conf)
        except BaseException:
            self.close()
            raise

    def _start(self, ray, conf) -> None:
        for name in _AUTH_ENV:
            os.environ.pop(name, None)
        os.environ["RAY_AUTH_MODE"] = conf.auth_mode
        if conf.auth_mode == "token":
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(
                32
            )  # this run's, held by its processes only
        _reinitialise_ray_config()
        os.environ[OWNER] = self.owner  # inherited by every process of this Ray, and only those
        try:
            from ray._private import ray_constants
        except ImportError:
            cluster = None  # ray_constants is read only when cluster is not None
        else:
            cluster = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
        try:
            if cluster is not None:
                ray_constants.ENABLE_RAY_CLUSTER = False  # keep 127.0.0.1 as the node's address
            ray.init(
                num_cpus=conf.num_cpus or os.cpu_count(),
                num_gpus=conf.num_gpus,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _node_ip_address=LOOPBACK,
            )
        finally:
            os.environ.pop(OWNER, None)
            if cluster is not None:
                ray_constants.ENABLE_RAY_CLUSTER = cluster
        address = ray.get_runtime_context().gcs_address
        if not address.startswith(LOOPBACK + ":"):
            print(
                f"warning: the local Ray listens on {address}, not on the loopback interface only (this Ray "
                f"version ignores the node address): it relies on ray.auth_mode={conf.auth_mode} alone",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        import ray

        if self._closed:
            return
        self._closed = True
        try:
            ray.shutdown()  # initialised or not: stops a half-started local Ray too
        finally:
            stop_owned(self.owner, rounds=3, pause=0.2)
            self._watchdog.close()
            for name, value in self._saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _reinitialise_ray_config()
