"""Typed configuration: the Hydra structured-config schema and the grid axes' expansion.

Hydra composes ``conf/`` on top of the ``Config`` schema below (so an unknown key or a wrong type
is refused by OmegaConf, naming the key); ``to_config`` turns the result into these dataclasses
once, at the entry point, and ``sweeps.validation.validate`` checks values before any compute.
Nothing below the entry point sees a ``DictConfig``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from sweeps.resources import check_axis_length
from sweeps.sae.compat import hashed_sae, resume_hint  # noqa: F401 (the store's config hash)
from sweeps.sae.config import SaeConf
from sweeps.spd.config import SpdConf
from toymodels.registry import ConfigError

# The repository's conf/ (an editable install, as scripts/setup makes), or TOYMODELS_CONF.
CONF_DIR = Path(os.environ.get("TOYMODELS_CONF") or Path(__file__).resolve().parent.parent / "conf")

# Grid axes: per-model values (array leaves, one compile for all) and shape-setting values
# (static: models that differ in one never share a chunk). Each optional loss term's settings are
# per-model axes too (toymodels.terms; sweeps.jobs.terms).
PER_MODEL_AXES = (
    "density",
    "density_last",
    "density_last_ratio",
    "importance_decay",
    "importance_last",
    "lr",
    "weight_decay",
    "dataset_seed",
)
STREAMS = ("model", "seed")
STATIC_AXES = ("n_features", "n_hidden", "batch_size", "steps", "model", "n_train", "repeats")
GRID_AXES = PER_MODEL_AXES + STATIC_AXES
INTEGER_AXES = (
    "n_features",
    "n_hidden",
    "batch_size",
    "steps",
    "n_train",
    "repeats",
    "dataset_seed",
)
GRID_GENERATORS = ("geomspace", "linspace")
EXECUTORS = ("ray", "local")
RAY_AUTH_MODES = ("disabled", "token")
WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class ModelConf:
    kind: str = "relu"  # a kind of toymodels.models.MODELS (docs/kinds.md)
    n_features: int = 5  # n, features per model
    n_hidden: int = 2  # m, hidden dimensions
    init: str = "xavier"  # xavier (per model) | notebook (std depends on init_instances)
    init_instances: int = 10  # notebook init: the instances its Xavier std counts
    options: Dict[str, Any] = field(default_factory=dict)  # the kind's own static options


@dataclass
class ImportanceConf:
    # geometric: decay**i | logspace: ratio**-linspace(0,1,n) | explicit | target_only: (1, 0, ..., 0)
    kind: str = "geometric"
    decay: float = 1.0  # geometric: I_i = decay^i
    ratio: float = 100.0  # logspace: I_i = ratio^-linspace(0, 1, n)
    values: List[float] = field(default_factory=list)  # explicit: one importance per feature


@dataclass
class DataConf:
    kind: str = "sparse"  # a kind of toymodels.data.DATA (docs/kinds.md)
    # Feature density p = 1 - S: one number for every feature, or a list of n_features numbers.
    # Correlated and anticorrelated sets use their first member's density.
    density: Any = 1.0
    set_size: int = 2  # features per correlated / anticorrelated set (consecutive features)
    magnitude: str = (
        "uniform"  # kurtosis data: uniform | gaussian | sign (zero mean, unit variance)
    )
    rest_scale: float = 1.0  # multiplies every feature after the first (noise features: 0.1)
    # Random streams of the fresh batches: model (each model its own, like the notebook's
    # instances) | seed (one per seed index, shared by every grid point: common random numbers,
    # each model's data distributed exactly as with model; docs/sweeps.md, Random streams).
    streams: str = "model"
    # Finite data (Henighan et al. 2023): 0 draws a fresh batch every step; T > 0 trains full-batch
    # on T points drawn once from dataset_seed and rescaled to unit norm (toymodels.finite).
    n_train: int = 0
    dataset_seed: int = 0  # finite data: which training set (models of one seed share it)
    repeats: int = 0  # the first n_repeated points each appear this many times among the T
    n_repeated: int = 0  # finite data: how many points are repeated
    max_active: int = 0  # stored non-zeros per point; 0 chooses it from n, the density and T
    importance: ImportanceConf = field(default_factory=ImportanceConf)
    options: Dict[str, Any] = field(default_factory=dict)  # a user data kind's own options


@dataclass
class TrainConf:
    steps: int = 10_000  # optimiser steps per model
    batch_size: int = 1024  # fresh examples per step
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01  # AdamW's decoupled weight decay (torch's default; optax's is 1e-4)
    schedule: str = "constant"  # constant | linear | cosine | warmup_cosine
    warmup_steps: int = 0  # warmup_cosine: linear warm-up over this many steps
    b1: float = 0.9  # AdamW's β₁
    b2: float = 0.999  # AdamW's β₂
    eps: float = 1e-8  # AdamW's ε
    snapshot_every: int = 100  # steps between snapshots of loss, ‖W_i‖ and C_i (0: the last only)
    eval_samples: int = 65_536  # fresh points the final loss is measured on
    eval_seed: int = 0  # the one evaluation stream every model is ranked on
    l1_hidden: float = 0.0  # + l1_hidden · mean ‖h‖₁ of the hidden activations (0: off)
    # Hold feature capacity_feature's C near capacity_target by + capacity_penalty · (C − target)²
    # (-1: no feature held).
    capacity_feature: int = -1
    capacity_target: float = 1.0  # the capacity the held feature is pulled towards
    capacity_penalty: float = 0.0  # λ of the pull (0: off)
    # Buy monosemanticity: + mono_penalty · Σ_i C_i(1 − C_i) (0: off), on from step mono_start
    # (0: from scratch; s > 0: a fine-tune after s steps without it).
    mono_penalty: float = 0.0
    mono_start: int = 0  # the step mono_penalty switches on
    # The settings of the optional loss terms (toymodels.terms; none is in the stored loss) that have
    # no key above (a new term's, a plugin term's): name -> value, e.g. +train.terms.norm_penalty=0.1.
    terms: Dict[str, Any] = field(default_factory=dict)
    # Finite data: points per piece of the full-batch loss (bounds memory); 0: per device, 1,024 on
    # a CPU and 32,768 on a GPU (toymodels.finite_loss.DEFAULT_PIECE).
    piece_size: int = 0
    # Compute each batch in this many column blocks: same data, gradient equal up to rounding,
    # faster on CPU for wide chunks (docs/benchmark.md). Must divide batch_size.
    batch_blocks: int = 1


@dataclass
class SweepConf:
    seeds: int = 1  # seeds per grid point
    base_seed: int = 0  # every model's stream is fold_in(key(base_seed), uid)
    # axis name -> list of values, or "geomspace(start, stop, num)" / "linspace(start, stop, num)"
    grid: Dict[str, Any] = field(default_factory=dict)
    out: str = "runs/${name}"  # the store: resumable, one directory per sweep
    chunk_size: int = 0  # most models per compiled chunk; 0 chooses from memory and workers
    executor: str = "ray"  # ray: Ray tasks (local cluster or ray.address) | local: in this process
    # Devices one chunk's process spreads its models over (docs/devices.md): 0 every local device
    # of JAX's default platform (all GPUs or TPU chips of a host), 1 one device, N at most N.
    devices: int = 0
    # exact: each device runs the one-device program on its slices of the chunk, so the bits do
    # not depend on the device count | mesh: one program sharded over a jax.sharding mesh.
    sharding: str = "exact"


@dataclass
class RayConf:
    # null: RAY_ADDRESS if set, else start a local Ray on this machine (stopped at the end).
    # "auto" or "HOST:PORT": join that running cluster and leave it running.
    address: Optional[str] = None
    num_cpus: Optional[int] = None  # CPUs of a local Ray (default: every core)
    num_gpus: Optional[int] = None  # GPUs of a local Ray (default: what Ray detects)
    cpus_per_task: float = 1.0  # CPUs of one chunk task
    gpus_per_task: float = 0.0  # fractions share one GPU between tasks
    # TPU chips per task (1, 2, 4 or 8; a whole host's: 4 on v4/v5p, 8 on v5e/v6e): JAX gives one
    # process all the chips it sees, and a chunk's models are spread over them (docs/devices.md).
    tpus_per_task: float = (
        0.0  # a number, so that a fraction gets validation's message, not a type error
    )
    max_retries: int = 3  # retries of a chunk whose worker process died
    # A local Ray of the sweep's own listens on 127.0.0.1 only; token: it also needs this run's random
    # token (never written to disk). Decides for that Ray whatever RAY_AUTH_MODE says (which is
    # what a cluster joined with ray.address reads). docs/security.md
    auth_mode: str = "token"
    # CPU tasks pin their worker process to cpus_per_task cores no other toymodels worker on that
    # machine holds (one JAX process per core; docs/ray.md, Pinning). false: the OS schedules them.
    pin_cpus: bool = True


@dataclass
class WandbConf:
    # offline: runs written under <dir>/wandb (no account; upload later with `wandb sync`) |
    # online: logged live (your wandb credentials) | disabled: no tracking. conf/wandb/offline.yaml
    # sets ${oc.env:WANDB_MODE,offline}: WANDB_MODE when set, else offline; wandb.mode=... wins.
    mode: str = "offline"
    project: str = "toymodels"  # where runs go online
    entity: Optional[str] = None  # null: wandb's default (WANDB_ENTITY or your default entity)
    dir: Optional[str] = None  # runs go to <dir>/wandb/; null: sweep.out
    per_model: bool = False  # one run per model instead of one per chunk (small sweeps only)
    per_model_limit: int = 100  # most models a per_model sweep may have
    log_curves: bool = True  # per-model training curves from the stored snapshots


@dataclass
class Config:
    name: str = "sweep"  # the sweep's name: its default sweep.out, its wandb group
    # Python files that register your own model or data kinds (docs/kinds.md).
    plugins: List[str] = field(default_factory=list)
    # Set when the config is read, not by you: a digest of the plugin files' contents, so that a
    # kind whose code changed is a different sweep (its hash differs).
    plugins_digest: str = ""
    model: ModelConf = field(default_factory=ModelConf)
    data: DataConf = field(default_factory=DataConf)
    train: TrainConf = field(default_factory=TrainConf)
    sweep: SweepConf = field(default_factory=SweepConf)
    ray: RayConf = field(default_factory=RayConf)
    wandb: WandbConf = field(default_factory=WandbConf)
    # An SAE sweep (sweeps.sae.config; conf/sae/): its grid is over SAEs, not toy models. null: none.
    sae: Optional[SaeConf] = None
    # An SPD sweep (sweeps.spd.config; conf/spd/): decompositions of a stored sweep's toy models. null: none.
    spd: Optional[SpdConf] = None


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="toymodels_schema", node=Config)


def to_config(cfg) -> Config:
    """DictConfig (already type-checked by OmegaConf against the schema) -> validated Config."""
    from omegaconf import OmegaConf

    from sweeps.validation import validate
    from toymodels.plugins import load_plugins, source_digest

    config = OmegaConf.to_object(cfg)
    if not isinstance(config, Config):
        raise TypeError(
            "the configuration was not composed on the toymodels_schema structured config"
        )
    load_plugins(config.plugins)
    config.plugins_digest = source_digest(config.plugins) if config.plugins else ""
    validate(config)
    return config


def is_finite(config: Config) -> bool:
    """Whether the config trains on finite datasets (data.n_train > 0 or an n_train axis)."""
    return config.data.n_train > 0 or "n_train" in config.sweep.grid


def _integer_term_axes() -> set[str]:
    from toymodels.terms import TERMS

    return {p.name for term in TERMS for p in term.params if p.integer}


_GENERATOR = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$")
_GENERATOR_OVERRIDE = re.compile(
    r"^(?P<key>[+~]*sweep\.grid\.\w+)=(?P<value>\s*(?:geomspace|linspace)\s*\([^'\"]*\))\s*$"
)


def quote_grid_generators(overrides: list[str]) -> list[str]:
    """``sweep.grid.AXIS=geomspace(a, b, n)`` (and linspace) as Hydra's override grammar takes it:
    the generator quoted into a string. Unquoted, Hydra parses it as a call of one of its own
    functions and fails with "Unknown function 'geomspace'". Every other override is unchanged."""
    out = []
    for item in overrides:
        match = _GENERATOR_OVERRIDE.match(item)
        out.append(f'{match["key"]}="{match["value"].strip()}"' if match else item)
    return out


def expand_axis(name: str, spec) -> list:
    """A grid axis as its list of values: a list, or "geomspace(start, stop, num)" /
    "linspace(start, stop, num)" (endpoints included)."""
    key = f"sweep.grid.{name}"
    if isinstance(spec, (list, tuple)):
        values = list(spec)
    elif isinstance(spec, str) and (match := _GENERATOR.match(spec)):
        gen = match.group(1)
        if gen not in GRID_GENERATORS:
            raise ConfigError(
                key, f"{gen!r} is not allowed; choose one of {', '.join(GRID_GENERATORS)}"
            )
        try:
            start, stop, num = (float(a) for a in match.group(2).split(","))
        except ValueError:
            raise ConfigError(key, f"{gen} takes (start, stop, num), got {spec!r}") from None
        if not all(math.isfinite(v) for v in (start, stop, num)):
            raise ConfigError(key, f"{gen} takes finite numbers, got {spec!r}")
        if num != int(num) or num < 1:
            raise ConfigError(key, f"{gen}'s num must be a whole number >= 1, got {spec!r}")
        num = int(num)
        check_axis_length(key, num)  # before building the values: a runaway num is refused at once
        if gen == "geomspace":
            if start <= 0 or stop <= 0:
                raise ConfigError(key, f"geomspace needs positive start and stop, got {spec!r}")
            values = [start * (stop / start) ** (i / max(num - 1, 1)) for i in range(num)]
        else:
            values = [start + (stop - start) * i / max(num - 1, 1) for i in range(num)]
        values = [float(f"{v:.12g}") for v in values]  # stable text for ids and column values
        if (
            name in INTEGER_AXES or name in _integer_term_axes()
        ):  # n_train = geomspace(3, 100000, 20): rounded,
            # duplicates dropped
            values = list(
                dict.fromkeys(round(v) for v in values)
            )  # v: a float, so round gives an int
    else:
        raise ConfigError(
            key, f"must be a list of values or 'geomspace|linspace(start, stop, num)', got {spec!r}"
        )
    if not values:
        raise ConfigError(key, "must have at least one value")
    return values
