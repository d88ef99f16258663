"""The ``spd:`` section of a config: its presence makes a sweep decompose a stored toy sweep's models
with SPD (``toymodels.spd``; docs/spd.md), and its checks before any compute.

Its grid axes are SPD settings: per decomposition (array leaves of one compiled program: the
learning rate and the loss coefficients) or static (decompositions that differ in one never share
a chunk: C, steps, batch, the identity layer). ``sweep.seeds`` is the number of decomposition
seeds of every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toymodels.registry import ConfigError

SOURCES = ("toy",)
SCHEDULES = ("cosine", "constant")
TIED_UPDATES = ("separate", "sum")
# Grid axes of an SPD sweep (their values checked by RULES). Per decomposition: SpdHParams leaves.
SPD_PER_AXES = ("lr", "faithfulness", "recon", "layerwise", "minimality", "p")
SPD_STATIC_AXES = ("C", "steps", "batch_size", "identity")
SPD_AXES = SPD_PER_AXES + SPD_STATIC_AXES


@dataclass
class SpdToyConf:
    sweep: str = ""  # a finished toy-model sweep's sweep.out
    models: str = ""  # a pandas query selecting its models ("" = all), e.g. "seed == 0"


@dataclass
class SpdConf:
    """Defaults: the paper's TMS 5→2 settings (``toymodels.spd.PRESETS['tms_5_2']``)."""

    source: str = "toy"  # toy: the models of a stored sweep
    toy: SpdToyConf = field(default_factory=SpdToyConf)
    identity: bool = False  # relu (TMS) models: decompose TMS+ID, a fixed identity between W and Wᵀ
    C: int = 20  # subcomponents per decomposed matrix
    gate_hidden: int = 16  # GELU units of each causal-importance MLP
    steps: int = 40_000
    batch_size: int = 4096
    schedule: str = "cosine"  # cosine (the reference's quarter period) | constant
    mask_samples: int = 1
    tied_updates: str = "separate"  # separate (the reference's) | sum
    batch_blocks: int = 1  # compute each step's batch in this many blocks (memory; same gradient)
    approximate_gelu: bool = False
    eval_batch: int = 4096
    lr: float = 1e-3
    faithfulness: float = 1.0  # β_F
    recon: float = 1.0  # β_1
    layerwise: float = 1.0  # β_2 (0: the layerwise loss is still computed, weighted 0)
    minimality: float = 3e-3  # β_3
    p: float = 1.0  # the minimality loss's exponent


def _number(key: str, value, low: float, integer: bool = False, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or value < low or (low_open and value == low):
        kind = "an integer" if integer else "a number"
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise ConfigError(key, f"must be {kind} {bound}, got {value!r}")


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(key, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _flag(key: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")


RULES = {
    "C": lambda key, v: _number(key, v, 1, integer=True),
    "gate_hidden": lambda key, v: _number(key, v, 1, integer=True),
    "steps": lambda key, v: _number(key, v, 1, integer=True),
    "batch_size": lambda key, v: _number(key, v, 1, integer=True),
    "mask_samples": lambda key, v: _number(key, v, 1, integer=True),
    "batch_blocks": lambda key, v: _number(key, v, 1, integer=True),
    "eval_batch": lambda key, v: _number(key, v, 1, integer=True),
    "schedule": lambda key, v: _one_of(key, v, SCHEDULES),
    "tied_updates": lambda key, v: _one_of(key, v, TIED_UPDATES),
    "identity": _flag,
    "approximate_gelu": _flag,
    "lr": lambda key, v: _number(key, v, 0, low_open=True),
    "faithfulness": lambda key, v: _number(key, v, 0),
    "recon": lambda key, v: _number(key, v, 0),
    "layerwise": lambda key, v: _number(key, v, 0),
    "minimality": lambda key, v: _number(key, v, 0),
    "p": lambda key, v: _number(key, v, 0, low_open=True),
}


def spd_values(config, axis: str) -> list:
    """The values an SPD sweep takes on ``axis``: its grid axis, else the config's one value."""
    from sweeps.config import expand_axis

    if axis in config.sweep.grid:
        return expand_axis(axis, config.sweep.grid[axis])
    return [getattr(config.spd, axis)]


def _check_grid(config) -> None:
    from sweeps.config import expand_axis

    for name, spec in config.sweep.grid.items():
        key = f"sweep.grid.{name}"
        if name not in SPD_AXES:
            raise ConfigError(
                key,
                f"unknown axis of an SPD sweep; allowed: {', '.join(SPD_AXES)} (drop a toy "
                f"experiment's axes with '~sweep.grid.{name}')",
            )
        values = expand_axis(name, spec)
        for i, value in enumerate(values):
            RULES[name](f"{key}[{i}]", value)
            if value in values[:i]:
                raise ConfigError(
                    key,
                    f"the value {value!r} is listed twice; list each value once "
                    "(repeats of one setting are sweep.seeds)",
                )


def validate_spd(config) -> None:
    """Every ``spd.*`` value and SPD grid axis, before any compute; a ConfigError names the key."""
    s = config.spd
    _one_of("spd.source", s.source, SOURCES)
    for name, rule in RULES.items():
        rule(f"spd.{name}", getattr(s, name))
    _check_grid(config)
    for size in spd_values(config, "batch_size"):
        if size % s.batch_blocks:
            raise ConfigError(
                "spd.batch_blocks", f"must divide spd.batch_size={size}, got {s.batch_blocks}"
            )
    if not s.toy.sweep.strip():
        raise ConfigError(
            "spd.toy.sweep",
            "must name a finished toy-model sweep's sweep.out (e.g. runs/tms_intro)",
        )
