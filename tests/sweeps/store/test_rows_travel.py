"""A chunk's rows reach the store the same, whichever way they travel (a DataFrame in process, the
Arrow table a Ray worker sends), and chunk ids stay what every stored chunk was named by."""

import dataclasses
import gc
import hashlib
import json

import pytest

from sweeps.jobs import rows_as_arrow
from sweeps.jobs.chunks import gc_paused, make_chunks, run_chunk
from sweeps.plan import plan_sweep
from sweeps.store import RowSchema, SweepStore
from tests.helpers import compose_config, tiny


def test_a_chunk_stored_from_its_arrow_table_is_the_same_file(tmp_path):
    config = compose_config(
        ["experiment=tms_intro", "sweep.grid.density=[1.0,0.5]", *tiny(tmp_path)]
    )
    plan = plan_sweep(config)
    chunk = make_chunks(plan)[0]
    table = run_chunk(chunk)
    stored = []
    for name, rows in (("frame", table), ("arrow", rows_as_arrow(table))):
        store = SweepStore(tmp_path / name)
        store.prepare(
            config, len(plan.units), RowSchema.of_job(plan.job.columns, plan.job.row_axes(config))
        )
        store.write_chunk(chunk.id, rows)
        assert store.done_uids() == {p.uid for p in chunk.points}
        stored.append((tmp_path / name / "chunks" / f"{chunk.id}.parquet").read_bytes())
    assert stored[0] == stored[1]


@pytest.mark.parametrize(
    "experiment", ["tms_intro", "tms_l1_small", "dd_cpu_small", "sae_pareto_small", "spd_tms52"]
)
def test_chunk_ids_are_the_hash_of_each_point_as_dataclasses_asdict(experiment):
    plan = plan_sweep(compose_config([f"experiment={experiment}"]))
    for chunk in make_chunks(plan)[:3]:
        payload = {
            **plan.job.id_fields(chunk.spec),
            "base_seed": plan.base_seed,
            "points": [dataclasses.asdict(p) for p in chunk.points],
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        assert chunk.id == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_gc_paused_restores_the_collector_as_it_was():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
