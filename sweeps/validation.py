"""Validation of a composed config, before any compute: one rule per key, then the checks across keys
and those of the sweep's job kind (``sweeps.jobs.kind.JobKind.validate``).

``RULES`` is the one table of what a value may be (type, range, finiteness). A scalar key
(``train.lr``) and each value of the grid axis that sweeps it (``sweep.grid.lr[i]``) go through
the same rule (``AXIS_RULES`` says which); only the message's key differs. Membership in the model
and data kinds is checked apart, in ``_validate_kinds``; what depends on several keys at once
(finite data's requirements) comes after, and last what each kind needs (its own check, e.g.
sets tiling the features: ``sweeps.config_kinds.check_kinds``).
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass

from sweeps.config import (
    EXECUTORS,
    GRID_AXES,
    RAY_AUTH_MODES,
    STREAMS,
    WANDB_MODES,
    Config,
    ConfigError,
    expand_axis,
    is_finite,
)
from sweeps.config_kinds import check_kinds, option_axes
from sweeps.jobs.devices import MODES
from sweeps.jobs.terms import (
    all_params,
    check_term_rules,
    check_term_values,
    config_key,
    param_axes,
    terms_on,
)
from toymodels.data import DATA, IMPORTANCE_KINDS
from toymodels.models import INIT_KINDS, MODELS
from toymodels.optim import SCHEDULES
from toymodels.registry import MISSING_PLUGIN
from toymodels.terms import TermParam


@dataclass(frozen=True)
class Number:
    """A finite number (an integer with ``integer``) in a range; ``high_key`` takes the upper bound
    (exclusive) from another key of the config, e.g. a feature index below ``model.n_features``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low < value (else low <= value)
    high_open: bool = False  # value < high (else value <= high)
    integer: bool = False
    optional: bool = False  # None is allowed (null: a default chosen elsewhere)
    high_key: str | None = None
    what: str = ""  # the phrase before "must be", e.g. "a density p = 1 - S"

    def describe(self, config: Config | None) -> str:  # config: read only for high_key
        high, high_open = self.high, self.high_open
        if self.high_key:
            high, high_open = operator.attrgetter(self.high_key)(config), True
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and high is not None:
            if self.integer and self.high_key:
                return f"{kind} in {self.low}..{high - 1} ({self.high_key}={high})"
            return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {high:g}{')' if high_open else ']'}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return kind

    def check(self, key: str, value, config: Config) -> None:
        if value is None and self.optional:
            return
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
        ok = ok and (isinstance(value, int) or not self.integer)
        if ok:
            high, high_open = self.high, self.high_open
            if self.high_key:
                high, high_open = operator.attrgetter(self.high_key)(config), True
            ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
            ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            subject = f"{self.what} " if self.what else ""
            raise ConfigError(key, f"{subject}must be {self.describe(config)}, got {value!r}")


@dataclass(frozen=True)
class Density:
    """A density p = 1 − S in (0, 1]; in [0, 1] where the data kind says p = 0 means something
    (``DataKind.zero_density``: e.g. noise features that are never on)."""

    def check(self, key: str, value, config: Config) -> None:
        kind = DATA.find(config.data.kind)
        zero = bool(kind and kind.zero_density)
        Number(low=0, high=1, low_open=not zero, what="a density p = 1 - S").check(
            key, value, config
        )


@dataclass(frozen=True)
class OneOf:
    allowed: tuple[str, ...]
    hint: str = ""  # said after the choices (a kind: its plug-in may be missing)

    def check(self, key: str, value, config: Config) -> None:
        if value not in self.allowed:
            raise ConfigError(
                key, f"{value!r} is not allowed; choose one of {', '.join(self.allowed)}{self.hint}"
            )


def Int(low: int | None = None, **kw) -> Number:
    return Number(low=low, integer=True, **kw)


POSITIVE = Number(low=0, low_open=True)
NON_NEGATIVE = Number(low=0)
DENSITY = Density()
UNIT_OPEN = Number(low=0, high=1, high_open=True)  # Adam's betas: [0, 1)


def term_rule(param: TermParam) -> Number:
    """The rule of a loss term's setting, as the term declares it (``toymodels.terms``)."""
    return Number(
        low=param.low,
        high=param.high,
        low_open=param.low_open,
        high_open=param.high_open,
        integer=param.integer,
        high_key=param.high_key,
        what=param.what,
    )


def term_rules() -> dict[str, Number]:
    """The rules of every registered loss term's settings, by config key (``train.<name>`` or
    ``train.terms.<name>``) and by grid axis (``sweep.grid.<name>``)."""
    return {
        key: term_rule(p) for p in all_params() for key in (config_key(p), f"sweep.grid.{p.name}")
    }


RULES: dict[str, Number | OneOf | Density] = {
    "model.n_features": Int(1),
    "model.n_hidden": Int(1),
    "model.init": OneOf(INIT_KINDS),
    "model.init_instances": Int(1),
    "data.density": DENSITY,  # one number, or each of a per-feature list
    "data.set_size": Int(1),  # tiling the features: the set kinds' own check
    "data.rest_scale": POSITIVE,
    "data.streams": OneOf(STREAMS),
    "data.n_train": Int(0),  # 0: a fresh batch every step
    "data.dataset_seed": Int(0),
    "data.repeats": Int(0),
    "data.n_repeated": Int(0),
    "data.max_active": Int(0),
    "data.importance.kind": OneOf(IMPORTANCE_KINDS),
    "data.importance.decay": POSITIVE,
    "data.importance.ratio": POSITIVE,
    "data.importance.values": NON_NEGATIVE,  # each of the list
    "train.steps": Int(1),
    "train.batch_size": Int(1),
    "train.lr": POSITIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.schedule": OneOf(SCHEDULES),
    "train.warmup_steps": Int(0),
    "train.b1": UNIT_OPEN,
    "train.b2": UNIT_OPEN,
    "train.eps": POSITIVE,
    "train.snapshot_every": Int(0),
    "train.eval_samples": Int(1),
    "train.eval_seed": Int(),
    "train.piece_size": Int(0),  # 0: the device's default
    "train.batch_blocks": Int(1),
    "sweep.seeds": Int(1),
    "sweep.base_seed": Int(0),
    "sweep.chunk_size": Int(0),
    "sweep.executor": OneOf(EXECUTORS),
    "sweep.devices": Int(0, what="the most devices a chunk's process uses (0: all)"),
    "sweep.sharding": OneOf(MODES),
    "sweep.grid.importance_last": POSITIVE,  # an axis with no scalar key of its own
    "sweep.grid.density_last_ratio": POSITIVE,  # the last feature's density over its configured one
    "ray.num_cpus": Int(1, optional=True),
    "ray.num_gpus": Int(0, optional=True),
    "ray.cpus_per_task": POSITIVE,
    "ray.gpus_per_task": NON_NEGATIVE,
    "ray.tpus_per_task": NON_NEGATIVE,  # whole chips of TPU_CHIPS_PER_TASK: _validate_devices
    "ray.max_retries": Int(0),
    "ray.auth_mode": OneOf(RAY_AUTH_MODES),
    "wandb.per_model_limit": Int(1),
}

# The built-in loss terms' settings (a plugin term's: ``term_rules()`` when checked).
RULES.update({key: rule for key, rule in term_rules().items() if not key.startswith("sweep.grid.")})

# Grid axis -> the key whose rule each of its values follows (``model`` is a kind: _validate_kinds).
AXIS_RULES = {
    "density": "data.density",
    "density_last": "data.density",
    "importance_decay": "data.importance.decay",
    "importance_last": "sweep.grid.importance_last",
    "lr": "train.lr",
    "weight_decay": "train.weight_decay",
    "density_last_ratio": "sweep.grid.density_last_ratio",
    "dataset_seed": "data.dataset_seed",
    "n_features": "model.n_features",
    "n_hidden": "model.n_hidden",
    "batch_size": "train.batch_size",
    "steps": "train.steps",
    "n_train": "data.n_train",
    "repeats": "data.repeats",
}


def check(key: str, value, config: Config, rule_key: str | None = None) -> None:
    """``value`` under the rule of ``rule_key`` (default ``key``); each element of a list alike."""
    rule = RULES.get(rule_key or key) or term_rules()[rule_key or key]
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            rule.check(f"{key}[{i}]", v, config)
    else:
        rule.check(key, value, config)


def _validate_scalars(config: Config) -> None:
    terms = {config_key(p) for p in all_params()}
    for key in RULES:
        if not key.startswith("sweep.grid.") and key not in terms:
            check(key, operator.attrgetter(key)(config), config)
    _validate_terms(config)


def _validate_terms(config: Config) -> None:
    """Every loss term's settings (``train.<name>``, ``train.terms.<name>``) by their rules."""
    check_term_values(config, lambda key, value, param: term_rule(param).check(key, value, config))


def _validate_grid(config: Config) -> None:
    terms = param_axes()
    allowed = (
        GRID_AXES + terms + option_axes(config)
    )  # the model kinds' options are static axes too
    for name, spec in config.sweep.grid.items():
        if name not in allowed:
            raise ConfigError(
                f"sweep.grid.{name}", f"unknown grid axis; allowed: {', '.join(allowed)}"
            )
        values = expand_axis(name, spec)
        if name in AXIS_RULES or name in terms:
            check(f"sweep.grid.{name}", values, config, AXIS_RULES.get(name, f"sweep.grid.{name}"))
        seen: dict = {}
        for i, v in enumerate(values):
            if v in seen:  # the same model twice: one model id, two rows
                raise ConfigError(
                    f"sweep.grid.{name}",
                    f"the value {v!r} is listed twice (positions {seen[v]} "
                    f"and {i}); list each value once (repeats of one setting are sweep.seeds)",
                )
            seen[v] = i


def _validate_kinds(config: Config) -> None:
    """Membership in the kind tables (``toymodels.models.MODELS``, ``toymodels.data.DATA``; finite
    data: the kinds with a full-batch gradient). What each kind needs of the rest of the config
    is its own check, run last (``sweeps.config_kinds.check_kinds``)."""
    kinds = OneOf(MODELS.names(), MISSING_PLUGIN)
    kinds.check("model.kind", config.model.kind, config)
    grid_kinds = (
        expand_axis("model", config.sweep.grid["model"]) if "model" in config.sweep.grid else []
    )
    for i, kind in enumerate(grid_kinds):
        kinds.check(f"sweep.grid.model[{i}]", kind, config)
    OneOf(DATA.names(), MISSING_PLUGIN).check("data.kind", config.data.kind, config)
    if is_finite(config):
        from toymodels.finite import finite_kinds

        for kind in grid_kinds or [config.model.kind]:
            OneOf(finite_kinds()).check("model.kind", kind, config)


def _validate_tracking(config: Config) -> None:
    w = config.wandb
    if w.mode not in WANDB_MODES:
        source = (
            " (from the environment variable WANDB_MODE)"
            if os.environ.get("WANDB_MODE") == w.mode
            else ""
        )
        raise ConfigError(
            "wandb.mode",
            f"{w.mode!r}{source} is not allowed; choose one of {', '.join(WANDB_MODES)}",
        )
    if not w.project or any(c in w.project for c in "/\\#?%:") or len(w.project) > 128:
        raise ConfigError(
            "wandb.project",
            f"must be a name of 1-128 characters without / \\ # ? % :, got {w.project!r}",
        )
    if w.entity is not None and not w.entity.strip():
        raise ConfigError("wandb.entity", "must be a non-empty name, or null for wandb's default")
    if w.dir is not None and not w.dir.strip():
        raise ConfigError("wandb.dir", "must name a directory, or null for sweep.out")
    if not config.sweep.out:
        raise ConfigError("sweep.out", "must name an output directory")


def _axis_or(config: Config, axis: str, value) -> list:
    grid = config.sweep.grid
    return expand_axis(axis, grid[axis]) if axis in grid else [value]


def _validate_finite(config: Config) -> None:
    d, t, grid = config.data, config.train, config.sweep.grid
    finite_only = [f"sweep.grid.{a}" for a in ("dataset_seed", "repeats") if a in grid] + (
        ["data.repeats"] if d.repeats else []
    )
    if not is_finite(config):
        if finite_only:
            raise ConfigError(
                finite_only[0],
                "only applies to finite data: set data.n_train (T > 0) or an n_train axis",
            )
        return
    if d.kind != "sparse":
        raise ConfigError(
            "data.kind", f"finite datasets are drawn from sparse data; got {d.kind!r}"
        )
    if d.streams != "model":
        raise ConfigError(
            "data.streams",
            "finite datasets are drawn per data.dataset_seed, not from streams; "
            f"leave data.streams=model, got {d.streams!r}",
        )
    if (
        isinstance(d.density, (list, tuple))
        or "density_last" in grid
        or "density_last_ratio" in grid
    ):
        raise ConfigError("data.density", "finite datasets use one density for every feature")
    if t.schedule != "warmup_cosine":
        raise ConfigError(
            "train.schedule",
            "finite data trains with Henighan et al.'s schedule: set "
            f"train.schedule=warmup_cosine (linear warm-up, cosine to 0), got {t.schedule!r}",
        )
    for term in terms_on(
        config
    ):  # the full-batch trainer has a hand-written gradient of its loss alone
        param = next(p for p in term.params if p.name in term.switches)
        raise ConfigError(
            config_key(param), "the optional loss terms are not available with finite data"
        )
    copies = max(d.repeats, 1) * d.n_repeated
    for i, T in enumerate(_axis_or(config, "n_train", d.n_train)):
        if T < 1:  # data.n_train=0 means fresh batches: not a point of a finite-data grid
            raise ConfigError(
                f"sweep.grid.n_train[{i}]", f"a finite dataset needs T >= 1 points, got {T!r}"
            )
        if copies > T:
            raise ConfigError(
                "data.n_repeated",
                f"{d.n_repeated} points × {max(d.repeats, 1)} copies exceed n_train={T}",
            )


def _validate_across(config: Config) -> None:
    m, d, t, s = config.model, config.data, config.train, config.sweep
    imp = d.importance
    if isinstance(d.density, (list, tuple)) and len(d.density) != m.n_features:
        raise ConfigError(
            "data.density",
            f"a per-feature list needs model.n_features={m.n_features} values, "
            f"got {len(d.density)}",
        )
    if imp.kind == "explicit" and len(imp.values) != m.n_features:
        raise ConfigError(
            "data.importance.values",
            f"needs model.n_features={m.n_features} values, got {len(imp.values)}",
        )
    if t.schedule == "warmup_cosine" and t.warmup_steps >= t.steps:
        raise ConfigError(
            "train.warmup_steps", f"must be below train.steps={t.steps} for warmup_cosine"
        )
    for size in _axis_or(config, "batch_size", t.batch_size):
        if size % t.batch_blocks:
            raise ConfigError(
                "train.batch_blocks", f"must divide the batch size {size}, got {t.batch_blocks}"
            )
    check_term_rules(config)
    if "density_last_ratio" in s.grid:
        _check_density_ratio(config)
    if "importance_decay" in s.grid and imp.kind != "geometric":
        raise ConfigError(
            "sweep.grid.importance_decay", f"needs data.importance.kind=geometric, got {imp.kind!r}"
        )
    if "density" in s.grid and isinstance(d.density, (list, tuple)):
        raise ConfigError(
            "sweep.grid.density",
            "sets every feature's density, so data.density must then be a "
            "single number; drop the axis with ~sweep.grid.density to use per-feature densities",
        )
    if "n_features" in s.grid and (isinstance(d.density, (list, tuple)) or imp.kind == "explicit"):
        raise ConfigError(
            "sweep.grid.n_features",
            "cannot vary with per-feature data.density or explicit importances",
        )


def _check_density_ratio(config: Config) -> None:
    """The last feature's density as a multiple of its configured one stays at most 1, and is not
    also set by density_last."""
    key, grid, d = "sweep.grid.density_last_ratio", config.sweep.grid, config.data.density
    if "density_last" in grid:
        raise ConfigError(
            key, "sets the last feature's density as density_last does: sweep one of them"
        )
    last = _axis_or(config, "density", d[-1] if isinstance(d, (list, tuple)) else d)
    for i, ratio in enumerate(expand_axis("density_last_ratio", grid["density_last_ratio"])):
        for p in last:
            if ratio * p > 1:
                raise ConfigError(f"{key}[{i}]", f"{ratio} × density {p} is above 1")


# TPU chips Ray gives one task (ray._private.accelerators.tpu.TPU_VALID_CHIP_OPTIONS).
TPU_CHIPS_PER_TASK = (1, 2, 4, 8)
_CHIPS = "1, 2, 4 or 8"


def _validate_devices(config: Config) -> None:
    """Resource requests that no task could get (docs/devices.md)."""
    r = config.ray
    if r.tpus_per_task and r.tpus_per_task != int(r.tpus_per_task):
        raise ConfigError(
            "ray.tpus_per_task",
            "a TPU chip is not shared between tasks (JAX opens a chip in one "
            f"process): whole chips, {_CHIPS}; got {r.tpus_per_task:g}",
        )
    if r.tpus_per_task and r.tpus_per_task not in TPU_CHIPS_PER_TASK:
        raise ConfigError(
            "ray.tpus_per_task",
            f"Ray gives a task {_CHIPS} TPU chips (a whole host: 4 on v4/v5p, "
            f"8 on v5e/v6e), got {r.tpus_per_task:g}",
        )
    if r.gpus_per_task > 1 and r.gpus_per_task != int(r.gpus_per_task):
        raise ConfigError(
            "ray.gpus_per_task",
            f"a task gets a share of one GPU (below 1) or whole GPUs, its chunk "
            f"spread over them; got {r.gpus_per_task:g}",
        )
    if r.tpus_per_task and r.gpus_per_task:
        raise ConfigError(
            "ray.tpus_per_task",
            f"a task runs JAX on GPUs or on TPU chips, not both: got "
            f"ray.gpus_per_task={r.gpus_per_task:g} and ray.tpus_per_task={r.tpus_per_task:g}; "
            "set one of them to 0",
        )


def validate_models(config: Config) -> None:
    """The checks of a toy-model sweep (the fresh-data and finite-data job kinds)."""
    _validate_grid(config)
    _validate_finite(config)
    _validate_across(config)
    check_kinds(config)


def validate(config: Config) -> None:
    """Check every value before any compute; raise ConfigError naming the key and what is allowed:
    the keys every config has, then the checks of its job kind (``sweeps.plan.job_kind_of``)."""
    from sweeps.plan import job_kind_of

    _validate_scalars(config)
    _validate_devices(config)
    _validate_kinds(config)
    job_kind_of(config).validate(config)
    _validate_tracking(config)
