"""The ``sae:`` section of a config: its presence makes a sweep train sparse autoencoders (issue 16
item 1), and its checks before any compute.

An SAE sweep is an ordinary sweep whose grid axes are SAE hyperparameters and, for synthetic
worlds, world parameters (``sae_axes``); its points are SAEs instead of toy models. The source of
activations is a synthetic world (``sae.source=world``, ``toymodels.sae.build``) or the toy models
of a stored sweep (``sae.source=toy``, each model's own data and forward pass, ``toymodels.sae.toy``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from toymodels.registry import ConfigError
from toymodels.sae.hyperparams import (
    AUX_COEFFICIENT,
    BANDWIDTH,
    CODES,
    DEAD_WINDOW,
    DECODER,
    GRAD_CLIP,
    INIT_NORM,
    INIT_THRESHOLD,
    L1,
    HyperParam,
    K,
)

SOURCES = ("world", "toy")
WORLD_KINDS = ("independent", "composition", "exactly", "synthbench_small", "saelens")
DIRECTIONS = ("identity", "random", "pairs")
MAGNITUDES = ("uniform", "fixed")
# sae.k (or a value of sweep.grid.k) that makes each SAE's k its world's sae.world.active: one SAE
# per l of an `exactly` world with k = l, without a k axis whose diagonal only is wanted.
FOLLOW_ACTIVE = "active"

# Grid axes of an SAE sweep besides the kinds' own hyperparameters (``SaeKind.hparams``: l1, k,
# bandwidth, ... and a user kind's, each read only by the kinds that declare it). Per SAE: array
# leaves of one compiled program. Static: SAEs that differ in one never share a chunk. World axes
# (per SAE unless static) change the world's arrays.
TRAIN_PER_AXES = ("lr", "ortho")
SAE_STATIC_AXES = ("kind", "dict_size", "steps", "batch_size")
WORLD_PER_AXES = ("density", "magnitude", "cosine", "together", "world_seed")
WORLD_STATIC_AXES = ("n_features", "n_hidden", "directions", "active")
# The built-in kinds' hyperparameters that are keys of the sae: section itself (sae.l1, ...);
# any other kind hyperparameter is sae.options.<name>.
SCHEMA_HPARAMS = {
    h.name: h
    for h in (
        L1,
        K,
        DECODER,
        BANDWIDTH,
        INIT_THRESHOLD,
        GRAD_CLIP,
        AUX_COEFFICIENT,
        DEAD_WINDOW,
        INIT_NORM,
        CODES,
    )
}


@dataclass
class SaeWorldConf:
    kind: str = "independent"  # independent | composition | exactly | synthbench_small | saelens
    n_features: int = 16
    n_hidden: int = 8
    density: float = 0.05  # independent: each feature fires with probability p
    directions: str = "random"  # identity | random | pairs (pairs at cosine ``cosine``)
    cosine: float = 0.0
    magnitude: str = "uniform"  # uniform: U[0, 1] | fixed: 1
    together: float = 0.1  # composition: f1 and f2 together with probability c
    alone: float = 0.2  # composition: f1 alone, and f2 alone, each with this probability
    active: int = 2  # exactly: features active per input
    world_seed: int = 0  # the world's directions (and synthbench's whole recipe)
    # saelens: a SAELens SyntheticModelConfig (a mapping, or a .json/.yaml file holding one) or a
    # saved SAELens synthetic model directory (sweeps.sae.saelens; docs/saes/interop.md)
    saelens: Any = None


@dataclass
class SaeToyConf:
    sweep: str = ""  # a finished toy-model sweep's sweep.out
    models: str = (
        ""  # a filter selecting its models ("" = all), e.g. "seed == 0" (sweeps.store.query)
    )


@dataclass
class SaeConf:
    source: str = "world"  # world | toy
    world: SaeWorldConf = field(default_factory=SaeWorldConf)
    toy: SaeToyConf = field(default_factory=SaeToyConf)
    kind: str = "plain"  # a kind of toymodels.sae.SAE_KINDS
    dict_size: Any = 32  # an integer, or a multiple of the source's features: "n", "2n"
    # the built-in kinds' hyperparameters (toymodels.sae.hyperparams: defaults and meanings)
    l1: float = float(L1.default)  # λ of plain, gated, rescaled; the L0 coefficient of jumprelu
    k: Any = (
        K.default
    )  # k of topk, batchtopk, matryoshka; "active": the exactly world's l (k follows l)
    # plain's and gated's decoder: free (SAELens: free-norm columns from 0.1, norm-weighted
    # penalty) or unit (unit-norm columns, λ‖f‖₁: before issue 21)
    decoder: str = str(DECODER.default)
    bandwidth: float = float(BANDWIDTH.default)  # jumprelu's ε
    init_threshold: float = float(INIT_THRESHOLD.default)  # jumprelu's θ₀
    # plain, gated, jumprelu: each SAE's gradient clipped to this global norm (0: not)
    grad_clip: float = float(GRAD_CLIP.default)
    aux_coefficient: float = float(
        AUX_COEFFICIENT.default
    )  # AuxK's α (topk, batchtopk, matryoshka; 0: off)
    dead_window: int = int(DEAD_WINDOW.default)  # AuxK: dead after this many steps without firing
    init_norm: float = float(
        INIT_NORM.default
    )  # matryoshka: initial decoder (and tied encoder) norm
    # batchtopk's and matryoshka's codes: scaled (SAELens: pre·‖v_j‖, ranked and thresholded as
    # such) or unscaled (pre: before issue 21's scaled default)
    codes: str = str(CODES.default)
    options: dict[str, Any] = field(
        default_factory=dict
    )  # other kinds' own hyperparameters (a user's kind)
    lr: float = 3e-3
    ortho: float = 0.0  # decoder orthogonality λ_o (0: off)
    resample_every: int = 0  # resample latents dead over this many steps (0: never)
    # encode W_enc h − W_enc b_dec (the same function, faster; false: W_enc (h − b_dec), the bits
    # of stores written before the key)
    fold_b_dec: bool = True
    steps: int = 3000
    batch_size: int = 1024
    eval_batch: int = 8192


def _number(
    key: str,
    value,
    low: float,
    integer: bool = False,
    low_open: bool = False,
    high: float | None = None,
):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or isinstance(value, int))
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        what = "an integer" if integer else "a finite number"
        bound = f"{'>' if low_open else '>='} {low:g}" + (
            f" and <= {high:g}" if high is not None else ""
        )
        raise ConfigError(key, f"must be {what} {bound}, got {value!r}")


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(key, f"{value!r} is not allowed; choose one of {', '.join(allowed)}")


def check_dict_size(key: str, value) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return
    if isinstance(value, str) and re.fullmatch(r"[1-9]\d*n|n", value):
        return
    raise ConfigError(
        key,
        "must be an integer >= 1 or a multiple of the source's features (n, 2n, ...), "
        f"got {value!r}",
    )


def check_k(key: str, value) -> None:
    if value == FOLLOW_ACTIVE:
        return
    _check_hparam(K, key, value)


def _check_hparam(hparam, key: str, value) -> None:
    problem = hparam.problem(value)
    if problem:
        raise ConfigError(key, problem)


def resolve_dict_size(value, n_features: int) -> int:
    if isinstance(value, str):
        return int(value[:-1] or 1) * n_features
    return int(value)


def _kinds():
    from toymodels.sae import SAE_KINDS

    return SAE_KINDS


def kind_hparams() -> dict:
    """Every registered SAE kind's hyperparameters by name (kinds that share a name share it)."""
    found: dict[str, HyperParam] = {}
    for kind in _kinds():
        for h in kind.hparams:
            found.setdefault(h.name, h)
    return found


def reads(kind, axis: str) -> bool:
    """Whether SAEs of ``kind`` read the grid axis ``axis``: a training, static or world axis, or
    one of the kind's own hyperparameters."""
    return axis not in kind_hparams() or kind.hparam(axis) is not None


def rule(name: str):
    """The check of a key under sae. (or a grid axis), by name."""
    if name == "k":
        return check_k
    if name in RULES:
        return RULES[name]
    hparam = kind_hparams().get(name)
    if hparam is not None:
        return lambda key, v: _check_hparam(hparam, key, v)
    return WORLD_RULES.get(name)


# key (under sae., or a grid axis) -> its check; world keys under sae.world; the kinds' own
# hyperparameters by their declarations (``rule``).
RULES = {
    "kind": lambda key, v: _one_of(key, v, tuple(_kinds().names())),
    "dict_size": check_dict_size,
    "lr": lambda key, v: _number(key, v, 0, low_open=True),
    "ortho": lambda key, v: _number(key, v, 0),
    "resample_every": lambda key, v: _number(key, v, 0, integer=True),
    "steps": lambda key, v: _number(key, v, 1, integer=True),
    "batch_size": lambda key, v: _number(key, v, 1, integer=True),
    "eval_batch": lambda key, v: _number(key, v, 1, integer=True),
}
WORLD_RULES = {
    "kind": lambda key, v: _one_of(key, v, WORLD_KINDS),
    "n_features": lambda key, v: _number(key, v, 1, integer=True),
    "n_hidden": lambda key, v: _number(key, v, 1, integer=True),
    "density": lambda key, v: _number(key, v, 0, low_open=True, high=1),
    "directions": lambda key, v: _one_of(key, v, DIRECTIONS),
    "cosine": lambda key, v: _number(key, v, -1, high=1),
    "magnitude": lambda key, v: _one_of(key, v, MAGNITUDES),
    "together": lambda key, v: _number(key, v, 0, high=1),
    "alone": lambda key, v: _number(key, v, 0, high=0.5),
    "active": lambda key, v: _number(key, v, 1, integer=True),
    "world_seed": lambda key, v: _number(key, v, 0, integer=True),
}


def sae_values(config, axis: str) -> list:
    """The values an SAE sweep takes on ``axis``: its grid axis, else the config's one value (a
    kind's hyperparameter: ``sae.<name>``, else ``sae.options.<name>``, else its declared default)."""
    from sweeps.config import expand_axis

    if axis in config.sweep.grid:
        return expand_axis(axis, config.sweep.grid[axis])
    if axis in WORLD_RULES and axis not in RULES and axis != "k" and axis not in kind_hparams():
        return [getattr(config.sae.world, axis)]
    if axis in SCHEMA_HPARAMS or axis in RULES:
        return [getattr(config.sae, axis)]
    if axis in config.sae.options:
        return [config.sae.options[axis]]
    return [kind_hparams()[axis].default]


def sae_axes(config) -> tuple:
    """Every axis an SAE sweep may have: its training, static and (on worlds) world axes, and every
    registered kind's hyperparameters."""
    world = WORLD_PER_AXES + WORLD_STATIC_AXES if config.sae.source == "world" else ()
    return tuple(dict.fromkeys(TRAIN_PER_AXES + SAE_STATIC_AXES + tuple(kind_hparams()) + world))


def row_axes(config) -> list[str]:
    """The grid axes every SAE row has a column for: a kind's own hyperparameter, swept as an axis,
    is a column of that kind's rows only."""
    own = kind_hparams()
    return [axis for axis in config.sweep.grid if axis not in own]


def _check_grid(config) -> None:
    from sweeps.config import expand_axis

    allowed = sae_axes(config)
    for name, spec in config.sweep.grid.items():
        key = f"sweep.grid.{name}"
        if name not in allowed:
            raise ConfigError(
                key,
                f"unknown axis of an SAE sweep (sae.source={config.sae.source}); allowed: "
                f"{', '.join(allowed)}",
            )
        values = expand_axis(name, spec)
        check = rule(name)
        for i, value in enumerate(values):
            check(f"{key}[{i}]", value)
            if value in values[:i]:
                raise ConfigError(
                    key,
                    f"the value {value!r} is listed twice; list each value once "
                    "(repeats of one setting are sweep.seeds)",
                )


def _check_options(config) -> None:
    """``sae.options``: hyperparameters of registered kinds that have no sae. key of their own."""
    declared = kind_hparams()
    for name, value in config.sae.options.items():
        key = f"sae.options.{name}"
        if name in SCHEMA_HPARAMS:
            raise ConfigError(key, f"{name} is a key of its own: set sae.{name}")
        if name not in declared:
            others = [n for n in declared if n not in SCHEMA_HPARAMS]
            raise ConfigError(
                key,
                f"no registered SAE kind has a hyperparameter {name!r}; those set here: "
                f"{', '.join(others) or 'none (the built-in kinds use sae.<name>)'}",
            )
        rule(name)(key, value)


def _check_world(config) -> None:
    w = config.sae.world
    for n in sae_values(config, "n_features"):
        for m in sae_values(config, "n_hidden"):
            if w.kind == "independent" and "identity" in sae_values(config, "directions") and n > m:
                raise ConfigError(
                    "sae.world.directions",
                    f"identity directions need n_features <= n_hidden, got {n} > {m}",
                )
            if "pairs" in sae_values(config, "directions") and n % 2:
                raise ConfigError(
                    "sae.world.n_features",
                    f"pairs directions need an even number of features, got {n}",
                )
            if w.kind == "exactly" and max(sae_values(config, "active")) > n:
                raise ConfigError(
                    "sae.world.active",
                    f"exactly this many active features needs at most "
                    f"n_features={n}, got {max(sae_values(config, 'active'))}",
                )
    if w.kind == "composition" and 2 * w.alone + max(sae_values(config, "together")) > 1:
        raise ConfigError(
            "sae.world.together", f"2·alone + together must be <= 1 (alone={w.alone})"
        )


def _check_saelens(config) -> None:
    """A SAELens world: its own config or directory fixes everything, so no world axis applies."""
    from sweeps.sae import saelens

    world_axes = [a for a in config.sweep.grid if a in WORLD_PER_AXES + WORLD_STATIC_AXES]
    if world_axes:
        raise ConfigError(
            f"sweep.grid.{world_axes[0]}",
            "a SAELens world (sae.world.kind=saelens) is fixed by "
            "sae.world.saelens; world axes do not apply to it",
        )
    if config.sae.world.saelens is None:
        raise ConfigError(
            "sae.world.saelens",
            "must give the SAELens world: a SyntheticModelConfig mapping, a "
            ".json/.yaml file holding one, or a saved SAELens synthetic model directory",
        )
    saelens.check(config.sae.world.saelens)


def _check_toy(config) -> None:
    """The toy sweep's directory is read when planning (``sweeps.sae.toy``), still before any compute."""
    if not config.sae.toy.sweep.strip():
        raise ConfigError(
            "sae.toy.sweep",
            "must name a finished toy-model sweep's sweep.out (e.g. runs/tms_intro)",
        )


def k_values(config) -> list[int]:
    """Every k the sweep's SAEs take, ``active`` read as each of its worlds' sae.world.active."""
    values = sae_values(config, "k")
    follows = sae_values(config, "active") if FOLLOW_ACTIVE in values else []
    return [v for v in values if v != FOLLOW_ACTIVE] + list(follows)


def _check_follow_active(config) -> None:
    if FOLLOW_ACTIVE not in sae_values(config, "k"):
        return
    if config.sae.source != "world" or config.sae.world.kind != "exactly":
        raise ConfigError(
            "sweep.grid.k" if "k" in config.sweep.grid else "sae.k",
            f"k={FOLLOW_ACTIVE} follows an exactly world's active features; it needs sae.source=world "
            f"and sae.world.kind=exactly, got {config.sae.source}, {config.sae.world.kind}",
        )


def _check_top_k(config) -> None:
    kinds = _kinds()
    top_k = [k for k in sae_values(config, "kind") if kinds.get(k).top_k]
    fixed = [d for d in sae_values(config, "dict_size") if isinstance(d, int)]
    if top_k and fixed and max(k_values(config)) > min(fixed):
        raise ConfigError(
            "sweep.grid.k" if "k" in config.sweep.grid else "sae.k",
            f"k={max(k_values(config))} exceeds the dictionary size {min(fixed)} "
            f"of the top-k kind {top_k[0]!r}",
        )


def validate_sae(config) -> None:
    """Every ``sae.*`` value and SAE grid axis, before any compute; a ConfigError names the key."""
    s = config.sae
    _one_of("sae.source", s.source, SOURCES)
    for name in (*RULES, *SCHEMA_HPARAMS):
        rule(name)(f"sae.{name}", getattr(s, name))
    for name, check in WORLD_RULES.items():
        check(f"sae.world.{name}", getattr(s.world, name))
    _check_options(config)
    _check_grid(config)
    if s.source == "world" and s.world.kind == "saelens":
        _check_saelens(config)
    elif s.source == "world":
        _check_world(config)
    else:
        _check_toy(config)
    _check_follow_active(config)
    _check_top_k(config)
