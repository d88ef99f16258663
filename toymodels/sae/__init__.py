"""Sparse autoencoders on activations whose generating directions are known (Sharkey et al. 2022;
issue 16): the kinds, the sources of activations, the scores, and ``train_saes`` =
``jit(vmap(train))`` over any number of same-shaped SAEs.

| module | what |
|---|---|
| ``base`` | ``SaeKind`` (one kind = one object), shared parameters, top-k masks, JumpReLU ops |
| ``hyperparams`` | ``HyperParam``: a kind's own hyperparameters (default, allowed values, per SAE or static) |
| ``kinds`` | plain, gated, rescaled, topk, batchtopk, jumprelu, matryoshka |
| ``worlds`` | synthetic worlds h = F x + b: firing, magnitudes, hierarchy (``WorldSource``, ``World``) |
| ``build`` | building worlds: directions, Zipf, low-rank correlation, hierarchies, composition |
| ``synthbench`` | the SynthSAEBench-like world (full size and scaled down), its cost estimate |
| ``toy`` | a trained toy model's own data kind and forward pass as a source (``ToySource``) |
| ``metrics`` | MMCS, MCC, uniqueness, precision/recall/F1, L0, dead, FVU, γ, absorption per edge, hedging |
| ``train`` | ``SaeSpec``, ``SaeHParams``, ``train_saes`` (one spec), ``train_mixed`` (several on one stream) |

A new kind: build a ``SaeKind`` in your own file and ``register_sae`` it (docs/saes/reference.md,
"Your own SAE kind").
"""

from __future__ import annotations

from toymodels.registry import ConfigError, Registry
from toymodels.sae.base import SaeKind, decoder
from toymodels.sae.hyperparams import HyperParam
from toymodels.sae.kinds import BUILTIN

SAE_KINDS: Registry[SaeKind] = Registry("SAE kind", "sae.kind", BUILTIN)


def register_sae(kind: SaeKind, origin: str | None = None) -> SaeKind:
    """Make ``kind`` trainable by name (``sae.kind=<kind.name>``). A hyperparameter named as one
    another kind declares is that one's setting (one config key, one column): it must be declared
    alike (use the built-in object, e.g. ``toymodels.sae.hyperparams.L1``)."""
    for hparam in kind.hparams:
        for other in SAE_KINDS:
            same = other.hparam(hparam.name)
            if other.name != kind.name and same is not None and same != hparam:
                raise ConfigError(
                    "sae.kind",
                    f"SAE kind {kind.name!r} declares hyperparameter {hparam.name!r} unlike "
                    f"kind {other.name!r} does ({hparam} against {same}); reuse that declaration "
                    "or choose another name",
                )
    return SAE_KINDS.register(kind, origin)


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
    "HyperParam",
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
    "register_sae",
    "sae_keys",
    "split_keys",
    "train_mixed",
    "train_saes",
]
