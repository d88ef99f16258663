"""Issue 22's store guarantees live in the one chunk machinery, so they hold for every job kind
(toy models on fresh data, on finite data, SAEs): a resume after a failed chunk keeps the whole
plan's chunk boundaries and clears the failure record (item 7), a chunk whose rows lack the kind's
own columns is set aside and retrained (item 4, checked against the kind's ``JobKind.columns``,
recorded in rows.json for readers), and a refused run leaves the store byte-identical (item 6)."""

import hashlib
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sweeps.config import ConfigError
from sweeps.jobs import make_chunks, run_chunk
from sweeps.plan import JOB_KINDS, plan_sweep
from sweeps.runner import run_sweep
from sweeps.store import read_stored
from tests.helpers import compose_config, tiny

# Seconds-long sweeps of 4 models each (2 chunks with two workers), and one key that changes the config.
KINDS = {
    "fresh": (
        ["experiment=tms_intro", "sweep.grid.density=[1.0,0.5]", "sweep.seeds=2"],
        "W",
        "train.steps=31",
    ),
    "finite": (
        [
            "experiment=dd_cpu_small",
            "model.n_features=8",
            "data.density=0.3",
            "train.warmup_steps=5",
            "sweep.grid.n_train=[3]",
            "sweep.grid.dataset_seed=[0,1]",
            "sweep.seeds=2",
        ],
        "W",
        "train.steps=31",
    ),
    "sae": (
        [
            "experiment=sae_pareto_small",
            "sweep.grid.kind=[plain]",
            "sweep.grid.l1=[0.1,0.3]",
            "sweep.seeds=2",
            "sae.steps=20",
            "sae.batch_size=32",
            "sae.eval_batch=64",
        ],
        "W_dec",
        "sae.steps=21",
    ),
}


class _TwoWorkers:
    """Chunks in this process as a two-worker executor cuts them; ``fail_first`` fails the first as a
    lost Ray worker with ``ray.max_retries=0`` does."""

    workers = 2

    def __init__(self, fail_first: bool = False):
        self.fail_first = fail_first

    def run(self, chunks, on_done, on_failed):
        for i, chunk in enumerate(chunks):
            if self.fail_first and i == 0:
                on_failed(chunk, RuntimeError("worker died (test)"))
            else:
                on_done(chunk, run_chunk(chunk))

    def close(self):
        pass


def _files(root) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_job_kind_declares_columns_the_store_can_check():
    from sweeps.store.rows import LEGACY_COLUMNS, RowSchema

    # SPD (newer than rows.json: no legacy stores) is covered by tests/sweeps/spd/.
    assert {kind.name for kind in JOB_KINDS} == set(KINDS) | {"spd"}
    for kind in JOB_KINDS:
        assert kind.columns, kind.name
        RowSchema.of_job(kind.columns, ())  # known column types only
        if kind.name in KINDS:
            assert (
                dict(kind.columns) == LEGACY_COLUMNS["sae" if kind.name == "sae" else "toy"]
            )  # stores before rows.json


@pytest.mark.parametrize("kind", KINDS)
def test_resume_damage_and_refusal_are_the_same_for_every_job_kind(kind, tmp_path, capsys):
    args, matrix, other = KINDS[kind]
    out = tmp_path / "s"
    config = compose_config([*args, *tiny(out)])
    plan = plan_sweep(config)
    assert plan.job.name == kind and len(plan.units) == 4
    whole = {c.id for c in make_chunks(plan, min_chunks=2)}  # an uninterrupted run's chunks
    assert len(whole) == 2

    first = run_sweep(config, _TwoWorkers(fail_first=True), progress=False)
    assert first.trained == 2 and len(first.failed) == 1
    assert len(list((out / "failed").glob("*.json"))) == 1
    assert json.loads((out / "rows.json").read_text())["columns"] == dict(plan.job.columns)
    again = run_sweep(config, _TwoWorkers(), progress=False)
    assert (again.trained, again.ok) == (2, True), again.summary()
    assert not list((out / "failed").glob("*.json"))  # the completed chunk's record is gone
    assert (
        set(read_stored(out)[0]["chunk"]) == whole
    )  # the failed chunk trained whole, not re-split

    victim = sorted((out / "chunks").glob("*.parquet"))[0]  # noqa: FURB192
    table = pq.read_table(victim)
    pq.write_table(
        table.drop_columns([matrix]).replace_schema_metadata(table.schema.metadata), victim
    )
    capsys.readouterr()
    third = run_sweep(config, _TwoWorkers(), progress=False)
    assert third.trained == 2 and (out / "chunks" / "corrupt" / victim.name).exists()
    assert any(
        victim.name in line and f"no column {matrix!r}" in line
        for line in capsys.readouterr().err.splitlines()
    )
    stored = pd.read_parquet(out / "results.parquet")
    assert len(stored) == 4 and stored[matrix].notna().all()

    before = _files(out)
    with pytest.raises(ConfigError):
        run_sweep(compose_config([*args, *tiny(out), other]), _TwoWorkers(), progress=False)
    assert _files(out) == before
