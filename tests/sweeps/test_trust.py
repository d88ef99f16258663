"""Reading a store runs no code the reader did not name (issue 22 item 1), and plug-ins survive a
move, are one origin however they are loaded, and are recorded with a store (item 10)."""

import importlib.util
import json
import shutil
import sys
from typing import Any

import pytest

from sweeps.runner import run_sweep
from sweeps.store import ConfigError
from tests.helpers import cli, compose_config, tiny
from tests.readme import readme_block

PAYLOAD = (
    "\nimport pathlib as _p\n_p.Path(__file__).with_name('RAN').write_text('the plug-in ran')\n"
)


def _plugin(folder, name="trust_residual"):
    """The README's plug-in under its own kind name, writing RAN beside itself whenever it runs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "my_kinds.py"
    path.write_text(
        readme_block("my_kinds.py").replace('name="residual"', f'name="{name}"') + PAYLOAD
    )
    return path


def _args(plugin, out, name="trust_residual"):
    return [
        "experiment=tms_intro",
        *tiny(out),
        f"plugins=[{plugin}]",
        f"model.kind={name}",
        "data.kind=signed",
        "model.n_features=4",
        "model.n_hidden=2",
        "sweep.grid.density=[0.3]",
        "sweep.seeds=1",
    ]


@pytest.fixture(scope="module")
def plugin_store(tmp_path_factory):
    """A store of a plug-in kind, trained in this process; its plug-in's RAN marker removed."""
    root = tmp_path_factory.mktemp("trust")
    plugin = _plugin(root / "code")
    out = root / "store"
    assert run_sweep(compose_config(_args(plugin, out)), progress=False).trained == 1
    (plugin.parent / "RAN").unlink()
    return plugin, out


def test_reading_a_store_runs_none_of_its_plugin_files(plugin_store, tmp_path, monkeypatch, capsys):
    """Figures, analysis.api.load, toymodels-sae and +sae=toy, from the plug-in's own directory
    (where 43f758a found and ran it)."""
    from analysis import api
    from analysis.cli import main as figures
    from sweeps.sae.cli import main as sae

    plugin, out = plugin_store
    monkeypatch.chdir(plugin.parent)
    ran = plugin.parent / "RAN"
    assert len(api.load(out).table) == 1
    figures([str(out), "--out", str(tmp_path / "figures")])
    assert (
        tmp_path / "figures" / "neurons.png"
    ).exists()  # its recorded privileged layer: no code needed
    with pytest.raises(SystemExit):
        sae([str(out), "--steps", "1", "--models", "seed == 9"])
    sae_config = compose_config(
        [
            "+sae=toy",
            f"sae.toy.sweep={out}",
            "~sweep.grid.density",
            "sae.steps=5",
            f"sweep.out={tmp_path / 'sae'}",
            "wandb.mode=disabled",
            "sweep.executor=local",
        ]
    )
    from sweeps.plan import plan_sweep

    plan_sweep(
        sae_config
    )  # reads the toy store: the kind is registered here (this process trained it)
    assert not ran.exists()
    capsys.readouterr()


def test_a_plugin_named_by_the_reader_is_checked_against_the_store(plugin_store, tmp_path, capsys):
    from analysis.cli import main as figures

    plugin, out = plugin_store
    changed = tmp_path / "my_kinds.py"
    changed.write_text(plugin.read_text().replace("jax.nn.relu, x))", "jax.nn.relu, 2 * x))"))
    with pytest.raises(SystemExit) as exit_:
        figures([str(out), "--out", str(tmp_path / "f"), "--plugins", str(changed)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "--plugins" in err[0] and "is not one of the plug-in files" in err[0]
    ), err
    assert not (tmp_path / "RAN").exists() and not (tmp_path / "f").exists()
    figures(
        [str(out), "--out", str(tmp_path / "f"), "--plugins", str(plugin)]
    )  # the right file: trusted, run
    assert (plugin.parent / "RAN").exists()
    (plugin.parent / "RAN").unlink()


def test_a_fresh_reader_is_told_which_file_to_trust(plugin_store, tmp_path):
    """In a process that never loaded the kind, toymodels-sae stops with one line naming the file."""
    plugin, out = plugin_store
    done = cli("toymodels-sae", str(out), "--steps", "1", cwd=plugin.parent, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "model kind 'trust_residual', defined by its plug-in file my_kinds.py" in lines[0]
    )
    assert "pass --plugins FILE" in lines[0] and not (plugin.parent / "RAN").exists()


def test_a_store_survives_its_plugin_moving(plugin_store, tmp_path):
    """A later session names the plug-in where it is now: the same sweep, resumed (on 43f758a the
    path in the hash made it another sweep)."""
    plugin, out = plugin_store
    moved = tmp_path / "elsewhere" / "kinds.py"
    moved.parent.mkdir()
    shutil.copy(plugin, moved)
    done = cli("toymodels-sweep", *_args("kinds.py", out), cwd=moved.parent, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "0 trained now, 1 already there" in done.stdout
    assert json.loads((out / "kinds.json").read_text())["plugins"][0]["path"] == str(
        moved.resolve()
    )


def test_a_changed_plugin_file_is_named_as_the_reason(plugin_store):
    plugin, out = plugin_store
    source = plugin.read_text()
    try:
        plugin.write_text(source.replace("jax.nn.relu, x))", "jax.nn.relu, 2 * x))"))
        with pytest.raises(
            ConfigError,
            match="plug-in files hold other code than those its models were trained "
            "with.*a file changed since",
        ):
            run_sweep(compose_config(_args(plugin, out)), progress=False)
    finally:
        plugin.write_text(source)
        compose_config(_args(plugin, out))  # the kind registered from the file as it was
        (plugin.parent / "RAN").unlink(missing_ok=True)


def test_a_module_imported_and_named_as_a_plugin_is_one_origin(tmp_path):
    plugin = _plugin(tmp_path / "code", name="trust_imported")
    spec = importlib.util.spec_from_file_location("trust_imported_kinds", plugin)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # as `import my_kinds` in a notebook
    config = compose_config(
        _args(plugin, tmp_path / "s", name="trust_imported")
    )  # then named as a plug-in
    assert config.model.kind == "trust_imported"


def _notebook_kind(scale: float):
    """A model kind as a notebook cell defines it: functions of a module without a file."""
    namespace: dict[str, Any] = {"__name__": "notebook_cell_test_trust"}
    exec(  # noqa: S102
        f"import jax\nimport jax.numpy as jnp\n"
        f"def init(key, n, m, std, options):\n    return {{'W': std * jax.random.normal(key, (m, n)), 'b': jnp.zeros((n,))}}\n"
        f"def forward(params, x, ops):\n    h = ops.matmul(params['W'], x)\n"
        f"    return ops.add_bias(ops.matmul(params['W'].T, h), params['b'] * {scale}), h\n",
        namespace,
    )
    from toymodels.models import ModelKind, register_model

    return register_model(
        ModelKind(
            name="trust_notebook",
            init=namespace["init"],
            forward=namespace["forward"],
            privileged=True,
        )
    )


def test_kinds_registered_in_a_notebook_are_recorded_and_a_change_is_refused(tmp_path):
    _notebook_kind(1.0)
    args = [
        "experiment=tms_intro",
        *tiny(tmp_path / "s"),
        "model.kind=trust_notebook",
        "sweep.grid.density=[1.0]",
        "sweep.seeds=1",
    ]
    assert run_sweep(compose_config(args), progress=False).trained == 1
    [kind] = json.loads((tmp_path / "s" / "kinds.json").read_text())["kinds"]
    assert (
        kind["name"] == "trust_notebook"
        and kind["privileged"]
        and "notebook_cell_test_trust" in kind["origin"]
    )
    assert run_sweep(compose_config(args), progress=False).trained == 0  # the same code: resumes
    _notebook_kind(2.0)  # the cell edited and run again
    with pytest.raises(
        ConfigError, match="model kind 'trust_notebook' .* is not the code .* trained with"
    ):
        run_sweep(compose_config(args), progress=False)


def test_an_unknown_kind_says_a_plugin_may_be_missing():
    with pytest.raises(
        ConfigError,
        match=r"model.kind: 'residual_typo' is not allowed; .* its plug-in file "
        r"\(plugins=\[FILE\]\) .* is one missing\?",
    ):
        compose_config(["model.kind=residual_typo"])
