"""A chunk's models over every device of its process (sweeps/jobs/devices.py, docs/devices.md).

JAX fakes four CPU devices only when told before it starts (XLA_FLAGS), so these tests run their
work in a subprocess with ``--xla_force_host_platform_device_count=4``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sweeps import resources
from sweeps.jobs import make_chunks
from sweeps.jobs.chunks import auto_chunk_size
from sweeps.jobs.toy import FRESH
from sweeps.plan import plan_sweep
from tests.helpers import REPO, compose_config

FOUR_DEVICES = "--xla_force_host_platform_device_count=4"


def run_with_four_devices(code: str, timeout: int = 600) -> str:
    env = dict(
        os.environ,
        XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {FOUR_DEVICES}",
        JAX_PLATFORMS="cpu",
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


SLICES = """
import jax, jax.numpy as jnp, numpy as np
from sweeps.jobs.devices import Placement, run_on_devices
assert len(jax.devices()) == 4

@jax.jit
def program(keys, scale, shared, nothing):
    return jax.vmap(lambda k, s: {"x": jax.random.normal(k, (5,)) * s + shared, "s": s})(keys, scale)

seen = set()
def watched(*args):
    seen.update(args[0].devices())
    return program(*args)

keys, scale = jax.random.split(jax.random.key(0), 10), jnp.arange(10.0)
args, axes = (keys, scale, jnp.float32(3.0), None), (0, 0, None, None)
one = jax.device_get(program(*args))
for mode in ("exact", "mesh"):
    seen.clear()
    out = run_on_devices(watched, args, axes, width=3, placement=Placement(mode=mode))
    assert set(out) == {"x", "s"} and out["x"].shape == (10, 5)
    np.testing.assert_array_equal(out["x"], one["x"]); np.testing.assert_array_equal(out["s"], one["s"])
    assert len(seen) == 4, (mode, seen)  # exact: a slice per device; mesh: arrays on the 4-device mesh
seen.clear()
run_on_devices(watched, args, axes, width=3, placement=Placement(devices=2))
assert len(seen) == 2  # sweep.devices caps the devices
seen.clear()
run_on_devices(watched, args, axes, width=10)
assert len(seen) == 1  # one slice: one plain call
"""

# Tiny sweeps of every job kind, each of 10 models in chunks of 3 per device: on one device four
# chunks (3, 3, 3, 1 padded to 3), on four devices one chunk of four slices of 3.
KINDS = {
    "fresh": ["experiment=tms_intro", "sweep.grid.density=[1.0,0.3]", "sweep.seeds=5"],
    "finite": [
        "experiment=dd_cpu_small",
        "sweep.grid.n_train=[10]",
        "sweep.grid.dataset_seed=[0]",
        "sweep.seeds=10",
        "train.warmup_steps=3",
        "model.n_features=20",
    ],
    "sae": [
        "experiment=sae_pareto_small",
        "sweep.grid.kind=[plain]",
        "sweep.grid.l1=[0.03,0.3]",
        "sweep.seeds=5",
        "sae.steps=30",
        "sae.batch_size=64",
        "sae.eval_batch=256",
    ],
}


SWEEPS = """
import numpy as np
from sweeps.runner import run_sweep
from sweeps.store import read_results
from tests.helpers import compose_config, tiny

def array(value):  # a stored cell (nested lists come back as object arrays of arrays)
    value = np.asarray(value)
    return np.array([array(v) for v in value]) if value.dtype == object and value.ndim else value

def same(a, b):
    a, b = a.sort_values("uid").reset_index(drop=True), b.sort_values("uid").reset_index(drop=True)
    assert list(a.columns) == list(b.columns) and list(a["uid"]) == list(b["uid"])
    for column in a.columns:
        if column in ("chunk", "train_seconds"):
            continue
        for x, y in zip(a[column], b[column]):
            x, y = array(x), array(y)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (column, x, y)

for kind, overrides in kinds.items():
    def sweep(name, *extra):
        return compose_config([*overrides, *tiny(out + kind + name), "sweep.chunk_size=3", *extra])
    one = run_sweep(sweep("one", "sweep.devices=1"), progress=False)
    four = run_sweep(sweep("four"), progress=False)
    assert one.trained == four.trained == 10, (kind, one, four)
    a, b = read_results(out + kind + "one"), read_results(out + kind + "four")
    assert a["chunk"].nunique() == 4 and b["chunk"].nunique() == 1, kind
    same(a, b)
    again = run_sweep(sweep("one"), progress=False)  # the one-device store, on four devices
    assert (again.trained, again.already_done) == (0, 10), (kind, again)
    print(kind, "ok")
"""


def sweeps_on_four_devices(kinds: list[str], out) -> str:
    """The program that sweeps these job kinds on one device and on four (SWEEPS)."""
    return (
        f"kinds = {{k: v for k, v in {KINDS!r}.items() if k in {kinds!r}}}\nout = {str(out) + '/'!r}\n"
        + SWEEPS
    )


def test_four_devices_run_a_slice_each_and_store_the_bits_of_one(tmp_path):
    """run_on_devices first: 10 models in slices of 3 over 4 devices (the last slice padded),
    per-model typed keys, a shared argument and a None; each device gets a slice, and the result
    is what one call of the program returns, in both modes. Then a sweep of fresh data spread over
    four devices stores exactly the bits of the same sweep on one device, and the one-device store
    resumes on four devices with nothing to train (the device count is not part of the config
    hash). One subprocess for both: JAX starts once. The other job kinds go through the same
    run_on_devices: the next test, in the reproduction tier, sweeps them too."""
    assert "fresh ok" in run_with_four_devices(SLICES + sweeps_on_four_devices(["fresh"], tmp_path))


@pytest.mark.reproduction
def test_four_devices_store_the_bits_of_one_for_finite_data_and_saes(tmp_path):
    """The same for finite data and SAEs (second tier: the path of the test above, end to end
    for the two other job kinds)."""
    done = run_with_four_devices(sweeps_on_four_devices(["finite", "sae"], tmp_path))
    assert "finite ok" in done and "sae ok" in done


def test_chunks_hold_a_slice_per_device_sized_from_one_device():
    """Four GPUs hold four times the models of one, in slices of one card's share each;
    sweep.devices caps the count; SAE slices keep their one-device width."""
    config = compose_config(["experiment=tms_phase_2d_small"])
    plan = plan_sweep(config)
    per_model = resources.model_bytes(plan.units[0][0], "gpu")
    gpu = resources.Device(
        "gpu", int(40 * per_model / resources.GPU_MEMORY_SHARE) + 1, "a small GPU"
    )
    per_card = auto_chunk_size(FRESH, plan.units[0][0], gpu)
    assert per_card == 40
    one = make_chunks(plan, device=gpu)
    assert [(c.n_models, c.pad_to) for c in one] == [(39, 39)] * 4 + [
        (36, 39)
    ]  # one device: 5 chunks
    four_gpus = resources.Device("gpu", gpu.memory_bytes, "4 GPUs", 4)
    four = make_chunks(plan, device=four_gpus)
    assert [(c.n_models, c.pad_to) for c in four] == [
        (96, 24),
        (96, 24),
    ]  # 2 chunks of 4 slices of 24
    capped = compose_config(["experiment=tms_phase_2d_small", "sweep.devices=2"])
    two = make_chunks(plan_sweep(capped), device=four_gpus)
    assert [(c.n_models, c.pad_to) for c in two] == [(64, 32)] * 3 and two[0].placement.devices == 2

    sae = compose_config(["experiment=sae_pareto_small", "sweep.chunk_size=4", "sweep.seeds=5"])
    saes = plan_sweep(sae)
    widths = {c.pad_to for c in make_chunks(saes, device=resources.Device("cpu", 2**33, "CPU", 1))}
    spread = make_chunks(saes, device=resources.Device("cpu", 2**33, "CPU", 4))
    assert {c.pad_to for c in spread} == widths and max(c.n_models for c in spread) > max(widths)


@pytest.mark.parametrize(
    "override, key",
    [
        ("ray.tpus_per_task=0.5", "ray.tpus_per_task"),
        ("ray.tpus_per_task=3", "ray.tpus_per_task"),
        ("ray.gpus_per_task=1 ray.tpus_per_task=4", "ray.tpus_per_task"),
        ("ray.gpus_per_task=1.5", "ray.gpus_per_task"),
        ("sweep.devices=-1", "sweep.devices"),
        ("sweep.sharding=pmap", "sweep.sharding"),
    ],
)
def test_impossible_device_requests_are_refused_naming_the_key(override, key):
    from sweeps.config import ConfigError

    with pytest.raises(ConfigError) as error:
        compose_config(override.split())
    assert error.value.key == key, error.value
