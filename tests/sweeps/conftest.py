import shutil

import pytest

from tests.helpers import compose_config, tiny

TINY_STORE = [
    "experiment=tms_intro",
    "sweep.grid.density=[1.0,0.5]",
    "sweep.seeds=2",
    "sweep.chunk_size=2",
]


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A finished 4-model sweep in 2 chunks, trained once per session in this process: read it,
    never write it (``store_copy`` gives a copy to damage)."""
    from sweeps.runner import run_sweep

    out = tmp_path_factory.mktemp("tiny") / "s"
    assert run_sweep(compose_config([*TINY_STORE, *tiny(out)]), progress=False).ok
    return out


@pytest.fixture
def store_copy(tiny_store, tmp_path):
    """A copy of ``tiny_store`` of this test's own."""
    out = tmp_path / "s"
    shutil.copytree(tiny_store, out)
    return out
