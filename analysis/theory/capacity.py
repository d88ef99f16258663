"""Scherlis et al.'s quadratic capacity model in closed form (docs/science/metrics.md,
docs/science/capacity.md), numpy only.

Model ŷ = xᵀWᵀWx + b with target y = Σ_i v_i x_i², loss (y − ŷ)². Write G = WᵀW and
g_i = G_ii = ‖W_i‖². For independent, zero-mean, unit-variance features with E[x_i⁴] = K_i,

    E[(y − ŷ)²] = Σ_i (K_i − 1)(v_i − g_i)² + 2 Σ_{i≠j} G_ij² + (Σ_i (v_i − g_i) − b)²,

because y − ŷ = Σ_i (v_i − g_i)(x_i² − 1) − Σ_{i≠j} G_ij x_i x_j + (Σ_i (v_i − g_i) − b), whose three
parts are uncorrelated, with E[(x² − 1)²] = K − 1 and E[(Σ_{i≠j} G_ij x_i x_j)²] = 2 Σ_{i≠j} G_ij².
The optimal bias zeroes the last term, which gives docs/science/capacity.md's formula. Only zero mean, unit
variance and independence are used: no symmetry of the magnitude distribution.

Capacity C_i = g_i² / Σ_j G_ij² turns feature i's row of interference into g_i²(1 − C_i)/C_i, so
the loss splits into per-feature terms (K − 1)(v_i − g_i)² + 2 g_i²(1 − C_i)/C_i. Treating (g_i, C_i)
as free under Σ_i C_i ≤ m is a relaxation (a lower bound on the loss of every W); minimising over
g_i at fixed C_i gives ``loss_at_capacity``. At the optimal allocation the bound is attained: the
tests find the same minimum by gradient descent on W for m = 1 and m = 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("increasing", "flat", "decreasing")
CAPACITY_CLASSES = ("ignored", "polysemantic", "monosemantic")
IGNORED, POLYSEMANTIC, MONOSEMANTIC = range(3)
CAPACITY_COLORS = ("#d9d9d9", "#dd8452", "#4c72b0")
# Two features sharing one dimension: which features it carries (``two_feature_region``).
MONO_FIRST, POLY_BOTH, MONO_SECOND = "monosemantic", "polysemantic", "monosemantic (feature 2)"
# The second feature's capacity class in each two-feature region.
SECOND_FEATURE_CLASS = {MONO_FIRST: IGNORED, POLY_BOTH: POLYSEMANTIC, MONO_SECOND: MONOSEMANTIC}


def _f(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _denominator(C, K) -> np.ndarray:
    """2 + (K − 3)C, positive for K > 1 and C ∈ [0, 1]. It vanishes only at K = 1, C = 1, where
    every numerator it divides carries a factor K − 1 = 0 (x² ≡ 1: nothing to learn): use 1."""
    d = 2.0 + (_f(K) - 3.0) * _f(C)
    return np.where(d > 0, d, 1.0)


def quadratic_loss(W_HxF, v_F, K, b=None) -> np.ndarray:
    """E[(y − ŷ)²] of the quadratic model (module docstring); optimal bias when ``b`` is None.

    ``W_HxF`` may carry leading batch axes (``...×m×n``); ``K`` is a scalar or one kurtosis per
    feature (features of different density have different K = K_u/p_i)."""
    W = _f(W_HxF)
    G = np.swapaxes(W, -1, -2) @ W
    g_F = np.diagonal(G, axis1=-2, axis2=-1)
    miss_F = _f(v_F) - g_F
    off = np.sum(G * G, axis=(-2, -1)) - np.sum(g_F * g_F, axis=-1)
    loss = np.sum((_f(K) - 1.0) * miss_F**2, axis=-1) + 2.0 * off
    if b is not None:
        loss = loss + (np.sum(miss_F, axis=-1) - _f(b)) ** 2
    return loss


def optimal_bias(W_HxF, v_F) -> np.ndarray:
    """b* = E[y − xᵀWᵀWx] = Σ_i (v_i − ‖W_i‖²) for unit-variance features."""
    W = _f(W_HxF)
    return np.sum(_f(v_F) - np.sum(W * W, axis=-2), axis=-1)


def optimal_norms(C, v, K) -> np.ndarray:
    """‖W_i‖² minimising (K − 1)(v − g)² + 2g²(1 − C)/C at fixed capacity C:
    g = (K − 1) v C / (2 + (K − 3) C), clipped at 0 (a negative v is best ignored)."""
    C, v, K = _f(C), _f(v), _f(K)
    return (K - 1.0) * np.maximum(v, 0.0) * C / _denominator(C, K)


def loss_at_capacity(C, v, K) -> np.ndarray:
    """L_i(C) = 2(K − 1) v² (1 − C) / (2 + (K − 3) C): feature i's loss at capacity C with its norm
    optimised (``optimal_norms``). L(0) = (K − 1)v² (ignored), L(1) = 0. Negative v cannot be
    matched by g ≥ 0, so it costs (K − 1)v² at every C."""
    C, v, K = _f(C), _f(v), _f(K)
    shaped = 2.0 * (K - 1.0) * v * v * (1.0 - C) / _denominator(C, K)
    return np.where(v >= 0, shaped, (K - 1.0) * v * v)


def marginal_benefit(C, v, K) -> np.ndarray:
    """−∂L_i/∂C = 2(K − 1)² v² / (2 + (K − 3) C)² (docs/science/metrics.md, docs/science/capacity.md); 0
    for negative v."""
    C, v, K = _f(C), _f(v), _f(K)
    return np.where(v >= 0, 2.0 * (K - 1.0) ** 2 * v * v / _denominator(C, K) ** 2, 0.0)


def curve_shape(K, tol: float = 1e-9) -> str:
    """How the marginal benefit changes as C grows: its C-derivative has the sign of (3 − K)(K − 1)²,
    so "increasing" for K < 3 (increasing returns: monosemantic), "decreasing" for K > 3
    (diminishing returns: polysemantic) and "flat" at K = 3 and at the degenerate K = 1 (sign
    inputs, p = 1: x_i² ≡ 1, every L_i is 0)."""
    K = float(K)
    if abs(K - 3.0) <= tol or abs(K - 1.0) <= tol:
        return "flat"
    return "increasing" if K < 3.0 else "decreasing"


# Capacities within this of 0 or 1 after bisection are 0 or 1 (λ converges onto a feature's
# benefit at C = 0 when the budget is filled exactly by whole features).
_SNAP = 1e-12


def _capacity_at(lam, v_F, K) -> np.ndarray:
    """Capacity at which each feature's marginal benefit equals λ (K > 3), clipped to [0, 1]."""
    s = np.sqrt(2.0 / lam)  # 2 + (K − 3)C = (K − 1) v √(2/λ)
    return np.clip(((K - 1.0) * np.maximum(v_F, 0.0) * s - 2.0) / (K - 3.0), 0.0, 1.0)


def optimal_allocation(v_F, K: float, m: float, iters: int = 200) -> tuple[np.ndarray, float]:
    """Capacities C_i ∈ [0, 1], Σ C_i ≤ m, minimising Σ_i L_i(C_i); returns (C_F, λ).

    K > 3: every L_i is convex (its marginal benefit falls with C), so the KKT conditions suffice:
    one shared marginal benefit λ among partially represented features, features whose benefit at
    C = 1 exceeds λ full, those whose benefit at C = 0 is below λ ignored (water-filling). λ is
    found by bisection on log λ, then solved exactly on the active set (Σ C_i is linear in
    1/√λ there). λ = 0 when the budget does not bind (at most m features with v > 0); when whole
    features fill it exactly, any λ between the benefits of the last full feature at C = 1 and
    of the first ignored one at C = 0 fits, and the bisection returns the latter.

    K ≤ 3: every L_i is concave (linear at K = 3), so the minimum over the polytope
    {0 ≤ C ≤ 1, Σ C ≤ m} sits at a vertex, where each C_i is 0 or 1 (one fractional for a
    non-integer m). Representing feature i saves L_i(0) − L_i(1) = (K − 1)v_i², so the top-m
    features by v take C = 1 (a fractional remainder goes to the next). λ is the marginal benefit
    of a fractional feature, NaN when there is none (no partial feature shares a benefit).
    """
    v_F, K, m = _f(v_F), float(K), float(m)
    if K <= 3.0:
        return _top_m(v_F, K, m)
    n_active = int(np.sum(v_F > 0))
    if n_active <= m:
        return (v_F > 0).astype(float), 0.0
    lo = float(np.min(2.0 * v_F[v_F > 0] ** 2))  # below every benefit at C = 1: all full (> m)
    hi = float((K - 1.0) ** 2 * np.max(v_F) ** 2 / 2.0)  # the largest benefit at C = 0: none
    for _ in range(iters):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if _capacity_at(mid, v_F, K).sum() > m else (lo, mid)
    C_F = _capacity_at(hi, v_F, K)
    C_F = np.where(C_F < _SNAP, 0.0, np.where(C_F > 1.0 - _SNAP, 1.0, C_F))  # bisection round-off
    full, partial = C_F >= 1.0, (C_F > 0.0) & (C_F < 1.0)
    if partial.any():  # exact λ on the active set: |full| + Σ_P ((K−1)v_i s − 2)/(K−3) = m
        s = ((m - full.sum()) * (K - 3.0) + 2.0 * partial.sum()) / ((K - 1.0) * v_F[partial].sum())
        exact = _capacity_at(2.0 / s**2, v_F, K)
        if np.array_equal(exact >= 1.0, full) and np.array_equal(
            (exact > 0) & (exact < 1), partial
        ):
            return exact, float(2.0 / s**2)
    return C_F, float(hi)


def _top_m(v_F: np.ndarray, K: float, m: float) -> tuple[np.ndarray, float]:
    order = np.argsort(-v_F, kind="stable")
    C_F = np.zeros_like(v_F)
    whole = min(int(np.floor(m)), len(v_F))
    C_F[order[:whole]] = 1.0
    lam = np.nan
    if whole < len(v_F) and m > whole and v_F[order[whole]] > 0:
        C_F[order[whole]] = m - whole
        lam = float(marginal_benefit(m - whole, v_F[order[whole]], K))
    C_F[v_F <= 0] = 0.0
    return C_F, lam


@dataclass(frozen=True)
class CapacityThresholds:
    """Capacity classes of a feature (ours; the paper gives no numbers): monosemantic if
    C ≥ ``mono``, ignored if C ≤ ``ignored``, polysemantic in between. A tiny W_i that overlaps
    other features has C ≈ ‖W_i‖²/overlap², so capacity alone separates ignored features."""

    mono: float = 0.9
    ignored: float = 0.1

    def describe(self) -> str:
        return (
            f"capacity classes: monosemantic if C_i ≥ {self.mono:g}, ignored if C_i ≤ "
            f"{self.ignored:g}, else polysemantic"
        )


def classify_capacity(
    C_F, mono: float = CapacityThresholds.mono, ignored: float = CapacityThresholds.ignored
) -> np.ndarray:
    """Class index per feature: 0 ignored, 1 polysemantic, 2 monosemantic (``CAPACITY_CLASSES``)."""
    C_F = _f(C_F)
    return np.where(C_F >= mono, MONOSEMANTIC, np.where(C_F <= ignored, IGNORED, POLYSEMANTIC))


def polysemantic_boundary(K_grid) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) ratios v₂/v₁ of the polysemantic region of two features in one dimension.

    Feature 2 enters alongside feature 1 (at C₁ = 1) when its benefit at C = 0, (K − 1)² v₂²/2,
    exceeds feature 1's at C = 1, 2v₁²: v₂/v₁ > 2/(K − 1); by symmetry v₂/v₁ < (K − 1)/2. Both
    equal 1 at K = 3; for K ≤ 3 the region is empty and ratio 1 separates the two monosemantic
    regions, so both curves are 1 there (continuous lines for plotting)."""
    K = _f(K_grid)
    poly = K > 3.0
    safe = np.where(poly, K, 5.0)
    return np.where(poly, 2.0 / (safe - 1.0), 1.0), np.where(poly, (safe - 1.0) / 2.0, 1.0)


def two_feature_region(ratio, K):
    """Which features a single dimension carries for importances (v₁, v₂ = ratio·v₁):
    ``MONO_FIRST`` (feature 1 only), ``POLY_BOTH``, or ``MONO_SECOND``. Points on a boundary go to
    the monosemantic side (the entering feature's capacity is exactly 0 there); at K ≤ 3 and
    ratio 1 the tie goes to feature 1."""
    ratio, K = np.broadcast_arrays(_f(ratio), _f(K))
    lower, upper = polysemantic_boundary(K)
    poly = (K > 3.0) & (ratio > lower) & (ratio < upper)
    second = np.where(K > 3.0, ratio >= upper, ratio > 1.0)
    out = np.where(poly, POLY_BOTH, np.where(second, MONO_SECOND, MONO_FIRST))
    return out.item() if out.ndim == 0 else out


def held_loss_two_features(C, ratio, K, v1: float = 1.0) -> np.ndarray:
    """Exact minimum of ``quadratic_loss`` for n = 2, m = 1 with feature 1's capacity held at C.

    In one dimension C₁ = w₁²/(w₁² + w₂²), so holding C fixes g = S·(C, 1 − C) up to the scale S,
    and the loss (K − 1)Σ(v_i − g_i)² + 4g₁g₂ is a quadratic in S with minimum
    (K − 1)(v₁² + v₂²) − (K − 1)²(v₁C + v₂(1 − C))² / ((K − 1)(C² + (1 − C)²) + 4C(1 − C)).
    Away from the optimal C this lies above L₁(C) + L₂(1 − C) (the relaxation needs g ∝ C, which
    only the optimum has), so a held-capacity experiment measures this curve, not the relaxed L_i(C)."""
    C, K = _f(C), _f(K)
    v2 = _f(ratio) * v1
    a = K - 1.0
    reach = a * (v1 * C + v2 * (1.0 - C))
    return a * (v1 * v1 + v2 * v2) - reach**2 / (a * (C * C + (1.0 - C) ** 2) + 4.0 * C * (1.0 - C))


def held_capacity_weights(C, ratio, K, v1: float = 1.0) -> np.ndarray:
    """The 1×2 W attaining ``held_loss_two_features`` (for building honest synthetic tables)."""
    C, K = _f(C), _f(K)
    v2 = _f(ratio) * v1
    a = K - 1.0
    S = a * (v1 * C + v2 * (1.0 - C)) / (a * (C * C + (1.0 - C) ** 2) + 4.0 * C * (1.0 - C))
    S = np.maximum(S, 0.0)
    return np.stack([np.sqrt(C * S), np.sqrt((1.0 - C) * S)], axis=-1)[..., None, :]
