"""A two-node Ray cluster on one machine: chunks are placed on both nodes."""

import pytest
from ray.cluster_utils import Cluster

from sweeps.config import RayConf
from sweeps.executors.ray_executor import RayExecutor
from sweeps.runner import run_sweep
from sweeps.store import read_results
from tests.helpers import compose_config, tiny

pytestmark = pytest.mark.slow


@pytest.fixture
def two_nodes():
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    import ray

    ray.shutdown()
    cluster.shutdown()


def test_chunks_run_on_both_nodes_of_an_existing_cluster(two_nodes, tmp_path):
    out = tmp_path / "s"
    config = compose_config(
        [
            "experiment=tms_intro",
            *tiny(out, "sweep.grid.density=[1.0,0.5,0.2,0.1]"),
            "train.steps=1500",
            "sweep.chunk_size=1",
            "sweep.seeds=1",
        ]
    )
    executor = RayExecutor(RayConf(address=two_nodes.address))
    assert executor.workers == 2
    report = run_sweep(config, executor, progress=False)
    assert report.ok and report.trained == 4
    table = read_results(out)
    assert table["ray_node"].nunique() == 2
    executor.close()  # joined, not started: leaves the cluster running
    import ray

    assert ray.is_initialized()
