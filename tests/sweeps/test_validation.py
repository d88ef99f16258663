"""One rule per key: a scalar and the grid axis that sweeps it accept and refuse the same values."""

import copy
import dataclasses
import math
import typing

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from sweeps.config import Config, ConfigError, to_config
from tests.helpers import compose_config

PROBES = [
    float("inf"),
    float("-inf"),
    float("nan"),
    -1,
    -0.5,
    0,
    0.0,
    0.5,
    1,
    1.0,
    2,
    3,
    1e38,
    "x",
    True,
]

# axis -> (scalar key, experiment whose checks across keys let both forms through)
AXES = {
    "density": ("data.density", "tms_intro"),
    "density_last": ("data.density", "tms_intro"),
    "importance_decay": ("data.importance.decay", "tms_intro"),
    "lr": ("train.lr", "tms_intro"),
    "weight_decay": ("train.weight_decay", "tms_intro"),
    "l1_hidden": ("train.l1_hidden", "tms_intro"),
    "capacity_feature": ("train.capacity_feature", "tms_intro"),
    "capacity_target": ("train.capacity_target", "tms_intro"),
    "capacity_penalty": ("train.capacity_penalty", "tms_intro"),
    "n_features": ("model.n_features", "tms_intro"),
    "n_hidden": ("model.n_hidden", "tms_intro"),
    "batch_size": ("train.batch_size", "tms_intro"),
    "steps": ("train.steps", "tms_intro"),
    "dataset_seed": ("data.dataset_seed", "dd_cpu_small"),
    "repeats": ("data.repeats", "dd_cpu_small"),
}


@pytest.fixture(scope="module")
def bases():
    return {
        name: compose_config([f"experiment={name}", "sweep.grid={}"])
        for name in ("tms_intro", "dd_cpu_small")
    }


def _accepted(config: Config) -> bool:
    """Through the entry point's own path (OmegaConf, then validation), as the CLI does."""
    try:
        to_config(OmegaConf.structured(config))
    except ConfigError:
        return False
    return True


def _typed(key: str, value):
    """What OmegaConf makes of ``value`` at a typed scalar key (None: a wrong type, refused by
    OmegaConf itself, or converted, e.g. 1.0 to an int key: not a question for the rule table)."""
    node = OmegaConf.structured(Config)
    try:
        OmegaConf.update(node, key, value)
    except ValidationError:
        return None
    typed = OmegaConf.select(node, key)
    return typed if type(typed) is type(value) else None


def _set(config: Config, key: str, value) -> None:
    *path, leaf = key.split(".")
    node = config
    for part in path:
        node = getattr(node, part)
    object.__setattr__(node, leaf, value)  # past the dataclass's annotation, as a grid value is


@pytest.mark.parametrize("axis", sorted(AXES))
def test_a_scalar_and_its_axis_follow_one_rule(bases, axis):
    key, experiment = AXES[axis]
    verdicts = {}
    for value in PROBES:
        if key != "data.density" and _typed(key, value) is None:
            scalar = None
        else:
            as_scalar = copy.deepcopy(bases[experiment])
            _set(as_scalar, key, value)
            scalar = _accepted(as_scalar)
        as_axis = copy.deepcopy(bases[experiment])
        as_axis.sweep.grid[axis] = [value]
        on_axis = _accepted(as_axis)
        if scalar is not None:
            assert scalar == on_axis, (
                f"{key}={value!r}: scalar {'ok' if scalar else 'refused'}, "
                f"sweep.grid.{axis} {'ok' if on_axis else 'refused'}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            assert not on_axis, f"sweep.grid.{axis}=[{value}] accepted"
        verdicts[repr(value)] = on_axis
    assert any(verdicts.values()) and not all(verdicts.values())  # the probes reach both sides


@pytest.mark.parametrize(
    "override,key",
    [
        (["+sweep.grid.lr=[inf]"], "sweep.grid.lr[0]"),
        (["train.lr=inf"], "train.lr"),
        (["train.weight_decay=inf"], "train.weight_decay"),
        (["+sweep.grid.weight_decay=[inf]"], "sweep.grid.weight_decay[0]"),
        (["data.importance.decay=inf"], "data.importance.decay"),
        (["+sweep.grid.importance_decay=[inf]"], "sweep.grid.importance_decay[0]"),
        (["+sweep.grid.importance_last=[inf]"], "sweep.grid.importance_last[0]"),
        (["train.b1=2"], "train.b1"),
        (["train.b2=1.0"], "train.b2"),
        (["train.b1=-0.1"], "train.b1"),
        (["train.eps=-1"], "train.eps"),
        (["train.eps=0"], "train.eps"),
        (["data.rest_scale=inf"], "data.rest_scale"),
        (["data.importance.ratio=nan"], "data.importance.ratio"),
        (["ray.cpus_per_task=inf"], "ray.cpus_per_task"),
        (["sweep.grid.density=[1.0,1.0]"], "sweep.grid.density"),
        (["sweep.grid.density=[1,1.0]"], "sweep.grid.density"),
        (["sweep.grid.density=geomspace(1, 0.1, inf)"], "sweep.grid.density"),
    ],
)
def test_values_the_issue_found_accepted_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        compose_config(["experiment=tms_intro", *override])
    assert info.value.key == key


def test_the_repeated_value_message_says_which_and_what_to_do():
    with pytest.raises(
        ConfigError, match=r"sweep\.grid\.density: the value 1\.0 is listed twice.*sweep\.seeds"
    ):
        compose_config(["experiment=tms_intro", "sweep.grid.density=[1.0,0.5,1.0]"])


def test_adam_settings_at_their_edges_are_accepted():
    config = compose_config(
        ["experiment=tms_intro", "train.b1=0", "train.b2=0.999999", "train.eps=1e-30"]
    )
    assert (config.train.b1, config.train.eps) == (0.0, 1e-30)


def _leaves(node, prefix=""):
    hints = typing.get_type_hints(node)
    for f in dataclasses.fields(node):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _leaves(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hint


def test_every_numeric_key_of_the_schema_has_a_rule():
    from sweeps.validation import RULES

    numeric = {int, float, typing.Optional[int], typing.Optional[float], typing.List[float]}
    missing = [key for key, hint in _leaves(Config) if hint in numeric and key not in RULES]
    assert not missing, f"keys without a rule in sweeps.validation.RULES: {missing}"
