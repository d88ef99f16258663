"""The sweep pipeline end to end: plan, train, store, resume, refuse, fail cleanly, draw."""

import numpy as np
import pandas as pd
import pytest

from sweeps.config import ConfigError
from sweeps.jobs import make_chunks
from sweeps.plan import plan_sweep
from sweeps.runner import run_sweep
from sweeps.store import SweepStore, as_matrix, read_results
from tests.helpers import cli, compose_config, tiny

GRID = ["sweep.grid.density=[1.0,0.3,0.05]", "sweep.seeds=2"]


def test_store_has_one_row_per_model_with_documented_schema(tmp_path):
    config = compose_config(["experiment=tms_intro", *tiny(tmp_path / "s"), *GRID])
    report = run_sweep(config, progress=False)
    assert report.ok and report.trained == 6
    table = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert len(table) == 6
    assert sorted(zip(table["density"], table["seed"])) == sorted(
        (d, s) for d in (1.0, 0.3, 0.05) for s in (0, 1)
    )
    for column in (
        "loss",
        "W",
        "b",
        "norms",
        "capacity",
        "interference",
        "feature_importance",
        "snap_step",
        "snap_loss",
        "snap_norms",
        "snap_capacity",
        "uid",
        "n_features",
        "n_hidden",
    ):
        assert column in table.columns
    W = as_matrix(table["W"])
    assert W.shape == (6, 2, 5)
    np.testing.assert_allclose(as_matrix(table["norms"]), np.linalg.norm(W, axis=1), rtol=1e-5)
    assert as_matrix(table["b"]).shape == (6, 5)
    assert as_matrix(table["snap_norms"]).shape == (6, 3, 5)
    assert np.all(np.isfinite(table["loss"]))
    assert (tmp_path / "s" / "sweep.yaml").read_text().startswith("# config_hash: ")


def test_rerun_resumes_and_results_do_not_depend_on_chunking(tmp_path):
    out = tmp_path / "s"
    config = compose_config(["experiment=tms_intro", *tiny(out), *GRID, "sweep.chunk_size=2"])
    first = run_sweep(config, progress=False)
    assert first.trained == 6
    again = run_sweep(config, progress=False)
    assert (again.trained, again.already_done) == (0, 6)

    # lose one chunk (as if killed before it was written): only its models are trained again
    store = SweepStore(out)
    victim = min(store.chunks_dir.glob("*.parquet"))
    lost = len(pd.read_parquet(victim))
    victim.unlink()
    resumed = run_sweep(config, progress=False)
    assert resumed.trained == lost
    table = read_results(out)
    assert len(table) == 6 and table["uid"].is_unique

    # the same models trained in one chunk give the same numbers: ids, not chunks, seed the streams
    whole = compose_config(
        ["experiment=tms_intro", *tiny(tmp_path / "w"), *GRID, "sweep.chunk_size=6"]
    )
    run_sweep(whole, progress=False)
    a = table.sort_values("uid")
    b = read_results(tmp_path / "w").sort_values("uid")
    np.testing.assert_allclose(as_matrix(a["W"]), as_matrix(b["W"]), rtol=1e-5, atol=1e-6)


def test_a_different_config_is_refused_for_an_existing_output(tmp_path):
    out = tmp_path / "s"
    run_sweep(
        compose_config(["experiment=tms_intro", *tiny(out), "sweep.grid.density=[1.0]"]),
        progress=False,
    )
    other = compose_config(["experiment=tms_intro", *tiny(out), "sweep.grid.density=[0.5]"])
    with pytest.raises(ConfigError, match="sweep.out.*different sweep"):
        run_sweep(other, progress=False)
    # chunking is not part of what a sweep is: a new chunk size resumes instead of conflicting
    same = compose_config(
        ["experiment=tms_intro", *tiny(out), "sweep.grid.density=[1.0]", "sweep.chunk_size=1"]
    )
    report = run_sweep(same, progress=False)
    assert report.already_done == report.planned == 3 and report.trained == 0


def test_a_failing_chunk_is_recorded_and_the_rest_complete(tmp_path):
    out = tmp_path / "s"
    config = compose_config(
        [
            "experiment=tms_intro",
            *tiny(out),
            "sweep.grid.density=[0.5]",
            "+sweep.grid.weight_decay=[0.01,1e38]",
            "sweep.chunk_size=1",
            "sweep.seeds=1",
        ]
    )
    report = run_sweep(config, progress=False)
    assert not report.ok
    assert report.trained == 1 and len(report.failed) == 1
    assert "non-finite" in report.failed[0]["error"]
    assert len(read_results(out)) == 1
    assert "FAILED" in report.summary()
    assert SweepStore(out).failures()[0]["first_model"]["weight_decay"] == 1e38


def test_chunks_are_balanced_and_padded_to_one_shape():
    config = compose_config(["experiment=tms_phase_2d_small", "sweep.chunk_size=50"])
    plan = plan_sweep(config)
    models = plan.units
    chunks = make_chunks(plan)
    assert sum(c.n_models for c in chunks) == len(models) == 8 * 8 * 3
    assert len({c.pad_to for c in chunks}) == 1 and max(c.n_models for c in chunks) <= 50
    assert len({c.id for c in chunks}) == len(chunks)
    assert make_chunks(plan)[0].id == chunks[0].id  # content hash is deterministic


def test_cli_end_to_end_writes_store_and_figures(tmp_path):
    out = tmp_path / "intro"
    result = cli(
        "toymodels-sweep",
        "experiment=tms_intro",
        *tiny(out),
        "sweep.grid.density=[1.0,0.1]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "6/6 models stored" in result.stdout  # 2 densities × 3 seeds
    assert len(pd.read_parquet(out / "results.parquet")) == 6
    figures = cli("toymodels-figures", str(out), cwd=tmp_path)
    assert figures.returncode == 0, figures.stderr
    for name in ("geometry_2d.png", "geometry_2d.pdf", "loss_curves.png"):
        path = out / "figures" / name
        assert path.exists() and path.stat().st_size > 5000
    missing = cli("toymodels-figures", str(tmp_path / "nothing"), cwd=tmp_path)
    assert missing.returncode == 2 and "results.parquet" in missing.stderr


def test_finite_data_sweep_stores_train_and_test_loss_and_resumes(tmp_path):
    out = tmp_path / "dd"
    config = compose_config(
        [
            "experiment=dd_cpu_small",
            *tiny(out),
            "model.n_features=20",
            "data.density=0.2",
            "train.warmup_steps=5",
            "sweep.grid.n_train=[3,12]",
            "sweep.grid.dataset_seed=[0,1]",
            "+sweep.grid.weight_decay=[0.01,0.5]",
        ]
    )
    report = run_sweep(config, progress=False)
    assert report.ok and report.trained == 8
    table = read_results(out)
    for column in (
        "n_train",
        "dataset_seed",
        "train_loss",
        "test_loss",
        "norm_W",
        "norm_b",
        "data_dims",
        "hidden",
        "W",
        "b",
        "norms",
        "capacity",
        "snap_loss",
        "snap_test_loss",
    ):
        assert column in table.columns
    assert np.all(np.isfinite(table["test_loss"])) and (table["loss"] == table["train_loss"]).all()
    assert sorted(table.groupby("n_train").size()) == [4, 4]
    assert run_sweep(config, progress=False).trained == 0  # resumes like any sweep


class _TwoWorkers:
    """Chunks in this process as a two-worker executor cuts them; ``fail_first`` fails the first
    chunk as a lost Ray worker with ``ray.max_retries=0`` does (the executor's on_failed)."""

    workers = 2

    def __init__(self, fail_first: bool = False):
        self.fail_first = fail_first

    def run(self, chunks, on_done, on_failed):
        from sweeps.jobs import run_chunk

        for i, chunk in enumerate(chunks):
            if self.fail_first and i == 0:
                on_failed(chunk, RuntimeError("worker died (test)"))
            else:
                on_done(chunk, run_chunk(chunk))

    def close(self):
        pass


def test_a_resume_after_a_failed_chunk_keeps_its_boundaries_and_clears_its_record(tmp_path):
    """Issue 22 item 7: on 43f758a the resume cut the failed chunk's 8 models into 2 chunks of 4
    (other bits than an uninterrupted run) and failed/<chunk>.json stayed."""

    args = ["experiment=tms_intro", "sweep.grid.density=[1.0,0.3,0.1,0.03]", "sweep.seeds=4"]
    config = compose_config([*args, *tiny(tmp_path / "resumed")])
    first = run_sweep(config, _TwoWorkers(fail_first=True), progress=False)
    assert first.trained == 8 and len(first.failed) == 1
    failed = list((tmp_path / "resumed" / "failed").glob("*.json"))
    assert len(failed) == 1
    again = run_sweep(config, _TwoWorkers(), progress=False)
    assert again.trained == 8 and again.ok and not failed[0].exists()

    whole = run_sweep(
        compose_config([*args, *tiny(tmp_path / "whole")]), _TwoWorkers(), progress=False
    )
    assert whole.trained == 16
    a, b = read_results(tmp_path / "resumed"), read_results(tmp_path / "whole")
    assert sorted(set(a["chunk"])) == sorted(set(b["chunk"]))  # the same chunks, by content
    for column in ("W", "b", "loss"):
        assert [np.asarray(np.stack(v) if column == "W" else v).tobytes() for v in a[column]] == [
            np.asarray(np.stack(v) if column == "W" else v).tobytes() for v in b[column]
        ]
