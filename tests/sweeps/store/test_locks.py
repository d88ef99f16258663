"""Two toymodels-sweep processes on one sweep.out: never mixed, never both training one model."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from sweeps.store import read_results
from tests.helpers import tiny

# toymodels-sweep's own main(), with a barrier (not a change) in front of the store's first step:
# both processes wait there until the test says go, then check and write sweep.out together, as
# two commands started at once may. Their start-up times differ by far more than that step takes.
AT_ONCE = """
import os, sys, time
import sweeps.cli, sweeps.store
gate = sys.argv[1]
sys.argv = ["toymodels-sweep", *sys.argv[2:]]
prepare = sweeps.store.SweepStore.prepare

def at_the_gate(self, *args, **kw):
    open(f"{gate}.ready.{os.getpid()}", "w").close()
    while not os.path.exists(f"{gate}.go"):
        time.sleep(0.001)
    return prepare(self, *args, **kw)

sweeps.store.SweepStore.prepare = at_the_gate
sweeps.cli.main()
"""

BASE = [
    "experiment=tms_phase_2d_small",
    "sweep.grid.density=[1.0,0.2]",
    "sweep.grid.importance_decay=[1.0]",
    "sweep.seeds=2",
    "sweep.chunk_size=2",
]  # 4 models in 2 chunks


def _start(args, gate=None, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled")
    if gate is None:
        command = [str(Path(sys.executable).with_name("toymodels-sweep")), *args]
    else:
        command = [sys.executable, "-c", AT_ONCE, str(gate), *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw
    )


def _together(gate: Path, *arg_lists):
    procs = [_start(args, gate) for args in arg_lists]
    deadline = time.time() + 120
    while (
        len(list(gate.parent.glob(f"{gate.name}.ready.*"))) < len(procs) and time.time() < deadline
    ):
        time.sleep(0.01)
    (gate.parent / f"{gate.name}.go").touch()
    outputs = [p.communicate(timeout=240) for p in procs]
    return [(p.returncode, *o) for p, o in zip(procs, outputs)]


def _trained(stdout: str) -> tuple[int, int]:
    match = re.search(r"(\d+)/(\d+) models stored \((\d+) trained now", stdout)
    assert match, stdout
    return int(match[1]), int(match[3])


def test_two_configs_started_together_never_mix(tmp_path):
    out = tmp_path / "race"
    runs = _together(
        tmp_path / "gate",
        [*BASE, *tiny(out), "train.steps=40"],
        [*BASE, *tiny(out), "train.steps=20"],
    )
    results = sorted(runs, key=lambda r: r[0])
    assert [r[0] for r in results] == [0, 2], runs
    assert "already holds a different sweep" in results[1][2]
    table = read_results(out)
    assert len(table) == 4 and table["uid"].is_unique and table["steps"].nunique() == 1
    assert _trained(results[0][1]) == (4, 4)


def test_the_same_config_twice_at_once_trains_each_model_once(tmp_path):
    out = tmp_path / "twice"
    args = [*BASE, *tiny(out)]
    runs = _together(tmp_path / "gate", args, args)
    assert [r[0] for r in runs] == [0, 0], runs
    stored, trained = zip(*(_trained(r[1]) for r in runs))
    assert stored == (4, 4) and sum(trained) == 4, [r[1] for r in runs]
    table = read_results(out)
    assert len(table) == 4 and table["uid"].is_unique
    assert len(list((out / "chunks").glob("*.parquet"))) == 2  # every chunk stored once


def test_models_a_killed_driver_claimed_are_taken_over(tmp_path):
    out = tmp_path / "takeover"
    args = [*BASE, *tiny(out), "train.steps=5000"]
    first = _start(args, start_new_session=True)
    claims = out / "claims"
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.stat().st_size > 40 for p in claims.glob("*.json")):
        time.sleep(0.05)  # until the first driver holds its claim on all 4 models
    # Frozen, not yet killed: it holds its claim but cannot finish, however fast the machine is.
    os.killpg(first.pid, signal.SIGSTOP)
    second = _start(args)
    while time.time() < deadline and len(list(claims.glob("*.json"))) < 2:
        time.sleep(0.1)  # until the second one has looked at the store and found everything claimed
    time.sleep(0.5)
    assert first.poll() is None, "the first driver finished before it could be stopped"
    os.killpg(first.pid, signal.SIGKILL)  # the driver, with its in-process training, at once
    first.wait()
    stdout, stderr = second.communicate(timeout=240)
    assert second.returncode == 0, stderr
    assert "waiting for 4 models another toymodels-sweep is training" in stderr
    stored, trained = _trained(stdout)
    assert stored == 4 and trained > 0, stdout  # the rest, after the first was killed
    table = read_results(out)
    assert len(table) == 4 and table["uid"].is_unique and (table["steps"] == 5000).all()
    assert (
        list(claims.iterdir()) == []
    )  # the dead driver's claim was removed, the live one's released
    assert table["order"].is_monotonic_increasing
