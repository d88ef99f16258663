"""Kind tables: every kind is one object found by name; a user's kind is one object in one file,
swept like a built-in one (docs/kinds.md, "Your own kind"), in process and on Ray."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from sweeps.jobs import make_chunks
from sweeps.plan import plan_sweep
from sweeps.runner import run_sweep
from sweeps.store import read_results
from tests.helpers import cli, compose_config, tiny
from tests.readme import doc_block, doc_commands
from toymodels.data import DATA, DataKind, register_data
from toymodels.models import DENSE, MODELS, ROWS, ModelKind, bind_kind, init_params, register_model
from toymodels.registry import ConfigError


def test_an_unknown_kind_names_the_key_and_every_kind():
    with pytest.raises(
        ConfigError, match=r"model.kind: .*'nope'.*relu, linear, gelu, relu_hidden, abs, quadratic"
    ):
        MODELS.get("nope")
    with pytest.raises(ConfigError, match=r"model.kind.*'nope'"):
        compose_config(["model.kind=nope"])
    with pytest.raises(ConfigError, match=r"data.kind.*'nope'"):
        compose_config(["data.kind=nope"])


def _linear_kind(name: str, scale: float = 1.0) -> ModelKind:
    def init(key, n, m, std, options):
        return {"W": options["scale"] * std * jax.random.normal(key, (m, n)), "b": jnp.zeros((n,))}

    def forward(params, x, ops):
        h = ops.matmul(params["W"], x)
        return ops.add_bias(ops.matmul(params["W"].T, h), params["b"]), h

    def check(n, m, options):
        if options["scale"] <= 0:
            raise ConfigError("model.options.scale", f"must be > 0, got {options['scale']}")

    return ModelKind(name=name, init=init, forward=forward, options={"scale": scale}, check=check)


def test_a_built_in_name_or_another_files_name_is_refused_and_the_same_origin_replaces():
    with pytest.raises(ConfigError, match="built-in"):
        register_model(_linear_kind("relu"))
    first = register_model(_linear_kind("test_linear_a"), origin="file_a")
    assert MODELS.get("test_linear_a") is first and not MODELS.is_builtin("test_linear_a")
    second = register_model(_linear_kind("test_linear_a"), origin="file_a")  # the file run again
    assert MODELS.get("test_linear_a") is second
    with pytest.raises(ConfigError, match="already registered from file_a"):
        register_model(_linear_kind("test_linear_a"), origin="file_b")


def test_a_kinds_options_are_static_axes_and_columns_and_its_check_runs_before_compute(tmp_path):
    register_model(_linear_kind("test_scaled"), origin="tests")
    base = ["model.kind=test_scaled", "sweep.grid.density=[0.1]", "sweep.seeds=1"]
    config = compose_config(
        ["experiment=tms_intro", *tiny(tmp_path / "s"), *base, "+sweep.grid.scale=[0.5,2.0]"]
    )
    chunks = make_chunks(plan_sweep(config))
    assert sorted(dict(c.spec.model_options)["scale"] for c in chunks) == [0.5, 2.0]
    run_sweep(config, progress=False)
    table = read_results(tmp_path / "s")
    assert sorted(table["scale"]) == [0.5, 2.0]
    with pytest.raises(ConfigError, match="model.options.scale: must be > 0"):
        compose_config(["experiment=tms_intro", *base, "+model.options.scale=-1"])
    with pytest.raises(ConfigError, match="model.options.scale: must be > 0"):
        compose_config(["experiment=tms_intro", *base, "+sweep.grid.scale=[1.0,-1.0]"])
    with pytest.raises(ConfigError, match="model.options.width.*its options: scale"):
        compose_config(["experiment=tms_intro", *base, "+model.options.width=3"])


@pytest.mark.parametrize(
    "kind", [n for n in MODELS.names() if MODELS.origin(n) != "tests/probe"]
)  # probe kinds are broken on purpose (tests/sweeps/test_kind_probe.py registers them)
@pytest.mark.parametrize(
    "n,m", [(5, 2), (12, 6)]
)  # the loss computes in rows for the first, dense for the second
def test_every_model_kind_computes_the_same_in_rows_and_dense(kind, n, m):
    k = bind_kind(
        kind, n, m
    )  # the kind as a program uses it (specialised to its options, if it has a bind)
    params = init_params(jax.random.key(1), n, m, 0.6, kind)
    x = jax.random.uniform(jax.random.key(2), (n, 64), minval=-1.0, maxval=1.0)
    imp = 0.9 ** jnp.arange(n)
    out_d, h_d = k.forward(params, x, DENSE)
    out_r, h_r = k.forward(params, ROWS.batch(x), ROWS)
    np.testing.assert_allclose(jnp.stack(out_r), out_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.stack(h_r), h_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        jnp.stack(k.target(ROWS.batch(x), imp, ROWS)), k.target(x, imp, DENSE), rtol=1e-6
    )
    w = imp if k.importance_weighted else jnp.ones((out_d.shape[0],))
    dense = DENSE.weighted_mse(k.target(x, imp, DENSE), out_d, w) + 0.1 * DENSE.l1(h_d)
    rows = ROWS.weighted_mse(k.target(ROWS.batch(x), imp, ROWS), out_r, w) + 0.1 * ROWS.l1(h_r)
    assert float(rows) == pytest.approx(float(dense), rel=1e-5)


def _exponential(v, p, spec):
    return -jnp.log1p(-v) * spec.option("mean")  # inverse CDF of an exponential magnitude


def test_a_users_elementwise_data_kind_trains_and_is_stored(tmp_path):
    register_data(
        DataKind(name="test_exponential", value=_exponential, options={"mean": 0.5}), origin="tests"
    )
    config = compose_config(
        [
            "experiment=tms_intro",
            *tiny(tmp_path / "s"),
            "data.kind=test_exponential",
            "+data.options.mean=0.25",
            "sweep.grid.density=[1.0]",
            "sweep.seeds=1",
        ]
    )
    assert dict(plan_sweep(config).units[0][0].data.options) == {"mean": 0.25}
    assert run_sweep(config, progress=False).ok
    assert read_results(tmp_path / "s")["data_kind"].tolist() == ["test_exponential"]
    with pytest.raises(ConfigError, match="data.options.scale.*its options: mean"):
        compose_config(
            ["experiment=tms_intro", "data.kind=test_exponential", "+data.options.scale=2"]
        )


@pytest.mark.parametrize(
    "kind", [n for n in DATA.names() if DATA.origin(n) != "tests/probe"]
)  # probe kinds are broken on purpose (tests/sweeps/test_kind_probe.py registers them)
def test_every_data_kind_draws_finite_feature_major_batches(kind):
    from toymodels.data import data_spec, sample_batch, uniform_rows
    from toymodels.rng import key_words

    spec = data_spec(kind)
    x = sample_batch(spec, key_words(jax.random.key(0)), jnp.uint32(3), jnp.full((6,), 0.4), 128)
    assert x.shape == (6, 128) and np.all(np.isfinite(x)) and 0 < np.mean(x != 0) < 1
    assert uniform_rows(spec, 6) >= 6


def test_plugins_that_are_missing_or_fail_are_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"plugins\[0\].*not a Python file"):
        compose_config([f"plugins=[{tmp_path / 'absent.py'}]"])
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\nraise RuntimeError('oops')\n")
    with pytest.raises(
        ConfigError, match=r"plugins\[0\].*bad.py failed to load \(RuntimeError: oops, line 2\)"
    ):
        compose_config([f"plugins=[{bad}]"])


@pytest.mark.reproduction
@pytest.mark.slow
def test_the_documented_kind_is_swept_by_the_documented_command_on_ray(tmp_path):
    """docs/kinds.md, "Your own kind": the file and the command exactly as written, in a fresh directory,
    through toymodels-sweep on a local Ray (workers never read the file)."""
    (tmp_path / "my_kinds.py").write_text(doc_block("my_kinds.py"))
    [command] = doc_commands("residual sweep")
    assert command[0] == "toymodels-sweep"
    done = cli(*command, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "runs" / "residual" / "results.parquet")
    assert set(table["model"]) == {"residual"} and "ray_node" in table
    W_out = np.stack([np.stack(w) for w in table["W_out"]])
    assert W_out.shape == (len(table), 10, 20)
    # Predicting x alone (no computation) costs E[ReLU(x)²] = p/6 per feature on U[-1, 1] data.
    best = table.groupby("density")["loss"].min()
    for p, loss in best.items():
        assert loss < 0.5 * p / 6, (p, loss)
    # The figures load the sweep's plugin file, so they know the kind's hidden layer is privileged.
    drawn = cli("toymodels-figures", "runs/residual", cwd=tmp_path, timeout=600)
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert (tmp_path / "runs" / "residual" / "figures" / "neurons.png").exists()


def test_a_changed_plugin_file_is_a_different_sweep(tmp_path):
    """The config hash covers the plugin files' contents: a kind whose code changed must not adopt
    the rows its old code trained."""
    plugin = tmp_path / "kinds.py"
    source = doc_block("my_kinds.py").replace('name="residual"', 'name="test_residual_hash"')
    plugin.write_text(source)
    args = [
        "experiment=tms_intro",
        *tiny(tmp_path / "s"),
        f"plugins=[{plugin}]",
        "model.kind=test_residual_hash",
        "data.kind=signed",
        "sweep.grid.density=[0.3]",
        "sweep.seeds=1",
    ]
    first = compose_config(args)
    assert first.plugins_digest and run_sweep(first, progress=False).trained == 1
    plugin.write_text(source.replace("jax.nn.relu, x))", "jax.nn.relu, 2 * x))"))
    changed = compose_config(args)
    assert changed.plugins_digest != first.plugins_digest
    with pytest.raises(ConfigError, match="sweep.out"):
        run_sweep(changed, progress=False)
