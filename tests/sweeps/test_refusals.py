"""Refusals are one line with exit status 2 and leave nothing behind (issue 22 items 5, 6, 11):
damaged metadata named by its file, a refused run that leaves the store byte-identical, unknown
experiments and figure options checked like config keys."""

import hashlib
import os
import sys

import numpy as np
import pytest

from sweeps.runner import run_sweep
from sweeps.store import ConfigError
from tests.helpers import cli, compose_config, tiny
from tests.sweeps.conftest import TINY_STORE


def _one_error(err: str, command: str) -> str:
    lines = [
        line
        for line in err.strip().splitlines()
        if not line.startswith(("warning:", "note:", f"{command}: note:"))
    ]
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), err
    return lines[0]


def _files(root) -> dict:
    """Every file under ``root`` (hidden ones too) by relative path, with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


DAMAGE = {
    "not UTF-8": lambda text: text.encode() + b"\xff\xfe",
    "a list": lambda text: "\n".join(text.splitlines()[:2] + ["- a", "- b"]).encode(),
    "a python tag": lambda text: (
        text.splitlines()[0] + "\nx: !!python/object/apply:os.system ['touch PWNED']\n"
    ).encode(),
    "an alias bomb": lambda text: (
        text.splitlines()[0] + "\na: &a [1, 1]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    ).encode(),
    "nested too deep": lambda text: (
        text.splitlines()[0] + "\nx: " + "[" * 5000 + "]" * 5000 + "\n"
    ).encode(),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_sweep_yaml_is_one_line_naming_it_on_resume_and_in_the_figures(
    store_copy, damage, monkeypatch, capsys
):
    from analysis.cli import main as figures

    monkeypatch.chdir(store_copy)
    meta = store_copy / "sweep.yaml"
    meta.write_bytes(DAMAGE[damage](meta.read_text()))
    before = _files(store_copy)
    with pytest.raises(ConfigError, match=f"{meta} is damaged"):
        run_sweep(compose_config([*TINY_STORE, *tiny(store_copy)]), progress=False)
    with pytest.raises(SystemExit) as exit_:
        figures([str(store_copy)])
    assert exit_.value.code == 2
    assert f"{meta} is damaged" in _one_error(capsys.readouterr().err, "toymodels-figures")
    assert _files(store_copy) == before and not (store_copy / "PWNED").exists()


def test_toymodels_sae_reads_a_damaged_results_parquet_from_the_chunks(
    store_copy, capsys, monkeypatch
):
    """Random bytes in results.parquet: a note naming it, the chunks read instead (on 43f758a a
    29-line traceback); the query then selects nothing: one line, exit 2."""
    from sweeps.sae.cli import main

    monkeypatch.chdir(store_copy)
    (store_copy / "results.parquet").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(SystemExit) as exit_:
        main([str(store_copy), "--models", "seed == 7", "--steps", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "results.parquet is damaged" in err and "drawing the 4 of 4 models" in err, err
    assert "selects no model out of 4" in _one_error(err, "toymodels-sae")


def test_an_sae_sweep_on_an_unreadable_toy_store_is_one_line_and_leaves_nothing(
    store_copy, tmp_path
):
    (store_copy / "results.parquet").write_bytes(np.random.default_rng(0).bytes(2000))
    for chunk in (store_copy / "chunks").glob("*.parquet"):
        chunk.unlink()
    out = tmp_path / "sae"
    done = cli(
        "toymodels-sweep",
        "+sae=toy",
        f"sae.toy.sweep={store_copy}",
        "~sweep.grid.density",
        "name=sae_toy",
        "sae.steps=10",
        f"sweep.out={out}",
        "wandb.mode=disabled",
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "sae.toy.sweep" in _one_error(done.stderr, "toymodels-sweep")
    assert (
        not out.exists()
        and not (tmp_path / ".hydra").exists()
        and not (tmp_path / "cli.log").exists()
    )


def test_a_run_refused_for_another_config_leaves_the_store_byte_identical(store_copy, tmp_path):
    before = _files(store_copy)
    done = cli(
        "toymodels-sweep",
        *TINY_STORE,
        *tiny(store_copy),
        "train.lr=0.01",
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    line = _one_error(done.stderr, "toymodels-sweep")
    assert "already holds a different sweep" in line and "train.lr" in line
    assert _files(store_copy) == before


@pytest.mark.parametrize(
    "name, closest", [("no_such", None), ("tms_intr", "tms_intro"), ("phase_2d", "tms_phase_2d")]
)
def test_an_unknown_experiment_is_one_line_with_the_closest_names(
    name, closest, monkeypatch, capsys, tmp_path
):
    import sweeps.cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["toymodels-sweep", f"experiment={name}"])
    with pytest.raises(SystemExit) as exit_:
        sweeps.cli.main()
    assert exit_.value.code == 2
    line = _one_error(capsys.readouterr().err, "toymodels-sweep")
    assert f"experiment: no experiment {name!r}" in line and "closest: " in line
    assert closest is None or closest in line.split("closest: ")[1].split(",")[0]
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_without_an_experiment_says_it_runs_the_default(tmp_path, monkeypatch, capsys):
    import sweeps.cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["toymodels-sweep", "train.steps=0"])
    with pytest.raises(SystemExit) as exit_:
        sweeps.cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no experiment= given: running the default, experiment=tms_intro" in err
    assert "train.steps" in _one_error(err, "toymodels-sweep")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, key",
    [
        (["--feature", "99"], "--feature"),
        (["--feature", "-5"], "--feature"),
        (["--feature", "two"], "--feature"),
        (["--represented", "nan"], "--represented"),
        (["--represented", "-1"], "--represented"),
        (["--superposed", "inf"], "--superposed"),
    ],
)
def test_figure_options_are_checked_like_config_keys(tiny_store, tmp_path, options, key, capsys):
    from analysis.cli import main as figures

    out = tmp_path / "figures"
    with pytest.raises(SystemExit) as exit_:
        figures([str(tiny_store), "--out", str(out), *options])
    assert exit_.value.code == 2
    line = _one_error(capsys.readouterr().err, "toymodels-figures")
    assert line.startswith(f"toymodels-figures: error: {key}: ")
    assert not out.exists()


def test_model_options_are_set_as_the_docs_write_them(tmp_path):
    from sweeps.cli import prepare_overrides

    config = compose_config(
        prepare_overrides(["model.kind=relu_hidden", "model.options.hidden_bias=-0.3"])
    )
    assert config.model.options == {"hidden_bias": -0.3}
    again = compose_config(
        prepare_overrides(
            [
                "model.kind=relu_hidden",
                "+model.options.hidden_bias=-0.3",
                "model.options.hidden_bias=-0.2",
            ]
        )
    )
    assert again.model.options == {"hidden_bias": -0.2}


def _within(seconds, fn):
    """``fn()`` in a thread: what it returned or raised, or a failure if it is still running after
    ``seconds`` (a read of a named pipe blocks until a writer comes)."""
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still reading after {seconds} s"
    return outcome


def test_named_pipes_in_a_store_never_block_a_reader(store_copy):
    """A shared store may hold a FIFO where a file should be: readers refuse or skip it, never wait."""
    from analysis.stored_sweep import StoredSweep

    chunk = sorted((store_copy / "chunks").glob("*.parquet"))[0]  # noqa: FURB192
    chunk.unlink()
    os.mkfifo(chunk)
    (store_copy / "results.parquet").unlink()
    os.mkfifo(store_copy / "results.parquet")
    (store_copy / "kinds.json").unlink(missing_ok=True)
    os.mkfifo(store_copy / "kinds.json")
    outcome = _within(30, lambda: StoredSweep.load(store_copy))
    assert "error" not in outcome, outcome
    assert (
        len(outcome["value"].table) == 2 and "results.parquet is damaged" in outcome["value"].status
    )
    meta = store_copy / "sweep.yaml"
    meta.unlink()
    os.mkfifo(meta)
    outcome = _within(30, lambda: StoredSweep.load(store_copy))
    assert isinstance(outcome.get("error"), ConfigError) and "not a regular file" in str(
        outcome["error"]
    )
