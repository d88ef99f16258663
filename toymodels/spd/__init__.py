"""Stochastic Parameter Decomposition (Bushnaq et al. 2025; docs/spd.md): a trained model's
weight matrices as sums of rank-one subcomponents, with learned causal importances, many
decompositions in one compiled program (``decompose_many`` = ``jit(vmap(...))``), scored against
the ground truth a toy model gives.

| module | what |
|---|---|
| ``target`` | ``Target``: a model as a function of named matrices (TMS, TMS+ID, residual MLPs) |
| ``components`` | subcomponents U Vᵀ, causal-importance MLPs, leaky hard sigmoids, masks |
| ``losses`` | faithfulness, stochastic reconstruction (full and layerwise), importance minimality |
| ``metrics`` | MMCS, ML2R, recovery of every feature, alive subcomponents |
| ``train`` | ``SpdSpec``, ``SpdHParams``, ``PRESETS`` (the paper's settings), ``decompose_many`` |

A new model to decompose is one ``Target`` (see ``toymodels.spd.target``).
"""

from __future__ import annotations

from toymodels.spd.target import Site, Target, residual_mlp, tms
from toymodels.spd.train import (
    PRESETS,
    SPD_STREAM,
    SpdHParams,
    SpdResult,
    SpdScores,
    SpdSpec,
    decompose_many,
    hparams,
    make_train,
    spd_keys,
)

__all__ = [
    "PRESETS",
    "SPD_STREAM",
    "Site",
    "SpdHParams",
    "SpdResult",
    "SpdScores",
    "SpdSpec",
    "Target",
    "decompose_many",
    "hparams",
    "make_train",
    "residual_mlp",
    "spd_keys",
    "tms",
]
