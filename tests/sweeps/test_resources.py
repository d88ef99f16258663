"""Devices, memory estimates, device-aware chunking and size limits (sweeps/resources.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import jax
import jax.numpy as jnp
import pytest

from sweeps import resources
from sweeps.jobs import make_chunks
from sweeps.jobs.chunks import auto_chunk_size
from sweeps.jobs.toy import FRESH
from sweeps.plan import plan_sweep
from tests.helpers import cli, compose_config, memory_analysis
from toymodels import HParams, TrainSpec, train_many
from toymodels import finite as F
from toymodels.train import snapshot_marks

GPU_80 = resources.Device("gpu", 80 * resources.GiB, "an 80 GiB GPU")


# ---------------------------------------------------------------- size limits, refused before compute


@pytest.mark.parametrize(
    "override, key",
    [
        ("sweep.seeds=10000000", "sweep.seeds"),
        ("sweep.grid.density='geomspace(0.01, 1, 1000000000)'", "sweep.grid.density"),
        ("model.n_features=10000000", "model.n_features"),
        ("train.batch_size=100000000", "train.batch_size"),
        ("train.steps=1000000000000", "train.steps"),
    ],
)
def test_what_cannot_fit_is_refused_before_compute_naming_the_key(tmp_path, override, key):
    """Issue 18 item 4: each of these hung, took many GB or failed every chunk on main."""
    out = tmp_path / "out"
    result = cli(
        "toymodels-sweep",
        "experiment=tms_intro",
        override,
        f"sweep.out={out}",
        "wandb.mode=disabled",
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: {key}:" in result.stderr and (
        "lower" in result.stderr or "raise" in result.stderr
    )
    assert not (out / "chunks").exists()  # nothing planned, nothing stored


def test_a_finite_model_too_large_for_the_device_names_a_key():
    config = compose_config(["experiment=dd_paper", "train.piece_size=100000"])
    with pytest.raises(ValueError, match="train.piece_size"):
        plan_sweep(config, device=resources.Device("cpu", 8 * resources.GiB, "an 8 GiB CPU"))
    plan_sweep(config, device=GPU_80)  # the same fits on a large card


def test_snapshot_count_is_computed_without_building_the_marks():
    for steps, every in [(10, 3), (10, 5), (7, 0), (5, 10), (1, 1), (1000, 7)]:
        assert resources.n_snapshots(steps, every) == len(snapshot_marks(steps, every))


# ---------------------------------------------------------------- memory estimates against XLA's


def _xla_bytes_per_model(lowered, n_models: int) -> float:
    m = memory_analysis(lowered)
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / n_models


@pytest.mark.parametrize(
    "spec",
    [
        TrainSpec(n_features=5, n_hidden=2, steps=20, snapshot_every=5),
        TrainSpec(n_features=100, n_hidden=20, steps=20, batch_size=4096, snapshot_every=10),
        TrainSpec(n_features=2, n_hidden=1, steps=20, batch_blocks=8, snapshot_every=10),
        TrainSpec(n_features=400, n_hidden=30, steps=20, batch_size=2048, snapshot_every=1),
    ],
)
def test_train_memory_estimate_bounds_xla_memory_analysis(spec):
    N = 4
    sds = jax.ShapeDtypeStruct
    keys = jax.vmap(jax.random.key)(jnp.arange(N))
    hp = HParams(
        sds((N, spec.n_features), jnp.float32),
        sds((N, spec.n_features), jnp.float32),
        sds((N,), jnp.float32),
        sds((N,), jnp.float32),
    )
    actual = _xla_bytes_per_model(train_many.lower(spec, keys, hp), N)
    estimate = resources.model_bytes(spec)
    assert actual <= estimate <= 40 * actual


@pytest.mark.parametrize(
    "n, T, piece", [(1000, 3000, 0), (1000, 300, 0), (10_000, 100_000, 0), (2000, 5000, 256)]
)
def test_finite_memory_estimate_bounds_xla_memory_analysis(n, T, piece):
    spec = F.FiniteSpec(
        n_features=n,
        n_hidden=2,
        n_train=T,
        steps=4,
        warmup_steps=1,
        snapshot_every=2,
        max_active=F.max_active_for(n, 10 / n, T),
        piece_size=piece,
        n_test=2000,
    )
    N = 2
    sds = jax.ShapeDtypeStruct
    keys = jax.vmap(jax.random.key)(jnp.arange(N))
    hp = F.FiniteHParams(
        sds((N,), jnp.float32),
        sds((N, n), jnp.float32),
        sds((N,), jnp.float32),
        sds((N,), jnp.float32),
        sds((N,), jnp.uint32),
    )
    actual = _xla_bytes_per_model(F.train_finite_many.lower(spec, keys, hp), N)
    estimate = resources.model_bytes(spec, "cpu")
    assert actual <= estimate <= 40 * actual


# ---------------------------------------------------------------- device-aware chunking


def test_a_gpu_gets_few_large_chunks_and_a_cpu_keeps_cache_sized_ones():
    config = compose_config(["experiment=tms_phase_2d"])
    plan = plan_sweep(config, device=GPU_80)
    cpu = make_chunks(plan, min_chunks=2, device=resources.Device("cpu", 8 * resources.GiB, "CPU"))
    assert [c.n_models for c in cpu] == [1334] * 11 + [
        1326
    ]  # unchanged: the CPU working-set budget
    assert [c.n_models for c in make_chunks(plan, min_chunks=1)] == [16_000]
    four = make_chunks(plan, min_chunks=4)  # ray.gpus_per_task=0.25: four workers
    assert [c.n_models for c in four] == [4000] * 4


def test_gpu_chunks_fill_their_memory_share():
    spec = TrainSpec(n_features=100, n_hidden=20, batch_size=4096)
    size = auto_chunk_size(FRESH, spec, GPU_80)
    assert size * resources.model_bytes(spec) <= resources.GPU_MEMORY_SHARE * GPU_80.memory_bytes
    assert (size + 1) * resources.model_bytes(
        spec
    ) > resources.GPU_MEMORY_SHARE * GPU_80.memory_bytes


def test_ray_gpu_tasks_size_chunks_without_starting_jax_in_the_driver(tmp_path):
    """The driver asks nvidia-smi (here a stand-in on PATH printing two 80 GiB cards, since this
    machine has none) and never initialises a JAX backend for chunks Ray's GPU workers will run;
    nor for TPU tasks, whose chips it would hold open (16 GiB a chip until a worker reports)."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 81920\necho 81920\n")
    smi.chmod(0o755)
    code = """
import jax._src.xla_bridge as xb
from sweeps.resources import chunk_device
from tests.helpers import compose_config
device = chunk_device(compose_config(["experiment=tms_phase_2d", "ray.gpus_per_task=0.25"]))
tpu = chunk_device(compose_config(["experiment=tms_phase_2d", "ray.tpus_per_task=4"]))
print(device.platform, device.memory_bytes, tpu.platform, tpu.memory_bytes, tpu.count, len(xb._backends))
"""
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        "gpu",
        str(80 * resources.GiB // 4),
        "tpu",
        str(resources.TPU_MEMORY_UNKNOWN),
        "4",
        "0",
    ]


def test_without_nvidia_smi_a_gpu_task_assumes_a_small_card(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    device = resources.chunk_device(compose_config(["ray.gpus_per_task=1"]))
    assert device.is_gpu and device.memory_bytes == resources.GPU_MEMORY_UNKNOWN


def test_cpu_tasks_share_the_host_memory():
    device = resources.chunk_device(compose_config(["ray.num_cpus=2"]))
    assert device.platform == "cpu"
    assert 0 < device.memory_bytes <= resources.host_memory_bytes() / 2


# ---------------------------------------------------------------- compilation cache


def test_a_sweep_keeps_its_compiled_programs_in_the_cache(tmp_path, monkeypatch):
    from tests.helpers import tiny

    cache = tmp_path / "cache"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)  # it would win over ours
    monkeypatch.setenv("TOYMODELS_COMPILE_CACHE", str(cache))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    result = cli("toymodels-sweep", "experiment=tms_intro", *tiny(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(cache.iterdir())  # the chunk's program, loaded instead of compiled by a rerun


def test_the_cache_can_be_turned_off_and_reaches_ray_workers(monkeypatch):
    from sweeps.config import RayConf
    from sweeps.executors.ray_executor import worker_env

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("TOYMODELS_COMPILE_CACHE", "off")
    assert resources.compile_cache_dir() is None and "JAX_COMPILATION_CACHE_DIR" not in worker_env(
        RayConf()
    )
    monkeypatch.setenv("TOYMODELS_COMPILE_CACHE", "/tmp/somewhere")
    assert worker_env(RayConf())["JAX_COMPILATION_CACHE_DIR"] == "/tmp/somewhere"
    monkeypatch.delenv("TOYMODELS_COMPILE_CACHE")
    assert resources.compile_cache_dir().endswith(os.path.join("toymodels", "jax"))


def test_an_explicit_chunk_size_too_large_for_the_device_names_sweep_chunk_size():
    config = compose_config(
        ["experiment=tms_intro", "sweep.chunk_size=16", "train.batch_size=65536"]
    )
    plan = plan_sweep(config, device=resources.Device("cpu", 8 * resources.GiB, "an 8 GiB CPU"))
    per_model = resources.model_bytes(plan.units[0][0])
    small = resources.Device("cpu", 8 * per_model, "a small CPU")
    with pytest.raises(
        ValueError, match=r"sweep.chunk_size: 1\d models per chunk.*lower sweep.chunk_size"
    ):
        make_chunks(plan, device=small)
    fitting = replace(plan, chunk_size=8)
    assert max(c.pad_to for c in make_chunks(fitting, device=small)) <= 8
