"""The persistent compilation cache (sweeps.resources.compile_cache_dir, on by default; docs/ray.md)
never changes a result: a sweep trained without it, one that fills it and one that loads from it
store the same bits. The test suite shares one cache between all its processes (tests/conftest.py),
so this is also what lets the suite trust a program another test compiled."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import tiny

PLACE = {
    "chunk",
    "train_seconds",
    "ray_node",
}  # where and how fast it ran (as scripts/compare-stores)
HIT = "Persistent compilation cache hit"


def _sweep(out: Path, cache: str, cores: list[int]) -> str:
    """toymodels-sweep of tms_intro (tiny) on these cores, with TOYMODELS_COMPILE_CACHE=cache; its output."""
    env = {
        k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"
    }  # it would win over ours
    env.update(
        JAX_PLATFORMS="cpu",
        TOYMODELS_COMPILE_CACHE=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_LOG_COMPILES="1",
    )  # a cache hit logged as a warning (Hydra's log: stdout)
    exe = Path(sys.executable).with_name("toymodels-sweep")
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(
        0, cores
    )  # inherited by the child (a preexec_fn would fork a threaded JAX process)
    try:
        result = subprocess.run(
            [str(exe), "experiment=tms_intro", "sweep.grid.density=[1.0,0.1]", *tiny(out)],
            capture_output=True,
            text=True,
            env=env,
            cwd=out.parent,
            timeout=300,
        )
    finally:
        os.sched_setaffinity(0, mine)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def _model_columns(out: Path) -> dict:
    table = pd.read_parquet(out / "results.parquet").sort_values("uid")
    return {c: repr(table[c].tolist()) for c in table.columns if c not in PLACE}


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="runs its sweeps pinned to cores (Linux)"
)
def test_a_sweep_stores_the_same_bits_without_the_cache_filling_it_and_loading_from_it(
    tmp_path, whole_machine
):
    cache = str(tmp_path / "cache")
    one = whole_machine[
        :1
    ]  # filled by a process on one core, loaded by one on all (as pinned Ray tasks and a driver)
    off = _sweep(tmp_path / "off", "off", whole_machine)
    cold = _sweep(tmp_path / "cold", cache, one)
    warm = _sweep(tmp_path / "warm", cache, whole_machine)
    assert HIT not in off and HIT not in cold and os.listdir(cache)
    assert HIT in warm, warm[-2000:]  # the chunk's program was loaded, not compiled again
    expected = _model_columns(tmp_path / "off")
    assert len(expected) > 5 and "W" in expected
    assert _model_columns(tmp_path / "cold") == expected
    assert _model_columns(tmp_path / "warm") == expected
