"""A kind's own hyperparameters (``HyperParam``), declared on its ``SaeKind``: name, default, the
values allowed, whether one compiled program serves any value (per SAE) or each value compiles its
own (static), and how figures name it. Everything that reads hyperparameters (the sweep config's
checks and grid axes, the planner, the stored columns, the figures' labels) reads these
declarations, so a new kind with a new hyperparameter is one file (docs/saes/reference.md, "Your
own SAE kind").

Free of JAX, so that the config schema can take its defaults from here without importing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class HyperParam:
    """One hyperparameter of an SAE kind.

    - ``default``: the value when neither ``sae.<name>`` nor ``sae.options.<name>`` nor a grid
      axis gives one.
    - ``low``, ``low_open``, ``high``, ``integer``: the values allowed (checked before any
      compute, one line naming the key).
    - ``per_sae``: an array leaf of ``SaeHParams`` (``hp.<name>``, one program serves any value);
      else a static value in ``SaeSpec.options`` (``spec.option(name)``): SAEs that differ in it
      never share a program.
    - ``neutral``: the value at which training is exactly what it was before the hyperparameter
      existed (AuxK's coefficient 0): a sweep at it keeps its config hash.
    - ``needs``: another hyperparameter without which this one does nothing (AuxK's dead window
      needs a coefficient > 0); it is left out of the config hash while that one is neutral.
    - ``sparsity``: the kind's sparsity setting (λ, k): the x of its Pareto front, the ``sparsity``
      column. ``label``: how figures name it.
    - ``saelens``: SAELens's name for it, where it has one (docs/saes/reference.md).
    - ``choices``: a setting named by text rather than a number (the decoder's parameterisation):
      the values allowed; such a hyperparameter is static (``per_sae`` False).
    """

    name: str
    default: float | int | str
    doc: str = ""
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    integer: bool = False
    per_sae: bool = True
    neutral: float | int | str | None = None
    needs: str | None = None
    sparsity: bool = False
    label: str = ""
    saelens: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"a hyperparameter's name must be an identifier, got {self.name!r}")
        if self.choices and (self.per_sae or self.sparsity):
            raise ValueError(
                f"hyperparameter {self.name!r}: a choice among names is static (per_sae=False) "
                "and is no sparsity setting"
            )
        problem = self.problem(self.default)
        if problem:
            raise ValueError(f"hyperparameter {self.name!r}: its default {problem}")

    def problem(self, value) -> str:
        """What is wrong with ``value`` ("" when it is allowed)."""
        if self.choices:
            if isinstance(value, str) and value in self.choices:
                return ""
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
        ok = ok and (not self.integer or isinstance(value, int) or float(value).is_integer())
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        ok = ok and (self.high is None or value <= self.high)
        if ok:
            return ""
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        what = "an integer" if self.integer else "a finite number"
        return f"must be {what}{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}"

    def cast(self, value):
        if self.choices:
            return str(value)
        return int(value) if self.integer else float(value)

    @property
    def dtype(self) -> str:
        return "int32" if self.integer else "float32"

    @property
    def shown(self) -> str:
        return self.label or self.name


# The built-in kinds' hyperparameters. Two kinds that read the same setting share the object.
L1 = HyperParam(
    "l1",
    0.1,
    "λ: the L1 coefficient (plain, gated, rescaled) or the L0 coefficient (jumprelu)",
    low=0,
    low_open=True,
    sparsity=True,
    label="λ",
    saelens="l1_coefficient (jumprelu: l0_coefficient)",
)
K = HyperParam(
    "k",
    2,
    "k: latents kept per input (topk) or per input on average over the batch (batchtopk, "
    "matryoshka)",
    low=1,
    integer=True,
    sparsity=True,
    label="k",
    saelens="k",
)
BANDWIDTH = HyperParam(
    "bandwidth",
    0.05,
    "ε: the width of the rectangle window of JumpReLU's straight-through pseudo-derivatives",
    low=0,
    low_open=True,
    label="ε",
    saelens="jumprelu_bandwidth",
)
INIT_THRESHOLD = HyperParam(
    "init_threshold",
    0.01,
    "θ₀: every JumpReLU threshold at initialisation",
    low=0,
    label="θ₀",
    saelens="jumprelu_init_threshold",
)
GRAD_CLIP = HyperParam(
    "grad_clip",
    1.0,
    "the largest global norm of one SAE's gradient before Adam (0: no clipping; plain, gated, "
    "jumprelu)",
    low=0,
    neutral=0,
    label="clip",
    saelens="the trainer's clip_grad_norm_ (1.0, every kind)",
)
AUX_COEFFICIENT = HyperParam(
    "aux_coefficient",
    1 / 32,
    "α: the AuxK loss's coefficient (Gao et al. 2024: 1/32); 0 turns it off",
    low=0,
    neutral=0,
    label="α",
    saelens="aux_loss_coefficient",
)
INIT_NORM = HyperParam(
    "init_norm",
    0.1,
    "the norm of every decoder column V_j and of the encoder row tied to it at initialisation "
    "(batchtopk, matryoshka; the decoder itself is V/‖V‖ whatever it is)",
    low=0,
    low_open=True,
    neutral=1.0,
    label="‖V₀‖",
    saelens="decoder_init_norm",
)
DEAD_WINDOW = HyperParam(
    "dead_window",
    1000,
    "a latent is dead for AuxK when it has not fired in this many training steps",
    low=1,
    integer=True,
    needs="aux_coefficient",
    label="dead window",
    saelens="dead_feature_window",
)
DECODER = HyperParam(
    "decoder",
    "free",
    "the decoder's parameterisation (plain, gated): free (SAELens; Anthropic's April 2024 update: "
    "free-norm columns from norm 0.1, the sparsity penalty weighted by each column's norm) or unit "
    "(Bricken et al. 2023: unit-norm columns, the plain λ‖f‖₁; before issue 21)",
    per_sae=False,
    neutral="unit",
    label="decoder",
    saelens="decoder_init_norm 0.1 and the W_dec-norm-weighted L1 (free)",
    choices=("free", "unit"),
)
CODES = HyperParam(
    "codes",
    "scaled",
    "what the batch top-k ranks and the decoder reads (batchtopk, matryoshka): scaled (SAELens "
    "6.54's rescale_acts_by_decoder_norm: codes pre·‖v_j‖, their top-k, inference threshold and "
    "AuxK on those, decoded through V/‖V‖) or unscaled (pre itself through V/‖V‖; before issue 21's "
    "scaled default)",
    per_sae=False,
    neutral="unscaled",
    label="codes",
    saelens="rescale_acts_by_decoder_norm (True: scaled)",
    choices=("scaled", "unscaled"),
)
