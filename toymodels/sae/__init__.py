"""Sparse autoencoders on activations whose generating directions are known (Sharkey et al. 2022;
issue 16): the kinds, the sources of activations, the scores, and ``train_saes`` =
``jit(vmap(train))`` over any number of same-shaped SAEs.

| module | what |
|---|---|
| ``base`` | ``SaeKind`` (one kind = one object), shared parameters, top-k masks, JumpReLU ops |
| ``kinds`` | plain, gated, rescaled, topk, batchtopk, jumprelu, matryoshka |
| ``worlds`` | synthetic worlds h = F x + b: firing, magnitudes, hierarchy (``WorldSource``, ``World``) |
| ``build`` | building worlds: directions, Zipf, low-rank correlation, hierarchies, composition |
| ``synthbench`` | the SynthSAEBench-like world (full size and scaled down), its cost estimate |
| ``toy`` | a trained toy model's own data kind and forward pass as a source (``ToySource``) |
| ``metrics`` | MMCS, MCC (SAELens's), precision/recall/F1, L0, dead, FVU, γ, absorption, composed |
| ``train`` | ``SaeSpec``, ``SaeHParams``, ``train_saes`` (one spec), ``train_mixed`` (several on one stream) |

A new kind: build a ``SaeKind`` in your own file and ``SAE_KINDS.register`` it.
"""

from __future__ import annotations

from toymodels.registry import Registry
from toymodels.sae.base import SaeKind, decoder
from toymodels.sae.kinds import BUILTIN

SAE_KINDS: Registry[SaeKind] = Registry("SAE kind", "sae.kind", BUILTIN)

from toymodels.sae.metrics import SaeScores, chance_mmcs, mcc, mmcs  # noqa: E402
from toymodels.sae.train import (  # noqa: E402
    SAE_STREAM,
    SaeHParams,
    SaeResult,
    SaeSpec,
    hparams,
    make_train,
    sae_keys,
    split_keys,
    train_mixed,
    train_saes,
)

__all__ = [
    "SAE_KINDS",
    "SAE_STREAM",
    "SaeHParams",
    "SaeKind",
    "SaeResult",
    "SaeScores",
    "SaeSpec",
    "chance_mmcs",
    "decoder",
    "hparams",
    "make_train",
    "mcc",
    "mmcs",
    "sae_keys",
    "split_keys",
    "train_mixed",
    "train_saes",
]
