"""``capacity``: hold feature f's capacity C_f near a target c by + λ · (C_f − c)² (Scherlis et al.
2022's marginal benefit of capacity: at a minimum, −∂L/∂C_f = 2λ(C_f − c)). Settings:
``capacity_feature`` (f, −1: none held), ``capacity_target`` (c), ``capacity_penalty`` (λ).
Always stored (f = −1 when none is held) with ``penalty_marginal_benefit`` = 2λ(C_f − c)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from toymodels import metrics
from toymodels.terms.base import LossTerm, TermParam


def penalty(inputs, arrays):
    held = jnp.sum(
        arrays["capacity_onehot_F"] * metrics.capacity(inputs.kind.features(inputs.params))
    )
    return arrays["capacity_penalty"] * (held - arrays["capacity_target"]) ** 2


def arrays(values, n_features):
    """The held feature as a one-hot row (all zeros: none held), so that models of one chunk may
    hold different features."""
    return {
        "capacity_onehot_F": np.array(
            [np.arange(n_features) == v["capacity_feature"] for v in values], np.float32
        ),
        "capacity_target": np.array([v["capacity_target"] for v in values], np.float32),
        "capacity_penalty": np.array([v["capacity_penalty"] for v in values], np.float32),
    }


def _held(values) -> int:
    return values["capacity_feature"] if values is not None else -1


def columns(values):
    held = _held(values)
    return {
        "capacity_feature": held,
        "capacity_target": values["capacity_target"] if held >= 0 else float("nan"),
        "capacity_penalty": values["capacity_penalty"] if held >= 0 else 0.0,
    }


def measures(values, capacity_F):
    """At a minimum of L + λ(C_f − c)², −∂L/∂C_f = 2λ(C_f − c): the held feature's marginal benefit
    of capacity, read off the penalty's pull (Scherlis et al.)."""
    held = _held(values)
    if held < 0:
        return {"penalty_marginal_benefit": float("nan")}
    return {
        "penalty_marginal_benefit": 2
        * values["capacity_penalty"]
        * (float(capacity_F[held]) - values["capacity_target"])
    }


CAPACITY = LossTerm(
    name="capacity",
    params=(
        TermParam(
            "capacity_feature",
            -1,
            integer=True,
            low=-1,
            high_key="model.n_features",
            what="a feature index (or -1 for none)",
        ),
        TermParam("capacity_target", 1.0, low=0, high=1, what="a capacity target"),
        TermParam("capacity_penalty", 0.0, low=0),
    ),
    switches=("capacity_feature", "capacity_penalty"),
    penalty=penalty,
    arrays=arrays,
    columns=columns,
    measures=measures,
    doc="+ capacity_penalty · (C_f − capacity_target)², f = capacity_feature",
)
