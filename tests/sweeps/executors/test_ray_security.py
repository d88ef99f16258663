"""The Ray a sweep starts for itself is reachable from this machine only, refuses a stranger, and
dies with its driver (issue 22 items 2 and 8)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import tiny

ON_LINUX = Path("/proc/net/tcp").exists()


def _marked(token: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``token`` (the driver's, inherited by its Ray's)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.pid != os.getpid()
                and proc.environ().get("TOYMODELS_TEST_TOKEN") == token
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _cmdline(proc: psutil.Process) -> str:
    """``proc``'s command line, or "" once it has exited (it may between listing and reading)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _listening(pids: set[int]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket those processes listen on (/proc/net)."""
    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = psutil.Process(pid).name()
        except (OSError, psutil.Error):
            continue
    found = []
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hexaddr, port = local.split(":")
            raw = bytes.fromhex(hexaddr)
            words = b"".join(
                raw[i : i + 4][::-1] for i in range(0, len(raw), 4)
            )  # little-endian 32-bit words
            address = socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, words)
            found.append((address, int(port, 16), inodes[inode]))
    return found


def _loopback(address: str) -> bool:
    return (
        address.startswith("127.")  # noqa: PIE810
        or address in ("::1", "::ffff:127.0.0.1")
        or address.startswith("::ffff:127.")
    )


def _external_addresses() -> list[str]:
    return [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]


ATTACK = """
import os, sys, ray
from ray._private import ray_constants
ray_constants.ENABLE_RAY_CLUSTER = False  # else Ray turns 127.0.0.1 into this machine's network address
address, marker = sys.argv[1], sys.argv[2]
try:
    ray.init(address=address, log_to_driver=False)
    print("JOINED", flush=True)  # a breach already, whether or not a task gets a CPU

    @ray.remote
    def write():
        open(marker, "w").write("a stranger ran a task")

    ray.get(write.remote(), timeout=30)
    print("RAN")
except Exception as error:
    print("REFUSED", type(error).__name__)
"""


def _attack(address: str, marker: Path, patience: float = 120) -> str:
    """The issue's attack: another process, without credentials, joins the GCS and runs a task.

    Ray's client may retry a refused handshake for minutes: the answer is known, and the stranger
    stopped, as soon as it says the server refused its token (InvalidAuthToken); JOINED as soon as
    it is connected (a connected stranger whose task finds no free CPU is no less a breach); else its own verdict when it gives up, or HUNG after ``patience`` seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "TOYMODELS"))}
    env.update(RAY_AUTH_MODE="disabled", JAX_PLATFORMS="cpu")
    out, err = marker.with_name("stranger.out"), marker.with_name("stranger.err")
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", ATTACK, address, str(marker)],
            stdout=stdout,
            stderr=stderr,
            text=True,
            env=env,
        )
    try:
        deadline = time.time() + patience
        while proc.poll() is None and time.time() < deadline:
            if "JOINED" in out.read_text():
                return "JOINED"
            if "InvalidAuthToken" in err.read_text(errors="replace"):
                return "REFUSED (InvalidAuthToken, still retrying)"
            time.sleep(0.2)
        if proc.poll() is None:
            return "HUNG"
    finally:
        proc.kill()
        proc.wait()
    said = out.read_text().strip()
    if "JOINED" in said:
        return "JOINED"
    return said.splitlines()[-1] if said else "REFUSED (no output)"


@pytest.mark.slow
@pytest.mark.skipif(not ON_LINUX, reason="reads listening sockets from /proc/net")
def test_the_sweeps_own_ray_listens_on_loopback_refuses_strangers_and_dies_with_its_driver(
    tmp_path,
):
    token = f"toymodels-security-{os.getpid()}-{time.time_ns()}"
    out = tmp_path / "s"
    args = [
        "experiment=tms_intro",
        *[a for a in tiny(out) if a != "sweep.executor=local"],
        "sweep.grid.density=[1.0,0.5]",
        "sweep.seeds=1",
        "train.steps=1000000",
        "ray.num_cpus=1",
    ]
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", TOYMODELS_TEST_TOKEN=token, RAY_AUTH_MODE="disabled"
    )
    env.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen(
        [str(Path(sys.executable).with_name("toymodels-sweep")), *args],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not any(
            "_ray_run_chunk" in _cmdline(p) for p in _marked(token)
        ):
            time.sleep(0.2)
        processes = _marked(token)
        names = {p.name() for p in processes}
        assert any("_ray_run_chunk" in _cmdline(p) for p in processes), names
        time.sleep(3)  # the agents start their servers a moment later
        sockets = _listening({p.pid for p in _marked(token)})
        assert {name for _, _, name in sockets} >= {"gcs_server", "raylet"}, sockets
        exposed = [s for s in sockets if not _loopback(s[0])]
        assert not exposed, f"listening beyond this machine: {exposed}"

        gcs_port = next(port for _, port, name in sockets if name == "gcs_server")
        for host in _external_addresses()[
            :1
        ]:  # from the network: nothing answers at this machine's address
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host, gcs_port), timeout=5).close()
        marker = tmp_path / "stranger"  # from this machine, without this run's token: refused
        started = time.time()
        assert (
            _attack(f"127.0.0.1:{gcs_port}", marker).startswith("REFUSED") and not marker.exists()
        )
        print(f"the stranger was refused in {time.time() - started:.1f}s")
    finally:
        os.kill(
            driver.pid, signal.SIGKILL
        )  # kill -9 of the driver: nothing of its Ray may outlive it
        driver.wait(timeout=30)
    left = _marked(token)
    for _ in range(40):
        if not left:
            break
        time.sleep(0.25)
        left = _marked(token)
    assert not left, f"outlived the killed driver: {[p.name() for p in left]}"


def test_a_run_reaps_what_a_killed_drivers_ray_left_running(tmp_path):
    """A process marked by a driver that is gone (kill -9 of driver and watchdog) is stopped by the
    next run before it starts its own Ray; a live driver's is left alone."""
    from sweeps.executors.ray_local import OWNER, new_owner, reap_orphans

    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    dead = subprocess.Popen(sleeper, env=dict(os.environ, **{OWNER: "999999999-12.0-feed"}))
    alive = subprocess.Popen(
        sleeper, env=dict(os.environ, **{OWNER: new_owner()})
    )  # this process's mark
    try:
        time.sleep(0.5)
        lines = []
        assert (
            reap_orphans(lines.append, among={dead.pid, alive.pid}) == 1
        )  # (others' processes left alone)
        assert dead.wait(timeout=10) is not None and alive.poll() is None
        assert len(lines) == 1 and "a killed toymodels-sweep's Ray" in lines[0]
    finally:
        for proc in (dead, alive):
            proc.kill()
            proc.wait()
