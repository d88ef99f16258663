"""Optional loss terms (``LossTerm``, ``toymodels.terms.base``): one object each, in one file, added
to a toy model's training loss when a sweep uses them.

| term | file | adds to the loss |
|---|---|---|
| ``l1_hidden`` | ``l1_hidden.py`` | λ · mean ‖h‖₁ of the hidden activations |
| ``capacity`` | ``capacity.py`` | λ · (C_f − c)²: hold feature f's capacity near c |
| ``mono`` | ``mono.py`` | μ · Σ_i C_i(1 − C_i) from step s on: buy monosemanticity |

A new term: a ``LossTerm`` in its own file, added to the table below (or, from a user's plugin
file, ``register_term``); docs/architecture.md has a worked example.
"""

from __future__ import annotations

from toymodels.registry import Registry
from toymodels.terms.base import LossTerm, TermInputs, TermParam
from toymodels.terms.capacity import CAPACITY
from toymodels.terms.l1_hidden import L1_HIDDEN
from toymodels.terms.mono import MONO

# The order is the order the terms are added to the loss (their floating-point sum).
TERMS: Registry[LossTerm] = Registry("loss term", "train.terms", [L1_HIDDEN, CAPACITY, MONO])

__all__ = ["TERMS", "LossTerm", "TermInputs", "TermParam", "register_term"]


def register_term(term: LossTerm, origin: str | None = None) -> LossTerm:
    """Make ``term`` usable by its settings' names (``train.terms.<param>``, ``sweep.grid.<param>``)."""
    return TERMS.register(term, origin)
