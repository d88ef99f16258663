"""Every config composes; overrides work; bad input fails before any compute, naming the key."""

import pytest

from sweeps.config import ConfigError, expand_axis
from sweeps.jobs import make_chunks
from sweeps.jobs.models import grid_axes
from sweeps.plan import plan_sweep
from tests.helpers import EXPERIMENTS, cli, compose_config


def test_the_required_experiments_exist():
    assert {"tms_intro", "tms_phase_2d", "tms_geometry"} <= set(EXPERIMENTS)


# SAE sweeps plan SAEs, each kind once per setting it reads: tests/test_sae_sweep.py.
@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if not e.startswith("sae_")])
def test_every_experiment_composes_and_plans(experiment):
    config = compose_config([f"experiment={experiment}"])
    assert config.name == experiment
    plan = plan_sweep(config)
    models = plan.units
    n_points = 1
    for values in grid_axes(config).values():
        n_points *= len(values)
    assert len(models) == n_points * config.sweep.seeds
    spec_of = {p.uid: spec for spec, p in models}
    for chunk in make_chunks(plan):
        assert {spec_of[p.uid] for p in chunk.points} == {chunk.spec}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_file_starts_with_its_command(experiment):
    from sweeps.config import CONF_DIR

    lines = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"  # Hydra reads the package header on line 1 only
    assert lines[1].startswith(f"# toymodels-sweep experiment={experiment}")


def test_tms_intro_is_the_papers_setting():
    config = compose_config(["experiment=tms_intro"])
    assert (config.model.n_features, config.model.n_hidden) == (5, 2)
    densities = grid_axes(config)["density"]
    assert len(densities) == 10 and densities[0] == 1.0 and densities[-1] == pytest.approx(0.05)
    _, point = plan_sweep(config).units[0]
    assert point.importance_F == pytest.approx(tuple(0.9**i for i in range(5)))


def test_documented_overrides_apply():
    config = compose_config(
        [
            "experiment=tms_intro",
            "model.n_features=7",
            "model.n_hidden=3",
            "train.steps=123",
            "train.batch_size=64",
            "train.lr=0.01",
            "train.weight_decay=0.1",
            "sweep.seeds=4",
            "sweep.out=/tmp/x",
            "sweep.grid.density=[1.0,0.1]",
            "+sweep.grid.lr=[0.001,0.01]",
        ]
    )
    models = plan_sweep(config).units
    assert len(models) == 2 * 2 * 4
    spec, point = models[0]
    assert (spec.n_features, spec.n_hidden, spec.steps, spec.batch_size) == (7, 3, 123, 64)
    assert point.weight_decay == pytest.approx(0.1)
    assert {p.lr for _, p in models} == {0.001, 0.01}
    assert config.sweep.out == "/tmp/x"


def test_importance_decay_axis_sets_second_feature_importance():
    config = compose_config(["experiment=tms_phase_2d_small"])
    for _, p in plan_sweep(config).units:
        assert p.importance_F == pytest.approx((1.0, dict(p.coords)["importance_decay"]))
        assert p.density_F == (dict(p.coords)["density"],) * 2


def test_static_axes_split_chunks():
    config = compose_config(
        ["experiment=tms_intro", "+sweep.grid.n_hidden=[1,2]", "sweep.grid.density=[1.0,0.5]"]
    )
    chunks = make_chunks(plan_sweep(config))
    assert {c.spec.n_hidden for c in chunks} == {1, 2}
    assert sum(c.n_models for c in chunks) == 2 * 2 * config.sweep.seeds


def test_grid_generators():
    assert expand_axis("density", "geomspace(1.0, 0.01, 3)") == pytest.approx([1.0, 0.1, 0.01])
    assert expand_axis("lr", "linspace(0, 1, 3)") == pytest.approx([0.0, 0.5, 1.0])
    assert expand_axis("density", [0.5]) == [0.5]
    for bad in (
        "logspace(0, 1, 3)",
        "geomspace(0, 1, 3)",
        "geomspace(1, 0.1, 2.5)",
        "geomspace(1, 2)",
        "0.5",
    ):
        with pytest.raises(ConfigError, match="sweep.grid.density"):
            expand_axis("density", bad)


@pytest.mark.parametrize(
    "override,key",
    [
        (["sweep.grid.density=[-0.1,0.5]"], "sweep.grid.density[0]"),
        (["model.n_hidden=0"], "model.n_hidden"),
        (["+sweep.grid.colour=[1,2]"], "sweep.grid.colour"),
        (["model.kind=cubic"], "model.kind"),
        (["train.schedule=exponential"], "train.schedule"),
        (["data.density=1.5"], "data.density"),
        (["data.kind=gaussian"], "data.kind"),
        (
            ["data.kind=correlated", "data.set_size=2"],
            "data.set_size",
        ),  # 5 features do not tile into pairs
        (["data.kind=kurtosis", "data.magnitude=cauchy"], "data.magnitude"),
        (["train.capacity_feature=7"], "train.capacity_feature"),
        (["+sweep.grid.capacity_target=[0.5,1.5]"], "sweep.grid.capacity_target[1]"),
        (["+sweep.grid.model=[relu,cubic]"], "sweep.grid.model[1]"),
        (["data.n_train=10"], "train.schedule"),  # finite data trains with warm-up then cosine
        (["data.n_train=10", "train.schedule=warmup_cosine", "data.kind=signed"], "data.kind"),
        (
            [
                "data.n_train=4",
                "train.schedule=warmup_cosine",
                "data.n_repeated=1",
                "data.repeats=5",
            ],
            "data.n_repeated",
        ),
        (["+sweep.grid.dataset_seed=[0,1]"], "sweep.grid.dataset_seed"),  # only with finite data
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        compose_config(["experiment=tms_intro", *override])
    assert info.value.key == key


@pytest.mark.parametrize(
    "args,expect",
    [
        (["model.n_hidden=0"], ["model.n_hidden", ">= 1"]),
        (["sweep.grid.density=[-0.5]"], ["sweep.grid.density", "(0, 1]"]),
        (["model.colour=red"], ["model.colour", "n_features"]),  # lists the allowed keys
        (["train.steps=many"], ["train.steps", "many"]),
        (
            ["experiment=no_such_thing"],
            ["experiment/no_such_thing", "closest: "],
        ),  # the closest experiments
        (["model.kind=cubic"], ["model.kind", "relu, linear"]),
        (["sweep.grid.density=[1.0,1.0]"], ["sweep.grid.density: the value 1.0 is listed twice"]),
        (["train.eps=-1"], ["train.eps: must be a finite number > 0, got -1.0"]),
    ],
)
def test_cli_rejects_bad_input_before_compute(tmp_path, args, expect):
    out = tmp_path / "never"
    result = cli("toymodels-sweep", f"sweep.out={out}", *args, cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    for fragment in expect:
        assert fragment in message, message
    assert "Traceback" not in message
    assert not out.exists()  # nothing was trained, stored or even created


def test_a_missing_config_directory_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYMODELS_CONF", str(tmp_path / "nowhere"))
    result = cli("toymodels-sweep", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "TOYMODELS_CONF" in result.stderr and "nowhere" in result.stderr
