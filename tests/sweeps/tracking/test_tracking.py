"""wandb tracking with the real wandb package, offline: read back what it wrote to disk."""

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweeps.config import ConfigError
from sweeps.runner import run_sweep
from sweeps.store import config_hash, read_results
from sweeps.tracking import TrackingWarning, offline_log_complete, sweep_key
from tests.helpers import cli, compose_config, tiny

OFFLINE = "wandb.mode=offline"  # tiny() turns tracking off; these tests turn it back on
GRID = ["sweep.grid.density=[1.0,0.3]", "sweep.seeds=2", "sweep.chunk_size=2"]  # 4 models, 2 chunks


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch, tmp_path):
    """Offline needs no account: no API key, and wandb's own files kept out of the home directory."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


# -- reading an offline run back: the .wandb transaction log (wandb's record protobufs) -----------


def _records(path: Path) -> list:
    """The records of a .wandb file: a 7-byte header, then 32 KiB blocks of chunks, each with a
    7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, out = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf code
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _key(item) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def offline_runs(out: Path) -> dict[str, dict]:
    """run id -> what wandb wrote for it under ``out/wandb``: group, job type, name, config,
    summary (all updates applied), history rows and logged tables (as DataFrames)."""
    runs = {}
    for run_dir in sorted((out / "wandb").glob("offline-run-*")):
        (log,) = run_dir.glob("run-*.wandb")
        info: dict = {"dir": run_dir, "summary": {}, "history": [], "tables": {}, "log": log}
        records = _records(log)
        # whole on disk once its run is marked logged: the last record is the run's exit
        assert records and records[-1].WhichOneof("record_type") == "exit", f"{log} is not whole"
        for record in records:
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                info.update(
                    id=r.run_id,
                    group=r.run_group,
                    job_type=r.job_type,
                    name=r.display_name,
                    project=r.project,
                    config={_key(i): json.loads(i.value_json) for i in r.config.update},
                )
            elif kind == "summary":
                info["summary"].update(
                    {_key(i): json.loads(i.value_json) for i in record.summary.update}
                )
            elif kind == "history":
                info["history"].append(
                    {_key(i): json.loads(i.value_json) for i in record.history.item}
                )
        for key, value in info["summary"].items():
            if key.endswith(".path") and value.startswith("media/table/"):
                table = json.loads((run_dir / "files" / value).read_text())
                info["tables"][key[:-5]] = pd.DataFrame(table["data"], columns=table["columns"])
        assert info["id"] not in runs, f"two offline directories for run {info['id']}"
        runs[info["id"]] = info
    return runs


def _chunks(out: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in sorted((out / "chunks").glob("*.parquet"))}


# -- tests ----------------------------------------------------------------------------------------


def test_mode_defaults_to_offline_the_environment_then_the_command_line_win(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert compose_config([]).wandb.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert compose_config([]).wandb.mode == "disabled"
    assert compose_config(["wandb.mode=online"]).wandb.mode == "online"
    with pytest.raises(ConfigError, match=r"wandb\.mode: 'sometimes' is not allowed"):
        compose_config(["wandb.mode=sometimes"])
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    with pytest.raises(
        ConfigError, match=r"wandb\.mode: 'dryrun' \(from the environment variable WANDB_MODE\)"
    ):
        compose_config([])
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ConfigError, match=r"wandb\.per_model_limit"):
        compose_config(["wandb.per_model_limit=0"])
    with pytest.raises(ConfigError, match=r"wandb\.project"):
        compose_config(["wandb.project=a/b"])
    # tracking does not change what the models are: not part of the sweep's identity
    assert config_hash(compose_config(["wandb.mode=disabled", "wandb.project=x"])) == config_hash(
        compose_config([])
    )


def test_each_chunk_is_one_offline_run_holding_config_curves_and_final_metrics(tmp_path):
    out = tmp_path / "s"
    config = compose_config(["experiment=tms_intro", *tiny(out), *GRID, OFFLINE])
    report = run_sweep(config, progress=False)
    assert report.ok and report.trained == 4
    chunks = _chunks(out)
    key = sweep_key(config_hash(config), out)
    runs = offline_runs(out)
    assert len(chunks) == 2 and set(runs) == {f"{key}-{c}" for c in chunks}

    for chunk_id, stored in chunks.items():
        run = runs[f"{key}-{chunk_id}"]
        assert (run["group"], run["job_type"], run["name"], run["project"]) == (
            "tms_intro-s",
            "chunk",
            f"chunk-{chunk_id}",
            "toymodels",
        )
        cfg = run["config"]
        assert (
            cfg["train"]["steps"] == 30
            and cfg["model"]["n_features"] == 5
            and cfg["name"] == "tms_intro"
        )
        assert cfg["config_hash"] == config_hash(config)
        assert cfg["chunk"]["id"] == chunk_id and cfg["chunk"]["axes"] == ["density"]
        assert cfg["chunk"]["models"] == [
            {"density": d, "seed": s, "uid": u}
            for d, s, u in zip(stored["density"], stored["seed"], stored["uid"])
        ]
        summary = run["summary"]
        assert summary["n_models"] == 2 and summary["chunk"] == chunk_id
        assert summary["loss_mean"] == pytest.approx(stored["loss"].mean())
        assert summary["loss_min"] == pytest.approx(stored["loss"].min())

        # per-model final metrics: the stored rows
        models = run["tables"]["models"].set_index("uid").loc[stored["uid"]]
        np.testing.assert_allclose(models["loss"], stored["loss"], rtol=1e-6)
        np.testing.assert_array_equal(models["density"], stored["density"])
        np.testing.assert_array_equal(models["seed"], stored["seed"])
        np.testing.assert_allclose(np.stack(models["norms"]), np.stack(stored["norms"]), rtol=1e-6)
        np.testing.assert_allclose(
            np.stack(models["capacity"]), np.stack(stored["capacity"]), rtol=1e-6
        )

        # per-model curves: every stored snapshot of every model
        curves = run["tables"]["curves_table"]
        assert len(curves) == 2 * 3  # 2 models x snapshots at steps 10, 20, 30
        for _, row in stored.iterrows():
            mine = curves[curves["uid"] == row["uid"]].sort_values("step")
            assert list(mine["step"]) == list(row["snap_step"]) == [10, 20, 30]
            np.testing.assert_allclose(mine["loss"], row["snap_loss"], rtol=1e-6)
            assert set(mine["model"]) == {f"density={row['density']:.4g},seed={row['seed']}"}

        # history: the chunk's mean loss against the training step
        history = [h for h in run["history"] if "loss/mean" in h]
        assert [h["train_step"] for h in history] == [10, 20, 30]
        np.testing.assert_allclose(
            [h["loss/mean"] for h in history],
            np.mean(np.stack(stored["snap_loss"]), axis=0),
            rtol=1e-6,
        )
        assert (out / "wandb" / "logged" / f"{key}-{chunk_id}").exists()
    assert any((out / "wandb" / "data").rglob("*"))  # staged table files live with the runs

    # what the tracker waits for before it marks a run logged: a log that holds its exit record
    whole = next(iter(runs.values()))["log"].read_bytes()
    assert offline_log_complete(runs[next(iter(runs))]["log"])
    for cut in (0, 7, len(whole) // 2, len(whole) - 1):  # nothing, the header alone, partly written
        partial = tmp_path / f"cut{cut}.wandb"
        partial.write_bytes(whole[:cut])
        assert not offline_log_complete(partial)
    assert not offline_log_complete(tmp_path / "missing.wandb")
    # a record written after the exit record (a queued stats sample, say) leaves the log whole
    from wandb.proto import wandb_internal_pb2

    later = wandb_internal_pb2.Record()
    later.stats.stats_type = 0
    payload = later.SerializeToString()
    left = 32768 - len(whole) % 32768
    pad = b"" if left >= 7 + len(payload) else bytes(left)  # a block too full: pad to the next
    chunk = bytes(4) + len(payload).to_bytes(2, "little") + bytes([1]) + payload
    after = tmp_path / "after_exit.wandb"
    after.write_bytes(whole + pad + chunk)
    assert offline_log_complete(after)

    # the figures' summary run, once they are drawn; drawing again keeps one directory for it
    from analysis.cli import main as figures

    figures([str(out)])
    figures([str(out)])
    runs = offline_runs(out)
    summary_run = runs[f"{key}-figures"]
    assert (summary_run["group"], summary_run["job_type"]) == ("tms_intro-s", "summary")
    for name in ("loss_curves", "geometry_2d"):
        assert (
            summary_run["dir"] / "files" / summary_run["summary"][f"{name}.path"]
        ).stat().st_size > 5000
    assert sorted(summary_run["tables"]["models"]["uid"]) == sorted(read_results(out)["uid"])
    assert len(runs) == 3


def test_a_resumed_sweep_logs_what_was_not_logged_and_never_duplicates_a_run(tmp_path):
    out = tmp_path / "s"
    untracked = compose_config(["experiment=tms_intro", *tiny(out), *GRID])
    tracked = compose_config(["experiment=tms_intro", *tiny(out), *GRID, OFFLINE])
    key = sweep_key(config_hash(tracked), out)

    run_sweep(untracked, progress=False)  # stored while tracking was disabled
    assert not (out / "wandb").exists()
    again = run_sweep(tracked, progress=False)  # nothing to train: the stored chunks are logged
    assert again.trained == 0
    dirs = sorted(p.name for p in (out / "wandb").glob("offline-run-*"))
    assert set(offline_runs(out)) == {f"{key}-{c}" for c in _chunks(out)} and len(dirs) == 2

    run_sweep(tracked, progress=False)  # everything stored and logged: nothing happens
    assert sorted(p.name for p in (out / "wandb").glob("offline-run-*")) == dirs

    # a chunk lost before it was stored is trained again: same chunk, same run, not a second one
    victim = min((out / "chunks").glob("*.parquet"))
    victim.unlink()
    resumed = run_sweep(tracked, progress=False)
    assert resumed.trained == 2 and victim.exists()
    assert sorted(p.name for p in (out / "wandb").glob("offline-run-*")) == dirs

    # a crash after storing a chunk, before its run finished: the rerun logs it again, under the
    # same id, replacing the unfinished attempt's directory
    (out / "wandb" / "logged" / f"{key}-{victim.stem}").unlink()
    run_sweep(tracked, progress=False)
    runs = offline_runs(out)  # asserts one directory per run id
    assert set(runs) == {f"{key}-{c}" for c in _chunks(out)}
    assert runs[f"{key}-{victim.stem}"]["summary"]["n_models"] == 2
    assert len(read_results(out)) == 4


def test_per_model_runs_for_small_sweeps_and_refused_for_large_ones(tmp_path):
    out = tmp_path / "p"
    config = compose_config(
        [
            "experiment=tms_intro",
            *tiny(out),
            "sweep.grid.density=[0.5]",
            "sweep.seeds=2",
            OFFLINE,
            "wandb.per_model=true",
        ]
    )
    run_sweep(config, progress=False)
    stored = read_results(out)
    key = sweep_key(config_hash(config), out)
    runs = offline_runs(out)
    assert set(runs) == {f"{key}-m{u}" for u in stored["uid"]}
    for _, row in stored.iterrows():
        run = runs[f"{key}-m{row['uid']}"]
        assert (run["group"], run["job_type"], run["name"]) == (
            "tms_intro-p",
            "model",
            f"density=0.5,seed={row['seed']}",
        )
        assert run["config"]["grid"] == {
            "density": 0.5,
            "seed": row["seed"],
            "uid": row["uid"],
            "chunk": row["chunk"],
        }
        history = [h for h in run["history"] if "loss" in h]
        assert [h["train_step"] for h in history] == list(row["snap_step"])
        np.testing.assert_allclose([h["loss"] for h in history], row["snap_loss"], rtol=1e-6)
        np.testing.assert_allclose(
            [history[-1][f"norm/{i}"] for i in range(5)], row["snap_norms"][-1], rtol=1e-6
        )
        assert run["summary"]["loss"] == pytest.approx(row["loss"])

    big = tmp_path / "big"
    too_many = compose_config(
        [
            "experiment=tms_intro",
            *tiny(big),
            "sweep.seeds=2",
            OFFLINE,
            "wandb.per_model=true",
            "wandb.per_model_limit=10",
        ]
    )
    with pytest.raises(
        ConfigError, match=r"wandb\.per_model: .* 20 models, more than wandb\.per_model_limit=10"
    ):
        run_sweep(too_many, progress=False)
    assert not big.exists()  # refused before anything was written or trained


def test_a_wandb_failure_is_one_warning_and_the_store_is_complete(tmp_path, monkeypatch):
    import wandb

    out = tmp_path / "s"
    config = compose_config(["experiment=tms_intro", *tiny(out), *GRID, OFFLINE])
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(kwargs.get("id"))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wandb, "init", full_disk)
    with pytest.warns(TrackingWarning, match="No space left on device") as caught:
        report = run_sweep(config, progress=False)
    assert report.ok and report.trained == 4 and len(read_results(out)) == 4
    assert (
        len(calls) == 1 and len([w for w in caught if w.category is TrackingWarning]) == 1
    )  # then off
    assert offline_runs(out) == {}

    monkeypatch.undo()  # wandb works again: the rerun logs what was stored, trains nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)
        again = run_sweep(config, progress=False)
    assert again.trained == 0 and len(offline_runs(out)) == 2


def test_cli_with_an_unusable_wandb_dir_warns_stores_everything_and_exits_0(tmp_path):
    out = tmp_path / "s"
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = cli(
        "toymodels-sweep",
        "experiment=tms_intro",
        *tiny(out),
        "sweep.grid.density=[1.0]",
        OFFLINE,
        f"wandb.dir={blocker}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "TrackingWarning" in result.stderr and "every result is stored" in result.stderr
    assert "3/3 models stored" in result.stdout
    assert len(pd.read_parquet(out / "results.parquet")) == 3


def test_a_command_started_by_a_test_gets_a_wandb_service_of_its_own(monkeypatch):
    """A process that started a wandb service names it in its environment (WANDB_SERVICE) and every
    process it starts afterwards would log through it: a test's command would depend on which tests
    ran before it in its worker. Commands get their own (tests/helpers.py cli, tests/conftest.py)."""
    monkeypatch.setenv("WANDB_SERVICE", "3-1-unix-/nonexistent/socket")
    done = cli("python", "-c", "import os; print(os.environ.get('WANDB_SERVICE'))")
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr
