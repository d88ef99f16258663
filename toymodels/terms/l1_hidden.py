"""``l1_hidden``: λ · mean over the batch of ‖h‖₁, TMS's L1 penalty on the hidden activations
(Elhage et al. 2022, the privileged-basis models). Stored as ``l1_hidden`` (0 when no model of the
sweep has it)."""

from __future__ import annotations

from toymodels.terms.base import LossTerm, TermParam


def penalty(inputs, arrays):
    return arrays["l1_hidden"] * inputs.ops.l1(inputs.hidden)


L1_HIDDEN = LossTerm(
    name="l1_hidden",
    params=(TermParam("l1_hidden", 0.0, low=0),),
    switches=("l1_hidden",),
    penalty=penalty,
    columns=lambda values: {"l1_hidden": values["l1_hidden"] if values is not None else 0.0},
    doc="+ l1_hidden · mean ‖h‖₁ of the hidden activations",
)
