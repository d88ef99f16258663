"""docs/architecture.md as written: its fourth job kind is an ordinary sweep on the one chunk machinery
(planned, chunked, run, stored, resumed), and its loss term, one plug-in file, trains as a built-in one."""

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

import sweeps.plan
from sweeps.config import ConfigError
from sweeps.jobs.toy import FRESH
from sweeps.runner import run_sweep
from sweeps.store import read_results
from tests.helpers import cli, compose_config
from tests.readme import doc_block, doc_commands


@pytest.fixture
def random_directions(tmp_path, monkeypatch):
    """The page's job kind, first in JOB_KINDS (the one line a kind of the repository adds there)."""
    path = tmp_path / "random_directions.py"
    path.write_text(doc_block("random_directions.py"))
    spec = importlib.util.spec_from_file_location("random_directions", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "random_directions", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(
        sweeps.plan, "JOB_KINDS", (module.RANDOM_DIRECTIONS, *sweeps.plan.JOB_KINDS)
    )
    return module.RANDOM_DIRECTIONS


def test_the_documented_job_kind_is_an_ordinary_sweep(tmp_path, random_directions):
    [command] = doc_commands("random_directions sweep")
    assert command[0] == "toymodels-sweep"
    out = tmp_path / "runs" / "random_directions"
    overrides = [a for a in command[1:] if not a.startswith("sweep.out=")]
    config = compose_config(
        [*overrides, f"sweep.out={out}", "sweep.executor=local", "wandb.mode=disabled"]
    )
    assert sweeps.plan.job_kind_of(config) is random_directions
    report = run_sweep(config, progress=False)
    assert (report.trained, report.failed) == (200, [])
    table = read_results(out, arrays=True)
    assert len(table) == 200 and table["uid"].is_unique
    m = config.model.n_hidden
    for n, rows in table.groupby("n_features"):
        C = np.stack(rows["capacity"])
        assert C.shape == (100, n) and (C.sum(axis=1) <= m + 1e-4).all()  # Σ_i C_i ≤ m for any W
        # E[Σ_j (Ŵ_i·Ŵ_j)²] = 1 + (n − 1)/m for independent random directions, C_i its reciprocal
        # (Jensen: the mean of C_i is at or a little above m/(n + m − 1)).
        assert m / (n + m - 1) * 0.98 < C.mean() < m / (n + m - 1) * 1.1, (n, C.mean())
    again = run_sweep(config, progress=False)
    assert (again.trained, again.already_done) == (0, 200)
    assert (
        sweeps.plan.job_kind_of(compose_config(["experiment=tms_intro"])) is FRESH
    )  # others as before
    with pytest.raises(
        ConfigError, match=r"sweep.grid.density: random_directions sweeps n_features"
    ):
        compose_config(["name=random_directions"])  # its own check: tms_intro's density axis


def test_the_documented_loss_term_is_one_plugin_file(tmp_path):
    (tmp_path / "my_terms.py").write_text(doc_block("my_terms.py"))
    [command] = doc_commands("norm sweep")
    assert command[0] == "toymodels-sweep"
    done = cli(*command, "wandb.mode=disabled", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "runs" / "norm" / "results.parquet").set_index(
        "norm_penalty"
    )
    norms = {mu: np.asarray(table.loc[mu, "norms"]) for mu in (0.0, 1.0)}
    assert (
        np.abs(norms[1.0] - 1).max() < 0.1 < np.abs(norms[0.0] - 1).max()
    )  # every feature near unit length
    assert table.loc[1.0, "loss"] > table.loc[0.0, "loss"]  # the stored loss is the model's own
    refused = cli(
        *command[:-1], "+train.terms.norm_penalty=-1", f"sweep.out={tmp_path / 'x'}", cwd=tmp_path
    )
    assert refused.returncode == 2 and "train.terms.norm_penalty: " in refused.stderr
