"""The notebook API (docs/notebook.md): exactly the page's code, the store page's reading of that
sweep, keywords and override strings alike, and a user's kind registered in the session running on
Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from sweeps import api
from tests.readme import doc_block
from toymodels.registry import ConfigError


def run_python(code: str, cwd, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled", MPLBACKEND="svg")
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_notebook_page_runs_as_written(tmp_path):
    code = doc_block("notebook")
    done = run_python(
        code + "\nimport matplotlib; print('backend', matplotlib.get_backend())\n", tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backend svg" in done.stdout  # the session's backend, untouched
    assert "loss_curves" in done.stdout and "geometry_2d" in done.stdout
    assert "on a local Ray started here" in done.stdout, (
        done.stderr
    )  # result.where: the default executor
    assert "sweeps.run: 10 models in" in done.stderr  # run says where, before training
    assert (tmp_path / "runs" / "notebook" / "overview.png").stat().st_size > 10_000
    table = pd.read_parquet(tmp_path / "runs" / "notebook" / "results.parquet")
    assert len(table) == 10 and table["steps"].eq(2000).all()
    read = run_python(doc_block("store read"), tmp_path)  # docs/store.md, on the same sweep
    assert read.returncode == 0 and read.stdout.startswith("(10, 2, 5)"), read.stderr[-3000:]


def test_compose_refuses_a_bad_key_or_value_before_compute(tmp_path):
    with pytest.raises(ConfigError, match="train.nope: unknown key"):
        api.compose("tms_intro", ["train.nope=1"])
    with pytest.raises(ConfigError, match="train.lr"):
        api.compose("tms_intro", ["train.lr=-1"])
    config = api.compose(
        "tms_intro",
        [
            f"sweep.out={tmp_path / 's'}",
            "train.steps=20",
            "train.batch_size=32",
            "train.eval_samples=256",
            "sweep.seeds=1",
            "wandb.mode=disabled",
        ],
    )
    first = api.run(config, executor="local", progress=False)
    assert first.report.trained == 10 and first.table["W"][0].shape == (2, 5)
    assert (
        first.where
        == "10 models in 1 chunk(s) in this process, one after another (sweep.executor=local)"
    )
    again = api.run(config, executor="local", progress=False)
    assert (again.report.trained, again.report.already_done) == (0, 10)
    assert again.where.startswith("nothing left to train")


def test_compose_takes_python_values_by_the_names_of_keys_and_axes(tmp_path):
    import numpy as np

    config = api.compose("tms_intro", density=[1, 0.1], steps=5000)
    assert config.sweep.grid == {"density": [1, 0.1]} and config.train.steps == 5000
    assert config == api.compose("tms_intro", ["sweep.grid.density=[1,0.1]", "train.steps=5000"])
    config = api.compose(
        "tms_intro",
        ["sweep.seeds=5"],
        seeds=2,
        lr=np.array([1e-3, 1e-2]),
        train__eps=1e-7,
        out=str(tmp_path),
        model="gelu",
        density="geomspace(1, 0.1, 3)",
        density_last=0.5,
    )
    assert (config.sweep.seeds, config.train.eps, config.sweep.out, config.model.kind) == (
        2,
        1e-7,
        str(tmp_path),
        "gelu",
    )
    assert config.sweep.grid == {
        "density": "geomspace(1, 0.1, 3)",
        "lr": [0.001, 0.01],
        "density_last": [0.5],
    }
    per_feature = api.compose("tms_intro", density=None, data__density=[1, 0.5, 0.5, 0.5, 0.5])
    assert per_feature.sweep.grid == {} and per_feature.data.density == [1, 0.5, 0.5, 0.5, 0.5]
    assert api.compose("circuits_small", layers=2).model.options == {"layers": 2}
    sae = api.compose(
        "sae_pareto_small", density=0.1, steps=100
    )  # an SAE sweep: its sae.* keys first
    assert (sae.sae.world.density, sae.sae.steps, sae.data.density) == (0.1, 100, 1.0)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"nope": 1}, "nope: not a config key or grid axis"),
        (
            {"kind": "gelu"},
            "kind: names several keys: model.kind, data.kind, data.importance.kind; .* model__kind=",
        ),
        ({"train__nope": 1}, "train__nope: train.nope is not a config key"),
        ({"steps": "many"}, "steps: train.steps='many'"),
        ({"lr": -1}, "train.lr: must be a finite number > 0"),
        ({"density": [1, 1]}, "sweep.grid.density: the value 1 is listed twice"),
        ({"colour": [1, 2]}, "sweep.grid.colour: unknown grid axis"),
    ],
)
def test_compose_refuses_an_unknown_name_or_a_bad_value_naming_it(values, message):
    with pytest.raises(ConfigError, match=message):
        api.compose("tms_intro", **values)


@pytest.mark.slow
def test_a_kind_registered_in_the_session_runs_on_ray(tmp_path):
    """A notebook cell defines and registers a kind (in __main__, no file); Ray workers get it with
    each chunk, pickled by value."""
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp
        from toymodels.models import ModelKind, register_model
        from sweeps import api

        def init(key, n, m, std, options):
            return {"W": std * jax.random.normal(key, (m, n)), "b": jnp.zeros((n,))}

        def forward(params, x, ops):
            h = ops.apply(jnp.tanh, ops.matmul(params["W"], x))
            return ops.apply(jax.nn.relu, ops.add_bias(ops.matmul(params["W"].T, h), params["b"])), h

        register_model(ModelKind(name="tanh_hidden", init=init, forward=forward))
        config = api.compose("tms_intro", ["model.kind=tanh_hidden", "sweep.out=runs/tanh", "train.steps=200",
                                           "sweep.seeds=1", "sweep.chunk_size=5", "wandb.mode=disabled"])
        result = api.run(config, executor="ray", progress=False)
        print(result.report.summary())
        print(sorted(set(result.table["model"])), result.table["ray_node"].notna().all())
    """)
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "10/10 models stored" in done.stdout and "['tanh_hidden'] True" in done.stdout
