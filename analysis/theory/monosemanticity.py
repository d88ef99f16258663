"""Buying monosemanticity by reshaping marginal returns (issue 17 item 3; docs/science/capacity.md), in closed
form; ``analysis.measures.monosemanticity`` reads the trained models against it. The
optional loss term μ·Σ_i C_i(1 − C_i) (``train.mono_penalty``), from scratch or switched on after
``train.mono_start`` steps (a fine-tune), against L1 on hidden activations, a negative hidden-bias
init and wider layers.

Exact for the quadratic model with n = 2, m = 1 (v = (1, r), kurtosis K): C₁ + C₂ = 1, so the
penalty is 2μC(1 − C) with C = C₁, and the penalised optimum minimises F(C) = H(C) + 2μC(1 − C),
H the exact held-capacity loss (``capacity_theory.held_loss_two_features``). The penalty is 0 at
both corners, so the corner keeps its loss L_c = (K − 1)·min(v₁, v₂)², and the interior minimum of F
stays below it iff μ ≤ (L_c − H(C))/(2C(1 − C)) for some C: the switch point is

    μ_c = max(0, sup_{0<C<1} (L_c − H(C)) / (2C(1 − C)))      (``switch_point``),

where the optimum jumps from an interior C to the corner (first order), raising the loss from
min H to L_c (``loss_increase``). Around μ_c both are local minima over a window
(``bistable_window``): the corner is locally stable once 2μ exceeds the slope of H at the corner,
and the interior minimum survives up to the upper end, so a fine-tune that starts polysemantic can
stay polysemantic somewhat past μ_c and a model trained with the term from scratch can land in the
corner somewhat before it.
"""

from __future__ import annotations

import numpy as np

from analysis.theory import capacity as ct

INTERIOR_C = np.linspace(1e-6, 1.0 - 1e-6, 200_001)  # interior capacities for the 1-D searches


def held_loss(C, ratio, K):
    """H(C): the n = 2, m = 1 quadratic loss with C₁ held at C, norms and bias optimal (v₁ = 1)."""
    return ct.held_loss_two_features(C, ratio, K)


def penalised_loss(C, ratio, K, mu):
    """F(C) = H(C) + μ·Σ_i C_i(1 − C_i) = H(C) + 2μC(1 − C)."""
    C = np.asarray(C, np.float64)
    return held_loss(C, ratio, K) + 2.0 * mu * C * (1.0 - C)


def corner(ratio, K) -> tuple[float, float]:
    """(C₁ of the better corner, its loss): feature 1 alone (C₁ = 1) unless v₂ > v₁."""
    keep_first = held_loss(1.0, ratio, K) <= held_loss(0.0, ratio, K)
    C = 1.0 if keep_first else 0.0
    return C, float(held_loss(C, ratio, K))


def switch_point(ratio, K) -> float:
    """μ_c (module docstring); 0 where the unpenalised optimum is already a corner."""
    _, L_c = corner(ratio, K)
    quotient = (L_c - held_loss(INTERIOR_C, ratio, K)) / (2.0 * INTERIOR_C * (1.0 - INTERIOR_C))
    i = int(np.argmax(quotient))
    lo, hi = INTERIOR_C[max(i - 1, 0)], INTERIOR_C[min(i + 1, len(INTERIOR_C) - 1)]
    fine = np.linspace(lo, hi, 2001)  # the grid's maximum, refined
    return max(0.0, float(np.max((L_c - held_loss(fine, ratio, K)) / (2.0 * fine * (1.0 - fine)))))


def loss_increase(ratio, K) -> float:
    """L_c / min_C H(C) − 1: what the jump to the corner costs, relative to the unpenalised optimum."""
    return corner(ratio, K)[1] / float(np.min(held_loss(INTERIOR_C, ratio, K))) - 1.0


def penalised_optimum(ratio, K, mu) -> float:
    """C₁ of the global minimum of F over [0, 1] (corners included)."""
    grid = np.concatenate([[0.0], INTERIOR_C[::20], [1.0]])
    return float(grid[np.argmin(penalised_loss(grid, ratio, K, mu))])


def _has_interior_minimum(ratio, K, mu) -> bool:
    F = penalised_loss(INTERIOR_C[::10], ratio, K, mu)
    d = np.diff(F)
    return bool(np.any((d[:-1] < 0) & (d[1:] >= 0)))


def bistable_window(ratio, K) -> tuple[float, float]:
    """(μ from which the better corner is a local minimum of F, μ up to which F keeps an interior
    local minimum). Empty (lower > upper) where there is no interior minimum at all."""
    C_c, _ = corner(ratio, K)
    h = 1e-7
    slope = (held_loss(C_c, ratio, K) - held_loss(C_c - h if C_c else h, ratio, K)) / (
        h if C_c else -h
    )
    lower = (
        max(0.0, abs(slope) / 2.0) if (slope > 0) == bool(C_c) else 0.0
    )  # F' = H' ∓ 2μ at the corner
    if not _has_interior_minimum(ratio, K, 0.0):
        return lower, 0.0
    lo, hi = 0.0, 1.0
    while _has_interior_minimum(ratio, K, hi):
        hi *= 2.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _has_interior_minimum(ratio, K, mid) else (lo, mid)
    return lower, lo
