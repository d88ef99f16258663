"""``mono``: buy monosemanticity with + μ · Σ_i C_i(1 − C_i), on from step ``mono_start`` (0: from
scratch; s > 0: a fine-tune of the model trained without it for s steps). Settings
``mono_penalty`` (μ) and ``mono_start``, stored only in sweeps that use the term. C_i is written
in the form whose gradient stays finite as a feature shrinks to 0
(``toymodels.metrics.capacity_for_gradients``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from toymodels import metrics
from toymodels.registry import ConfigError
from toymodels.terms.base import LossTerm, TermParam


def penalty(inputs, arrays):
    C_F = metrics.capacity_for_gradients(inputs.kind.features(inputs.params))
    on = (inputs.step >= arrays["mono_start"]).astype(C_F.dtype)
    return on * arrays["mono_penalty"] * jnp.sum(C_F * (1.0 - C_F))


def arrays(values, n_features):
    return {
        "mono_penalty": np.array([v["mono_penalty"] for v in values], np.float32),
        "mono_start": np.array([v["mono_start"] for v in values], np.uint32),
    }


def check(sweep):
    for i, start in enumerate(sweep.values("mono_start")):
        for steps in sweep.values("steps"):
            if start >= steps:
                raise ConfigError(
                    sweep.key("mono_start", i),
                    f"the term would never be on: must be below train.steps={steps}, got {start}",
                )


MONO = LossTerm(
    name="mono",
    params=(TermParam("mono_penalty", 0.0, low=0), TermParam("mono_start", 0, integer=True, low=0)),
    switches=("mono_penalty",),
    penalty=penalty,
    arrays=arrays,
    check=check,
    doc="+ mono_penalty · Σ_i C_i(1 − C_i), on from step mono_start",
)
