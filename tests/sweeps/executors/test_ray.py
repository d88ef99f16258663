"""Sweeps on a real local Ray: fan-out, a killed worker, a failing chunk, Ctrl-C and resume."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import ray

from sweeps.executors.ray_executor import RayExecutor
from sweeps.runner import run_sweep
from sweeps.store import as_matrix, read_results
from tests.helpers import cli, compose_config, tiny

pytestmark = pytest.mark.slow

TASK_TITLE = "ray::_ray_run_chunk"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def ray_overrides(out, *extra):
    return [a for a in tiny(out, *extra) if a != "sweep.executor=local"] + ["sweep.executor=ray"]


def test_cli_sweep_on_a_local_ray_with_two_workers_matches_in_process(tmp_path):
    grid = ["sweep.grid.density=[1.0,0.3,0.05]", "sweep.seeds=2"]
    result = cli(
        "toymodels-sweep",
        "experiment=tms_intro",
        *ray_overrides(tmp_path / "ray", *grid),
        "ray.num_cpus=2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    on_ray = read_results(tmp_path / "ray")
    assert len(on_ray) == 6 and on_ray["uid"].is_unique
    assert on_ray["chunk"].nunique() >= 2  # both workers got a chunk
    assert not ray.is_initialized()  # the CLI's local Ray was its own and is gone

    run_sweep(
        compose_config(["experiment=tms_intro", *tiny(tmp_path / "local", *grid)]), progress=False
    )
    in_process = read_results(tmp_path / "local")
    a, b = on_ray.sort_values("uid"), in_process.sort_values("uid")
    np.testing.assert_allclose(as_matrix(a["W"]), as_matrix(b["W"]), rtol=1e-5, atol=1e-6)


def test_workers_pin_to_distinct_free_cores_until_none_is_left(tmp_path, whole_machine):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("pinning needs CPU affinity (Linux)")
    cores = len(os.sched_getaffinity(0))
    if not 2 <= cores <= 8:
        pytest.skip("claims every core, one process each: for machines of 2 to 8 cores")
    code = (
        "import json, os, sys; from sweeps.executors.ray_executor import pin_to_free_cores; "
        f"claimed = pin_to_free_cores(1, {str(tmp_path)!r}); "
        "print(json.dumps([claimed, sorted(os.sched_getaffinity(0))]), flush=True); sys.stdin.read()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[3],
        )
        for _ in range(cores + 1)
    ]
    try:  # all alive at once: each holds its core until it exits
        reports = [json.loads(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            p.communicate("")
    everything = sorted(os.sched_getaffinity(0))
    assert sorted(c for claimed, _ in reports for c in claimed) == everything  # each core once
    assert sum(claimed == [] for claimed, _ in reports) == 1  # the last found none free: unpinned
    for claimed, affinity in reports:
        assert affinity == (claimed or everything)


def test_a_killed_worker_is_retried_and_every_model_is_stored_once(local_ray, tmp_path):
    out = tmp_path / "s"
    config = compose_config(
        [
            "experiment=tms_intro",
            *ray_overrides(out, "sweep.grid.density=[1.0,0.5,0.2,0.1]"),
            "train.steps=3000",
            "sweep.chunk_size=3",
        ]
    )
    outcome = {}
    driver = threading.Thread(
        target=lambda: outcome.setdefault(
            "report", run_sweep(config, RayExecutor(), progress=False)
        )
    )
    driver.start()
    killed = None
    deadline = time.time() + 120
    while killed is None and driver.is_alive() and time.time() < deadline:
        for proc in psutil.Process().children(
            recursive=True
        ):  # this test's Ray, no other on the machine
            try:
                cmdline = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if TASK_TITLE in cmdline:
                proc.kill()
                killed = proc.pid
                break
        time.sleep(0.05)
    driver.join(timeout=300)
    assert killed is not None, "no chunk task was seen running"
    report = outcome["report"]
    assert report.ok, report.summary()
    table = read_results(out)
    assert len(table) == 12 and table["uid"].is_unique


def test_a_failing_chunk_on_ray_is_recorded_and_the_others_complete(local_ray, tmp_path):
    out = tmp_path / "s"
    config = compose_config(
        [
            "experiment=tms_intro",
            *ray_overrides(out, "sweep.grid.density=[0.5]"),
            "+sweep.grid.weight_decay=[0.01,0.1,1e38]",
            "sweep.chunk_size=1",
            "sweep.seeds=1",
        ]
    )
    report = run_sweep(config, RayExecutor(), progress=False)
    assert report.trained == 2 and len(report.failed) == 1
    assert "ChunkFailed" in report.failed[0]["error"]
    assert len(read_results(out)) == 2


def test_ctrl_c_keeps_finished_chunks_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "s"
    args = [
        "experiment=tms_intro",
        *ray_overrides(out, "sweep.grid.density=[1.0,0.5,0.2,0.1,0.05]"),
        "train.steps=4000",
        "sweep.chunk_size=1",
        "sweep.seeds=1",
        "ray.num_cpus=1",
    ]
    exe = Path(sys.executable).with_name("toymodels-sweep")
    proc = subprocess.Popen(
        [str(exe), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    chunks = out / "chunks"
    deadline = time.time() + 180
    while time.time() < deadline and not (chunks.exists() and list(chunks.glob("*.parquet"))):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    kept = read_results(out)  # readable, and holds every chunk that finished
    assert 1 <= len(kept) < 5
    resumed = cli("toymodels-sweep", *args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{5 - len(kept)} trained now, {len(kept)} already there" in resumed.stdout
    final = read_results(out)
    assert len(final) == 5 and final["uid"].is_unique
    assert set(kept["uid"]) <= set(final["uid"])


def test_a_tpu_request_on_a_cluster_without_tpus_is_refused_naming_the_key(local_ray):
    from sweeps.config import ConfigError, RayConf

    with pytest.raises(
        ConfigError, match=r"ray.tpus_per_task: 4 per task, but the Ray cluster has 0 TPU"
    ):
        RayExecutor(RayConf(tpus_per_task=4))


def test_a_worker_of_a_task_s_shape_reports_its_devices(local_ray):
    """What the driver asks a worker when it cannot see a task's devices itself (TPU chips, or GPUs
    without nvidia-smi): here a CPU task's, from JAX on the worker."""
    from sweeps.config import RayConf
    from sweeps.executors.ray_executor import probe_device

    device = probe_device(RayConf())
    assert (device.platform, device.count) == ("cpu", 1) and device.memory_bytes > 0
    assert "reported by a Ray worker" in device.name
