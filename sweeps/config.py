"""Typed configuration: the Hydra structured-config schema and its validation.

Hydra composes ``conf/`` on top of the ``Config`` schema below (so an unknown key or a wrong type
is refused by OmegaConf, naming the key); ``to_config`` turns the result into these dataclasses
once, at the entry point, and ``validate`` checks values before any compute. Nothing below the
entry point sees a ``DictConfig``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from toymodels.data import DATA, IMPORTANCE_KINDS
from toymodels.models import INIT_KINDS, MODELS
from toymodels.optim import SCHEDULES
from toymodels.registry import ConfigError

# The repository's conf/ (an editable install, as scripts/setup makes), or TOYMODELS_CONF.
CONF_DIR = Path(os.environ.get("TOYMODELS_CONF") or Path(__file__).resolve().parent.parent / "conf")

# Grid axes: per-model values (array leaves, one compile for all) and shape-setting values
# (static: models that differ in one never share a chunk).
PER_MODEL_AXES = ("density", "density_last", "density_last_ratio", "importance_decay", "importance_last", "lr", "weight_decay",
                  "l1_hidden", "capacity_feature", "capacity_target", "capacity_penalty", "dataset_seed",
                  "mono_penalty", "mono_start")
STREAMS = ("model", "seed")
STATIC_AXES = ("n_features", "n_hidden", "batch_size", "steps", "model", "n_train", "repeats")
GRID_AXES = PER_MODEL_AXES + STATIC_AXES
INTEGER_AXES = ("n_features", "n_hidden", "batch_size", "steps", "n_train", "repeats", "dataset_seed",
                "capacity_feature", "mono_start")
GRID_GENERATORS = ("geomspace", "linspace")
EXECUTORS = ("ray", "local")
RAY_AUTH_MODES = ("disabled", "token")
WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class ModelConf:
    kind: str = "relu"  # a kind of toymodels.models.MODELS: relu | linear | gelu | relu_hidden | abs | quadratic
    n_features: int = 5
    n_hidden: int = 2
    init: str = "xavier"  # xavier (per model) | notebook (std depends on init_instances)
    init_instances: int = 10
    options: Dict[str, Any] = field(default_factory=dict)  # the kind's own static options


@dataclass
class ImportanceConf:
    # geometric: decay**i | logspace: ratio**-linspace(0,1,n) | explicit | target_only: (1, 0, ..., 0)
    kind: str = "geometric"
    decay: float = 1.0
    ratio: float = 100.0
    values: List[float] = field(default_factory=list)


@dataclass
class DataConf:
    # a kind of toymodels.data.DATA: sparse | signed | correlated | anticorrelated | kurtosis
    kind: str = "sparse"
    # Feature density p = 1 - S: one number for every feature, or a list of n_features numbers.
    # Correlated and anticorrelated sets use their first member's density.
    density: Any = 1.0
    set_size: int = 2  # features per correlated / anticorrelated set (consecutive features)
    magnitude: str = "uniform"  # kurtosis data: uniform | gaussian | sign (zero mean, unit variance)
    rest_scale: float = 1.0  # multiplies every feature after the first (noise features: 0.1)
    # Random streams of the fresh batches: model (each model its own, like the notebook's
    # instances) | seed (one per seed index, shared by every grid point: common random numbers,
    # each model's data distributed exactly as with model; README: Random streams).
    streams: str = "model"
    # Finite data (Henighan et al. 2023): 0 draws a fresh batch every step; T > 0 trains full-batch
    # on T points drawn once from dataset_seed and rescaled to unit norm (toymodels.finite).
    n_train: int = 0
    dataset_seed: int = 0
    repeats: int = 0  # the first n_repeated points each appear this many times among the T
    n_repeated: int = 0
    max_active: int = 0  # stored non-zeros per point; 0 chooses it from n, the density and T
    importance: ImportanceConf = field(default_factory=ImportanceConf)
    options: Dict[str, Any] = field(default_factory=dict)  # a user data kind's own options


@dataclass
class TrainConf:
    steps: int = 10_000
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "constant"  # constant | linear | cosine | warmup_cosine
    warmup_steps: int = 0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    snapshot_every: int = 100
    eval_samples: int = 65_536
    eval_seed: int = 0
    l1_hidden: float = 0.0  # + l1_hidden · mean ‖h‖₁ of the hidden activations (0: off)
    # Hold feature capacity_feature's C near capacity_target by + capacity_penalty · (C − target)²
    # (-1: no feature held). The stored loss is the model's loss without these terms.
    capacity_feature: int = -1
    capacity_target: float = 1.0
    capacity_penalty: float = 0.0
    # Buy monosemanticity: + mono_penalty · Σ_i C_i(1 − C_i) (0: off), on from step mono_start
    # (0: from scratch; s > 0: a fine-tune after s steps without it). Not in the stored loss.
    mono_penalty: float = 0.0
    mono_start: int = 0
    piece_size: int = 1024  # finite data: points per piece of the full-batch loss (bounds memory)
    # Compute each batch in this many column blocks: same data, gradient equal up to rounding,
    # faster on CPU for wide chunks (README: Benchmark). Must divide batch_size.
    batch_blocks: int = 1


@dataclass
class SweepConf:
    seeds: int = 1  # seeds per grid point
    base_seed: int = 0
    # axis name -> list of values, or "geomspace(start, stop, num)" / "linspace(start, stop, num)"
    grid: Dict[str, Any] = field(default_factory=dict)
    out: str = "runs/${name}"
    chunk_size: int = 0  # most models per compiled chunk; 0 chooses from memory and workers
    executor: str = "ray"  # ray: Ray tasks (local cluster or ray.address) | local: in this process


@dataclass
class RayConf:
    # null: RAY_ADDRESS if set, else start a local Ray on this machine (stopped at the end).
    # "auto" or "HOST:PORT": join that running cluster and leave it running.
    address: Optional[str] = None
    num_cpus: Optional[int] = None  # CPUs of a local Ray (default: every core)
    num_gpus: Optional[int] = None  # GPUs of a local Ray (default: what Ray detects)
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0  # fractions share one GPU between tasks
    max_retries: int = 3  # retries of a chunk whose worker process died
    auth_mode: str = "disabled"  # RAY_AUTH_MODE of a local Ray, unless the environment sets it
    # CPU tasks pin their worker process to cpus_per_task cores no other toymodels worker on that
    # machine holds (one JAX process per core; README: Pinning). false: the OS schedules them.
    pin_cpus: bool = True


@dataclass
class WandbConf:
    # offline: runs written under <dir>/wandb (no account; upload later with `wandb sync`) |
    # online: logged live (your wandb credentials) | disabled: no tracking. conf/wandb/offline.yaml
    # sets ${oc.env:WANDB_MODE,offline}: WANDB_MODE when set, else offline; wandb.mode=... wins.
    mode: str = "offline"
    project: str = "toymodels"
    entity: Optional[str] = None  # null: wandb's default (WANDB_ENTITY or your default entity)
    dir: Optional[str] = None  # runs go to <dir>/wandb/; null: sweep.out
    per_model: bool = False  # one run per model instead of one per chunk (small sweeps only)
    per_model_limit: int = 100  # most models a per_model sweep may have
    log_curves: bool = True  # per-model training curves from the stored snapshots


@dataclass
class Config:
    name: str = "sweep"
    # Python files that register your own model or data kinds (README, "Your own kind").
    plugins: List[str] = field(default_factory=list)
    model: ModelConf = field(default_factory=ModelConf)
    data: DataConf = field(default_factory=DataConf)
    train: TrainConf = field(default_factory=TrainConf)
    sweep: SweepConf = field(default_factory=SweepConf)
    ray: RayConf = field(default_factory=RayConf)
    wandb: WandbConf = field(default_factory=WandbConf)


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="toymodels_schema", node=Config)


def to_config(cfg) -> Config:
    """DictConfig (already type-checked by OmegaConf against the schema) -> validated Config."""
    from omegaconf import OmegaConf

    from toymodels.plugins import load_plugins

    config = OmegaConf.to_object(cfg)
    if not isinstance(config, Config):
        raise TypeError("the configuration was not composed on the toymodels_schema structured config")
    load_plugins(config.plugins)
    validate(config)
    return config


def _choice(key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(key, f"{value!r} is not allowed; choose one of {', '.join(allowed)}")


def _positive_int(key: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(key, f"must be an integer >= {minimum}, got {value!r}")


def _density(key: str, value, zero: bool = False) -> None:
    """A density in (0, 1], or [0, 1] where the data kind says 0 is meaningful (``zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0) or (
            value == 0 and not zero):
        interval = "[0, 1] (this data kind allows 0)" if zero else "(0, 1]"
        raise ConfigError(key, f"a density p = 1 - S must be a number in {interval}, got {value!r}")


def _zero_density(config: Config) -> bool:
    kind = DATA.find(config.data.kind)
    return bool(kind and kind.zero_density)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _capacity_feature(key: str, value, n_features: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not (-1 <= value < n_features):
        raise ConfigError(key, f"must be a feature index in 0..{n_features - 1}, or -1 for none, got {value!r}")


def _n_features_values(config: Config) -> list:
    grid = config.sweep.grid
    return expand_axis("n_features", grid["n_features"]) if "n_features" in grid else [config.model.n_features]


def _model_values(config: Config) -> list:
    grid = config.sweep.grid
    return expand_axis("model", grid["model"]) if "model" in grid else [config.model.kind]


def _validate_data_kind(config: Config) -> None:
    d = config.data
    _choice("data.kind", d.kind, DATA.names())
    _choice("data.streams", d.streams, STREAMS)
    if not (_number(d.rest_scale) and d.rest_scale > 0):
        raise ConfigError("data.rest_scale", f"must be a number > 0, got {d.rest_scale!r}")


def _validate_penalties(config: Config) -> None:
    t = config.train
    if not (_number(t.l1_hidden) and t.l1_hidden >= 0):
        raise ConfigError("train.l1_hidden", f"must be a number >= 0, got {t.l1_hidden!r}")
    _capacity_feature("train.capacity_feature", t.capacity_feature, config.model.n_features)
    if not (_number(t.capacity_target) and 0 <= t.capacity_target <= 1):
        raise ConfigError("train.capacity_target", f"a capacity target must be a number in [0, 1], got {t.capacity_target!r}")
    if not (_number(t.capacity_penalty) and t.capacity_penalty >= 0):
        raise ConfigError("train.capacity_penalty", f"must be a number >= 0, got {t.capacity_penalty!r}")
    if not (_number(t.mono_penalty) and t.mono_penalty >= 0):
        raise ConfigError("train.mono_penalty", f"must be a number >= 0, got {t.mono_penalty!r}")
    _mono_start("train.mono_start", t.mono_start, config)


def _density_ratio(key: str, value, config: Config) -> None:
    """The last feature's density as a multiple of its configured one: > 0, and at most 1 in all."""
    if not (_number(value) and value > 0):
        raise ConfigError(key, f"must be a number > 0, got {value!r}")
    if "density_last" in config.sweep.grid:
        raise ConfigError(key, "sets the last feature's density as density_last does: sweep one of them")
    d = config.data.density
    grid = config.sweep.grid
    last = expand_axis("density", grid["density"]) if "density" in grid else [d[-1] if isinstance(d, (list, tuple)) else d]
    for p in last:
        if isinstance(p, (int, float)) and value * p > 1:
            raise ConfigError(key, f"{value} × density {p} is above 1")


def _mono_start(key: str, value, config: Config) -> None:
    """A step from which the monosemanticity term is on: below every trained number of steps."""
    _positive_int(key, value, minimum=0)
    grid = config.sweep.grid
    for steps in (expand_axis("steps", grid["steps"]) if "steps" in grid else [config.train.steps]):
        if isinstance(steps, int) and value >= steps:
            raise ConfigError(key, f"the term would never be on: must be below train.steps={steps}, got {value}")


def is_finite(config: Config) -> bool:
    """Whether the config trains on finite datasets (data.n_train > 0 or an n_train axis)."""
    return config.data.n_train > 0 or "n_train" in config.sweep.grid


def _validate_finite(config: Config) -> None:
    d, t, grid = config.data, config.train, config.sweep.grid
    for key in ("n_train", "dataset_seed", "repeats", "n_repeated", "max_active"):
        _positive_int(f"data.{key}", getattr(d, key), minimum=0)
    _positive_int("train.piece_size", t.piece_size)
    finite_only = [f"sweep.grid.{a}" for a in ("dataset_seed", "repeats") if a in grid] + (["data.repeats"] if d.repeats else [])
    if not is_finite(config):
        if finite_only:
            raise ConfigError(finite_only[0], "only applies to finite data: set data.n_train (T > 0) or an n_train axis")
        return
    from toymodels.finite import MODELS as FINITE_MODELS

    if d.kind != "sparse":
        raise ConfigError("data.kind", f"finite datasets are drawn from sparse data; got {d.kind!r}")
    if d.streams != "model":
        raise ConfigError("data.streams", "finite datasets are drawn per data.dataset_seed, not from streams; "
                          f"leave data.streams=model, got {d.streams!r}")
    kinds = expand_axis("model", grid["model"]) if "model" in grid else [config.model.kind]
    for kind in kinds:
        _choice("model.kind", kind, FINITE_MODELS)
    if isinstance(d.density, (list, tuple)) or "density_last" in grid or "density_last_ratio" in grid:
        raise ConfigError("data.density", "finite datasets use one density for every feature")
    if t.schedule != "warmup_cosine":
        raise ConfigError("train.schedule", "finite data trains with Henighan et al.'s schedule: set "
                          f"train.schedule=warmup_cosine (linear warm-up, cosine to 0), got {t.schedule!r}")
    if t.l1_hidden > 0 or "l1_hidden" in grid or t.capacity_feature >= 0 or "capacity_feature" in grid:
        raise ConfigError("train.l1_hidden", "the optional loss terms are not available with finite data")
    if t.mono_penalty > 0 or "mono_penalty" in grid:
        raise ConfigError("train.mono_penalty", "the optional loss terms are not available with finite data")
    copies = max(d.repeats, 1) * d.n_repeated
    for T in (expand_axis("n_train", grid["n_train"]) if "n_train" in grid else [d.n_train]):
        if isinstance(T, int) and copies > T:
            raise ConfigError("data.n_repeated", f"{d.n_repeated} points × {max(d.repeats, 1)} copies exceed "
                              f"n_train={T}")


_GENERATOR = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$")


def expand_axis(name: str, spec) -> list:
    """A grid axis as its list of values: a list, or "geomspace(start, stop, num)" /
    "linspace(start, stop, num)" (endpoints included)."""
    key = f"sweep.grid.{name}"
    if isinstance(spec, (list, tuple)):
        values = list(spec)
    elif isinstance(spec, str) and (match := _GENERATOR.match(spec)):
        gen = match.group(1)
        _choice(key, gen, GRID_GENERATORS)
        try:
            start, stop, num = (float(a) for a in match.group(2).split(","))
        except ValueError:
            raise ConfigError(key, f"{gen} takes (start, stop, num), got {spec!r}") from None
        if num != int(num) or num < 1:
            raise ConfigError(key, f"{gen}'s num must be a whole number >= 1, got {spec!r}")
        num = int(num)
        if gen == "geomspace":
            if start <= 0 or stop <= 0:
                raise ConfigError(key, f"geomspace needs positive start and stop, got {spec!r}")
            values = [start * (stop / start) ** (i / max(num - 1, 1)) for i in range(num)]
        else:
            values = [start + (stop - start) * i / max(num - 1, 1) for i in range(num)]
        values = [float(f"{v:.12g}") for v in values]  # stable text for ids and column values
        if name in INTEGER_AXES:  # e.g. n_train = geomspace(3, 100000, 20): rounded, duplicates dropped
            values = list(dict.fromkeys(int(round(v)) for v in values))
    else:
        raise ConfigError(key, f"must be a list of values or 'geomspace|linspace(start, stop, num)', got {spec!r}")
    if not values:
        raise ConfigError(key, "must have at least one value")
    return values


def validate(config: Config) -> None:
    """Check every value before any compute; raise ConfigError naming the key."""
    m, d, t, s = config.model, config.data, config.train, config.sweep
    _choice("model.kind", m.kind, MODELS.names())
    _choice("model.init", m.init, INIT_KINDS)
    _positive_int("model.n_features", m.n_features)
    _positive_int("model.n_hidden", m.n_hidden)
    _positive_int("model.init_instances", m.init_instances)

    if isinstance(d.density, (list, tuple)):
        if len(d.density) != m.n_features:
            raise ConfigError("data.density", f"a per-feature list needs model.n_features={m.n_features} values, got {len(d.density)}")
        for i, p in enumerate(d.density):
            _density(f"data.density[{i}]", p, _zero_density(config))
    else:
        _density("data.density", d.density, _zero_density(config))
    _validate_data_kind(config)
    imp = d.importance
    _choice("data.importance.kind", imp.kind, IMPORTANCE_KINDS)
    if imp.kind == "geometric" and not imp.decay > 0:
        raise ConfigError("data.importance.decay", f"must be > 0, got {imp.decay!r}")
    if imp.kind == "logspace" and not imp.ratio > 0:
        raise ConfigError("data.importance.ratio", f"must be > 0, got {imp.ratio!r}")
    if imp.kind == "explicit":
        if len(imp.values) != m.n_features:
            raise ConfigError("data.importance.values", f"needs model.n_features={m.n_features} values, got {len(imp.values)}")
        if any(v < 0 for v in imp.values):
            raise ConfigError("data.importance.values", "importances must be >= 0")

    _positive_int("train.steps", t.steps)
    _positive_int("train.batch_size", t.batch_size)
    _positive_int("train.eval_samples", t.eval_samples)
    _positive_int("train.warmup_steps", t.warmup_steps, minimum=0)
    _positive_int("train.snapshot_every", t.snapshot_every, minimum=0)
    _choice("train.schedule", t.schedule, SCHEDULES)
    if not (t.lr > 0 and math.isfinite(t.lr)):
        raise ConfigError("train.lr", f"must be a positive number, got {t.lr!r}")
    if not t.weight_decay >= 0:
        raise ConfigError("train.weight_decay", f"must be >= 0, got {t.weight_decay!r}")
    if t.schedule == "warmup_cosine" and t.warmup_steps >= t.steps:
        raise ConfigError("train.warmup_steps", f"must be below train.steps={t.steps} for warmup_cosine")
    _validate_penalties(config)
    _validate_finite(config)
    _positive_int("train.batch_blocks", t.batch_blocks)
    sizes = expand_axis("batch_size", s.grid["batch_size"]) if "batch_size" in s.grid else [t.batch_size]
    for size in sizes:
        if isinstance(size, int) and size % t.batch_blocks:
            raise ConfigError("train.batch_blocks", f"must divide the batch size {size}, got {t.batch_blocks}")

    _positive_int("sweep.seeds", s.seeds)
    _positive_int("sweep.base_seed", s.base_seed, minimum=0)
    _positive_int("sweep.chunk_size", s.chunk_size, minimum=0)
    _choice("sweep.executor", s.executor, EXECUTORS)
    r = config.ray
    if r.num_cpus is not None:
        _positive_int("ray.num_cpus", r.num_cpus)
    if r.num_gpus is not None:
        _positive_int("ray.num_gpus", r.num_gpus, minimum=0)
    if not r.cpus_per_task > 0:
        raise ConfigError("ray.cpus_per_task", f"must be > 0, got {r.cpus_per_task!r}")
    if not r.gpus_per_task >= 0:
        raise ConfigError("ray.gpus_per_task", f"must be >= 0 (fractions share a GPU), got {r.gpus_per_task!r}")
    _positive_int("ray.max_retries", r.max_retries, minimum=0)
    _choice("ray.auth_mode", r.auth_mode, RAY_AUTH_MODES)
    if not s.out:
        raise ConfigError("sweep.out", "must name an output directory")
    w = config.wandb
    if w.mode not in WANDB_MODES:
        source = " (from the environment variable WANDB_MODE)" if os.environ.get("WANDB_MODE") == w.mode else ""
        raise ConfigError("wandb.mode", f"{w.mode!r}{source} is not allowed; choose one of {', '.join(WANDB_MODES)}")
    if not w.project or any(c in w.project for c in "/\\#?%:") or len(w.project) > 128:
        raise ConfigError("wandb.project", f"must be a name of 1-128 characters without / \\ # ? % :, got {w.project!r}")
    if w.entity is not None and not w.entity.strip():
        raise ConfigError("wandb.entity", "must be a non-empty name, or null for wandb's default")
    if w.dir is not None and not w.dir.strip():
        raise ConfigError("wandb.dir", "must name a directory, or null for sweep.out")
    _positive_int("wandb.per_model_limit", w.per_model_limit)
    from sweeps.kinds import check_kinds, option_axes

    options = option_axes(config) if all(k in MODELS for k in _model_values(config)) else ()
    for name, spec in s.grid.items():
        if name not in GRID_AXES + options:
            raise ConfigError(f"sweep.grid.{name}", f"unknown grid axis; allowed: {', '.join(GRID_AXES + options)}")
        values = expand_axis(name, spec)
        for i, v in enumerate(values):
            key = f"sweep.grid.{name}[{i}]"
            if name in ("density", "density_last"):
                _density(key, v, _zero_density(config))
            elif name == "model":
                _choice(key, v, MODELS.names())
            elif name in STATIC_AXES:
                _positive_int(key, v)
            elif name in ("importance_decay", "importance_last") and not (isinstance(v, (int, float)) and v > 0):
                raise ConfigError(key, f"must be a number > 0, got {v!r}")
            elif name == "lr" and not (isinstance(v, (int, float)) and v > 0):
                raise ConfigError(key, f"must be a number > 0, got {v!r}")
            elif name in ("weight_decay", "l1_hidden", "capacity_penalty", "mono_penalty") and not (_number(v) and v >= 0):
                raise ConfigError(key, f"must be a number >= 0, got {v!r}")
            elif name == "capacity_target" and not (_number(v) and 0 <= v <= 1):
                raise ConfigError(key, f"a capacity target must be a number in [0, 1], got {v!r}")
            elif name == "capacity_feature":
                _capacity_feature(key, v, m.n_features)
            elif name == "dataset_seed":
                _positive_int(key, v, minimum=0)
            elif name == "mono_start":
                _mono_start(key, v, config)
            elif name == "density_last_ratio":
                _density_ratio(key, v, config)
    if "importance_decay" in s.grid and imp.kind != "geometric":
        raise ConfigError("sweep.grid.importance_decay", f"needs data.importance.kind=geometric, got {imp.kind!r}")
    if "density" in s.grid and isinstance(d.density, (list, tuple)):
        raise ConfigError("sweep.grid.density", "sets every feature's density, so data.density must then be a "
                          "single number; drop the axis with ~sweep.grid.density to use per-feature densities")
    if "n_features" in s.grid and (isinstance(d.density, (list, tuple)) or imp.kind == "explicit"):
        raise ConfigError("sweep.grid.n_features", "cannot vary with per-feature data.density or explicit importances")
    check_kinds(config)
