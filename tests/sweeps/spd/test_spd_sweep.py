"""SPD sweeps are ordinary sweeps (issue 24 item 3, stage 2): ``+spd=toy spd.toy.sweep=DIR`` plans
decompositions of a stored toy sweep's models, runs each chunk as one ``decompose_many`` program,
stores one row per decomposition scored against the toy's features, and resumes."""

import jax.numpy as jnp
import numpy as np
import pytest

import sweeps.plan
from sweeps.config import ConfigError
from sweeps.jobs import make_chunks
from sweeps.runner import run_sweep
from sweeps.spd.job import SPD
from sweeps.store import read_results
from tests.helpers import assert_draws_the_same_into_every_target, cli, compose_config, tiny
from toymodels.spd import metrics
from toymodels.spd.components import site_uv
from toymodels.spd.target import tms

# Seconds-long decompositions: 2 learning rates x 2 toy models x 2 seeds = 8, one chunk.
QUICK = [
    "+spd=toy",
    "~sweep.grid.density",
    "sweep.seeds=2",
    "+sweep.grid.lr=[0.01,0.02]",
    "spd.steps=20",
    "spd.batch_size=32",
    "spd.eval_batch=64",
    "spd.C=6",
    "spd.gate_hidden=4",
    "sweep.executor=local",
    "wandb.mode=disabled",
]


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("spd") / "toy"
    config = compose_config(
        ["experiment=tms_intro", "sweep.grid.density=[0.05]", "sweep.seeds=2", *tiny(out)]
    )
    assert run_sweep(config, progress=False).trained == 2
    return out


def test_it_plans_every_model_grid_point_and_seed(toy_sweep):
    config = compose_config(
        [
            *QUICK,
            f"spd.toy.sweep={toy_sweep}",
            "spd.toy.models='seed == 1'",
            "spd.identity=true",
            f"sweep.out={toy_sweep / 'spd'}",
        ]
    )
    plan = sweeps.plan.plan_sweep(config)
    assert plan.job is SPD and len(plan.units) == 2 * 1 * 2
    assert len({p.uid for _, p in plan.units}) == 4 and {p.lr for _, p in plan.units} == {
        0.01,
        0.02,
    }
    assert {g.target.identity for g, _ in plan.units} == {True} and {
        g.spec.C for g, _ in plan.units
    } == {6}
    # 2 models x 2 learning rates x 16 seeds in one chunk of 64 (issue 24 item 4: one program)
    config = compose_config(
        [
            *QUICK,
            f"spd.toy.sweep={toy_sweep}",
            "sweep.seeds=16",
            "sweep.chunk_size=64",
            f"sweep.out={toy_sweep / 'spd'}",
        ]
    )
    assert [c.n_models for c in make_chunks(sweeps.plan.plan_sweep(config))] == [64]


def test_it_runs_in_process_scores_each_row_and_resumes(toy_sweep):
    out = toy_sweep / "spd"
    config = compose_config([*QUICK, f"spd.toy.sweep={toy_sweep}", f"sweep.out={out}"])
    report = run_sweep(config, progress=False)
    assert (report.trained, report.failed) == (8, [])
    table = read_results(out, arrays=True)
    assert len(table) == 8 and table["uid"].is_unique and set(table["toy_seed"]) == {0, 1}
    assert table["mmcs"].between(0, 1).all() and table["recovered"].dtype == bool
    assert (table["target"] == "tms").all() and table["mmcs_chance"].iloc[0] > 0.9  # C = 6 in 2-D
    # Each row's scores are those of its own stored subcomponents and its own toy model.
    from safetensors.numpy import load

    toys = read_results(toy_sweep, arrays=True).set_index("uid")
    target = tms(5, 2)
    for _, row in table.iterrows():
        params = load(bytes(row["params"]))
        U, V = site_uv(
            {"U": {"W": jnp.asarray(params["U/W"])}, "V": {"W": jnp.asarray(params["V/W"])}},
            target.site("W"),
        )
        W = jnp.asarray(toys.loc[row["source_uid"], "W"], jnp.float32)
        alive = jnp.asarray(np.arange(6) < row["n_alive"][0])  # only the MMCS is compared
        mmcs = metrics.site_scores(U, V, W, jnp.eye(5), alive)[0]
        assert abs(float(mmcs) - row["mmcs"]) < 1e-5
    again = run_sweep(config, progress=False)
    assert (again.trained, again.already_done) == (0, 8)
    # its figure, and no toy-model figure, from the store
    from analysis.figures.catalog import FIGURES, draw, figure_names
    from analysis.stored_sweep import StoredSweep

    sweep = StoredSweep.load(out)
    assert figure_names(sweep) == ["spd_recovery"]
    assert len(draw("spd_recovery", sweep).axes) == 3
    assert_draws_the_same_into_every_target(lambda target: draw("spd_recovery", sweep, target))
    notes = FIGURES["spd_recovery"].notes(sweep)
    assert list(notes.values()) == [
        round(float(rows["recovered"].mean()), 3) for _, rows in table.groupby("lr")
    ]
    assert all("lr=" in name for name in notes)  # one per learning rate


@pytest.mark.parametrize(
    "override, key",
    [
        ("spd.C=0", "spd.C"),
        ("spd.schedule=linear", "spd.schedule"),
        ("spd.batch_blocks=5", "spd.batch_blocks"),
        ("+sweep.grid.l1=[0.1]", "sweep.grid.l1"),
        ("sweep.grid.lr=[0.01,-1]", r"sweep.grid.lr\[1\]"),
        ("spd.toy.sweep=", "spd.toy.sweep"),
    ],
)
def test_bad_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        compose_config([*QUICK, "spd.toy.sweep=runs/x", override])


def test_the_command_refuses_a_bad_key_in_one_line(toy_sweep, tmp_path):
    done = cli(
        "toymodels-sweep",
        *QUICK,
        f"spd.toy.sweep={toy_sweep}",
        "spd.toy.models=\"model == 'abs'\"",
        f"sweep.out={tmp_path / 'x'}",
    )
    assert (
        done.returncode == 2 and done.stderr.count("\n") == 1 and "spd.toy.models: " in done.stderr
    )
    assert not (tmp_path / "x" / "results.parquet").exists()


@pytest.mark.reproduction
@pytest.mark.slow
def test_an_spd_sweep_on_ray_stores_the_same_bits(toy_sweep, tmp_path):
    local = tmp_path / "local"
    assert (
        run_sweep(
            compose_config([*QUICK, f"spd.toy.sweep={toy_sweep}", f"sweep.out={local}"]),
            progress=False,
        ).trained
        == 8
    )
    done = cli(
        "toymodels-sweep",
        *QUICK[:-2],
        "sweep.executor=ray",
        "ray.num_cpus=2",
        "wandb.mode=offline",
        f"spd.toy.sweep={toy_sweep}",
        f"sweep.out={tmp_path / 'ray'}",
    )
    assert done.returncode == 0, done.stderr
    ray_rows = read_results(tmp_path / "ray").set_index("uid")
    ours = read_results(local).set_index("uid")
    assert ray_rows["ray_node"].notna().all() and sorted(ray_rows.index) == sorted(ours.index)
    assert all(
        bytes(ray_rows.loc[uid, "params"]) == bytes(ours.loc[uid, "params"]) for uid in ours.index
    )
    # wandb failing only warns (tracking never fails a sweep): its warning is the diagnosis
    assert list((tmp_path / "ray" / "wandb" / "logged").iterdir()), (
        f"every chunk is logged (offline); stderr: {done.stderr[-3000:]}"
    )


def test_models_of_one_kind_whose_shapes_differ_are_decomposed_side_by_side(tmp_path):
    """A toy sweep over a kind's option that changes its parameters' shapes (residual_mlp's layers):
    each model carries its own arrays (it once stacked them and crashed in planning)."""
    toy = tmp_path / "toy"
    config = compose_config(
        [
            "experiment=tms_intro",
            "model.kind=residual_mlp",
            "model.n_features=6",
            "model.n_hidden=4",
            "data.kind=signed",
            "sweep.grid.density=[0.1]",
            "+sweep.grid.layers=[1,2]",
            "sweep.seeds=1",
            *tiny(toy),
        ]
    )
    assert run_sweep(config, progress=False).trained == 2
    quick = [a for a in QUICK if not a.startswith("+sweep.grid.lr")]
    config = compose_config(
        [*quick, "sweep.seeds=1", f"spd.toy.sweep={toy}", f"sweep.out={tmp_path / 'spd'}"]
    )
    plan = sweeps.plan.plan_sweep(config)
    assert len(plan.units) == 2
    shapes = {uid: {k: v.shape for k, v in c["params"].items()} for uid, c in plan.carry.items()}
    assert len(shapes) == 2 and len({tuple(sorted(s.items())) for s in shapes.values()}) == 2


@pytest.mark.parametrize("experiment, n, m", [("spd_tms52", 5, 2), ("spd_tms4010", 40, 10)])
def test_the_spd_experiments_train_the_models_spd_tms_trains(experiment, n, m, tmp_path):
    """experiment=spd_tms52 / spd_tms4010 train the TMS targets of scripts/spd-tms
    (toymodels.spd.anchors.train_targets: the paper's settings) bit for bit, given the same model
    key (the store's is fold_in(base_seed, uid); the script's model i is uid i); 20 steps here."""
    from toymodels.spd.anchors import train_targets

    steps = 20
    overrides = [f"train.steps={steps}", "train.snapshot_every=10", "sweep.seeds=1"]
    config = compose_config(
        [f"experiment={experiment}", *overrides, f"sweep.out={tmp_path}", "sweep.executor=local"]
    )
    config.wandb.mode = "disabled"
    assert run_sweep(config, progress=False).trained == 1
    (row,) = read_results(tmp_path, arrays=True).itertuples()
    arrays, losses = train_targets(n, m, [row.uid], steps=steps)
    np.testing.assert_array_equal(np.asarray(arrays["params"]["W"][0]), np.stack(row.W))
    np.testing.assert_array_equal(np.asarray(arrays["params"]["b"][0]), row.b)
    assert float(losses[0]) == row.loss
