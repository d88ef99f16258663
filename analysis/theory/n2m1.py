"""Exact expected losses of the n=2, m=1 ReLU-output toy model (docs/science/n2m1.md), numpy only.

Model: h = W x = w1 x1 + w2 x2 (W is 1×2), x̂_i = ReLU(w_i h + b_i). Data: x_i = 0 with
probability 1 − p, else U[0, 1], independently, so E[x_i] = p/2, E[x_i²] = p/3 and
Var[x_i] = p/3 − p²/4 =: σ²(p). Importance I = (1, r).

Losses come in two reductions:

- ``"sum"``: Σ_i I_i E[(x_i − x̂_i)²], the expected importance-weighted squared error per sample
  summed over the two features (the convention of docs/science/n2m1.md and of the TMS closed forms);
- ``"mean"``: the same divided by n = 2, i.e. what ``toymodels.models.DENSE.weighted_mse`` (mean over
  batch *and features*) estimates, so it is what a trained model's loss should be compared with.

The hand-built solutions and their losses (``"sum"``) are derived in ``solution_losses``. Their
crossings give the analytic phase diagram (``predicted_phase``, ``superposition_boundary``,
``boundary_curves``, ``loss_crossover``). ``expected_loss`` evaluates the *exact* expected loss
of any (W, b) in closed form per activity pattern, and ``relaxed_solutions`` uses it to let each
hand-built solution relax (weights and biases optimised locally); they live in
``analysis.theory.n2m1_exact`` and ``analysis.theory.n2m1_relaxed``. The relaxed antipodal pair is
noticeably better than its closed form near the triple point, so trained models sit in
superposition somewhat above the analytic boundary; see ``relaxed_solutions``.

Everything is vectorised: p, r (and the leading axes of W, b) broadcast against each other.
No JAX, no scipy.
"""

from __future__ import annotations

import numpy as np

PHASES = ("not learned", "dedicated", "superposition")
# Same indices as analysis.phases (NOT_LEARNED, DEDICATED, SUPERPOSED).
NOT_LEARNED, DEDICATED, SUPERPOSITION = range(3)
# solution_losses keys, in phase order.
SOLUTIONS = ("not_learned", "dedicated", "superposition")
EXTRA_SOLUTIONS = ("zero", "confused")
REDUCTIONS = ("sum", "mean")
N_FEATURES = 2
# (r, p) where the three solutions have equal loss.
TRIPLE_POINT = (1.0, 4.0 / 7.0)


# ---------------------------------------------------------------------------------------------
# Closed forms for the hand-built solutions


def _scale(reduction: str) -> float:
    if reduction == "sum":
        return 1.0
    if reduction == "mean":
        return 1.0 / N_FEATURES
    raise ValueError(f"reduction {reduction!r} is not one of {REDUCTIONS}")


def feature_variance(p):
    """σ²(p) = E[x²] − E[x]² = p/3 − p²/4, the loss of predicting one feature by its mean."""
    p = np.asarray(p, dtype=float)
    return p / 3.0 - p * p / 4.0


def solution_params(name: str, p) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of a hand-built solution at density p: W has shape (..., 1, 2), b (..., 2).

    ``not_learned`` W=(1,0), b=(0,p/2); ``dedicated`` W=(0,1), b=(p/2,0); ``superposition``
    W=(1,−1), b=0; ``zero`` W=0, b=(p/2,p/2); ``confused`` W=(1/√2,1/√2), b=0.
    """
    p = np.asarray(p, dtype=float)
    half = p / 2.0
    zero = np.zeros_like(p)
    one = np.ones_like(p)
    s = np.sqrt(0.5) * one
    table = {
        "not_learned": ((one, zero), (zero, half)),
        "dedicated": ((zero, one), (half, zero)),
        "superposition": ((one, -one), (zero, zero)),
        "zero": ((zero, zero), (half, half)),
        "confused": ((s, s), (zero, zero)),
    }
    if name not in table:
        raise ValueError(f"solution {name!r} is not one of {SOLUTIONS + EXTRA_SOLUTIONS}")
    w, b = table[name]
    return np.stack(w, -1)[..., None, :], np.stack(b, -1)


def solution_losses(
    p, r, reduction: str = "sum", include_extra: bool = False
) -> dict[str, np.ndarray]:
    """Closed-form expected loss of each hand-built solution, broadcast over p and r.

    Keys ``not_learned``, ``dedicated``, ``superposition`` (phase order); with ``include_extra``
    also ``zero`` and ``confused``. Derivations (reduction ``"sum"``, σ² = p/3 − p²/4):

    - ``not_learned`` (ignore feature 2), W=(1,0), b=(0,p/2): x̂1 = ReLU(x1) = x1 exactly; x̂2 =
      ReLU(b2) is a constant, and the constant c minimising E[(x2 − c)²] is E[x2] = p/2 ≥ 0, with
      error σ². Loss r·σ² = r(p/3 − p²/4).
    - ``dedicated`` (the dimension goes to feature 2), W=(0,1), b=(p/2,0): the mirror image,
      loss σ² = p/3 − p²/4.
    - ``superposition`` (antipodal pair), W=(1,−1), b=0: x̂1 = ReLU(x1 − x2) is x1 − x2 (error
      x2²) when x1 ≥ x2 and 0 (error x1²) otherwise, so the error is min(x1, x2)², non-zero only
      when both are active (probability p²). min(U, V) of two uniforms has density 2(1 − t), so
      E[min²] = ∫ 2t²(1 − t) dt = 1/6. Feature 2 is symmetric: loss (1 + r) p²/6.
      This is *not* a stationary point: ∂L/∂b_1 at b = 0⁺ is −2E[x2·1{x1>x2}] = −p²/3, and
      with W = √s·(1, −1) the error of feature 1 has d/ds = −2E[x2(x1 − x2)1{x1>x2}] = −p²/12 at
      s = 1. So the relaxed antipodal solution is lower (``relaxed_solutions``): the closed form
      is an upper bound on the best superposition loss, and that is what the boundary uses.
    - ``zero``, W=0, b=(p/2,p/2): both features predicted by their mean, loss (1 + r)σ². Never
      best (it is the sum of the two previous losses).
    - ``confused`` (same-sign pair), W=(1/√2,1/√2), b=0: x̂_i = (x1 + x2)/2 ≥ 0, the least-squares
      prediction of x_i from x1 + x2 (slope Cov/Var = 1/2, intercept 0), so the ReLU never bites.
      Error E[(x_i − x_j)²]/4 = (2p/3 − 2p²/4)/4 = σ²/2 per feature: loss (1 + r)σ²/2, the average
      of not_learned and dedicated. b = 0 is its best bias: on b ≥ 0 the error is quadratic with
      minimum at E[(x_i − x_j)/2] = 0; on b < 0, dL/db = 2b·P(x1 + x2 > −2b) < 0. So it never
      wins and only ties, at r = 1, with not_learned and dedicated (for every p). It is a saddle
      there: along unit W = (cos θ, sin θ) with the best biases the loss is below σ² strictly
      between θ = 0, 45° and 90° (by ~1 % at p = 0.3); the relaxed same-sign and opposite-sign
      "lopsided" solutions of ``relaxed_solutions`` are the actual minima near r = 1.
    """
    p, r = np.broadcast_arrays(np.asarray(p, dtype=float), np.asarray(r, dtype=float))
    var = feature_variance(p)
    k = _scale(reduction)
    out = {
        "not_learned": k * r * var,
        "dedicated": k * var,
        "superposition": k * (1.0 + r) * p * p / 6.0,
    }
    if include_extra:
        out["zero"] = k * (1.0 + r) * var
        out["confused"] = k * (1.0 + r) * var / 2.0
    return out


def predicted_phase(p, r) -> np.ndarray:
    """Phase of feature 2 with the lowest closed-form loss: 0 not learned, 1 dedicated,
    2 superposition (``PHASES``). Exact ties go to the lower index."""
    losses = solution_losses(p, r)
    return np.argmin(np.stack([losses[name] for name in SOLUTIONS]), axis=0)


def superposition_boundary(r):
    """Density below which the antipodal pair beats the better of the other two solutions.

    r ≤ 1 (against not_learned): r(p/3 − p²/4) = (1+r)p²/6  ⇔  p = 4r/(2 + 5r).
    r ≥ 1 (against dedicated):     p/3 − p²/4 = (1+r)p²/6   ⇔  p = 4/(5 + 2r).
    Both give 4/7 at r = 1 (``TRIPLE_POINT``); the curve peaks there.
    """
    r = np.asarray(r, dtype=float)
    return np.where(r <= 1.0, 4.0 * r / (2.0 + 5.0 * r), 4.0 / (5.0 + 2.0 * r))


def dedicated_boundary(p):
    """Relative importance at which not_learned and dedicated swap: r = 1 for every p (they
    cost rσ² and σ²). It is a phase boundary only above ``superposition_boundary(1) = 4/7``;
    NaN below, where superposition wins on both sides."""
    p = np.asarray(p, dtype=float)
    return np.where(p >= TRIPLE_POINT[1], 1.0, np.nan)


def boundary_curves(
    r_min: float = 0.1,
    r_max: float = 10.0,
    num: int = 400,
    p_max: float = 1.0,
    spacing: str = "log",
) -> dict[str, np.ndarray]:
    """Analytic boundaries for a phase diagram with axes (x = relative importance r, y = density p).

    Returns ``r``, ``p_superposition`` (the superposition boundary over r), ``r_dedicated`` and
    ``p_dedicated`` (the vertical segment r = 1 from the triple point up to ``p_max``; empty if
    r = 1 is outside [r_min, r_max]), and ``triple_point`` = array([1, 4/7]).
    """
    if spacing == "log":
        r = np.geomspace(r_min, r_max, num)
    elif spacing == "linear":
        r = np.linspace(r_min, r_max, num)
    else:
        raise ValueError(f"spacing {spacing!r} is not 'log' or 'linear'")
    r_tp, p_tp = TRIPLE_POINT
    inside = r_min <= r_tp <= r_max
    return {
        "r": r,
        "p_superposition": superposition_boundary(r),
        "r_dedicated": np.array([r_tp, r_tp]) if inside else np.array([]),
        "p_dedicated": np.array([p_tp, p_max]) if inside else np.array([]),
        "triple_point": np.array([r_tp, p_tp]),
    }


def loss_crossover(
    r=None,
    p=None,
    num: int = 300,
    reduction: str = "mean",
    lo: float | None = None,
    hi: float | None = None,
    include_extra: bool = False,
) -> dict[str, np.ndarray]:
    """Closed-form losses along a line through the diagram, for a first-order-transition panel.

    Give exactly one of ``r`` (sweep density p over [lo, hi], default [0.01, 1], log-spaced) or
    ``p`` (sweep r over [lo, hi], default [0.1, 10], log-spaced). Returns the swept axis (``p`` or
    ``r``), each solution's loss (``SOLUTIONS`` keys, plus extras if asked), ``best`` (lowest loss),
    ``phase`` (its index) and ``crossings``: the swept values where the winning solution changes
    (the losses cross there with different slopes, so the minimum has a kink: first order).
    ``analysis.theory.n2m1_relaxed.relaxed_superposition_loss`` gives the relaxed antipodal pair's loss
    along the same line (what trained superposed models reach).
    """
    if (r is None) == (p is None):
        raise ValueError("give exactly one of r (sweep p) or p (sweep r)")
    if r is not None:
        axis = "p"
        xs = np.geomspace(lo or 0.01, hi or 1.0, num)
        grid_p, grid_r = xs, np.full(num, float(r))
        crossings = [float(superposition_boundary(r))]
    else:
        axis = "r"
        xs = np.geomspace(lo or 0.1, hi or 10.0, num)
        grid_p, grid_r = np.full(num, float(p)), xs
        crossings = _crossings_in_r(float(p))
    crossings = [c for c in crossings if xs[0] <= c <= xs[-1]]
    losses = solution_losses(grid_p, grid_r, reduction=reduction, include_extra=include_extra)
    main = np.stack([losses[name] for name in SOLUTIONS])
    return {
        axis: xs,
        **losses,
        "best": main.min(axis=0),
        "phase": main.argmin(axis=0),
        "crossings": np.array(crossings),
    }


def _crossings_in_r(p: float) -> list[float]:
    """Values of r where the winner changes at fixed density p (inverting the boundaries)."""
    if p >= TRIPLE_POINT[1]:
        return [1.0]
    # p = 4r/(2+5r) ⇔ r = 2p/(4−5p) (r ≤ 1);  p = 4/(5+2r) ⇔ r = (4−5p)/(2p) (r ≥ 1).
    return [2 * p / (4 - 5 * p), (4 - 5 * p) / (2 * p)]
