"""Exact expected loss of any n=2, m=1 ReLU-output model (W, b), and the best bias for a fixed W
(numpy only, no scipy).

``expected_loss`` integrates the loss in closed form per activity pattern; ``monte_carlo_loss``
checks it by sampling. ``analysis.theory.n2m1_relaxed`` lets the hand-built solutions of
``analysis.theory.n2m1`` relax on it.
"""

from __future__ import annotations

import numpy as np

from analysis.theory.n2m1 import _scale

# ---------------------------------------------------------------------------------------------
# Exact expected loss of any (W, b)

# Three-point Gauss–Legendre on [0, 1]: exact for polynomials up to degree 5.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(3)
_GL_X = 0.5 * (_GL_X + 1.0)
_GL_W = 0.5 * _GL_W


def _segment_error(a, c, t):
    """∫₀¹ (t·u − ReLU(a·u + c))² du, elementwise (t a scalar, a and c arrays).

    The ReLU is active on an interval [lo, hi] ⊂ [0, 1]; there the integrand is ((t−a)u − c)²,
    elsewhere t²u². So the integral is t²/3 + [P(u)]_lo^hi with P the antiderivative of
    ((t−a)u − c)² − t²u². At a moving endpoint (au + c = 0) that difference is 0, so the result
    is C¹ in c and a cubic polynomial in c between the values where lo or hi reach 0 or 1.
    """
    a, c = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(c, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        root = np.clip(-c / np.where(a == 0, 1.0, a), 0.0, 1.0)
    lo = np.where(a > 0, root, 0.0)
    hi = np.where(a > 0, 1.0, np.where(a < 0, root, np.where(c > 0, 1.0, 0.0)))
    k = t - a

    def antiderivative(u):
        return (k * k - t * t) * u**3 / 3.0 - k * c * u * u + c * c * u

    return t * t / 3.0 + antiderivative(hi) - antiderivative(lo)


def _mean_segment_error(a, s, c0, t):
    """E_v[∫₀¹ (t·u − ReLU(a·u + s·v + c0))² du] over v ~ U[0, 1], exactly.

    As a function of v the inner integral is a cubic polynomial between the (at most two) values
    of v where c = s·v + c0 crosses 0 or −a; Gauss–Legendre on each piece is therefore exact.
    """
    a, s, c0 = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (a, s, c0)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        safe = np.where(s == 0, 1.0, s)
        v1 = np.where(s == 0, 0.0, np.clip(-c0 / safe, 0.0, 1.0))
        v2 = np.where(s == 0, 0.0, np.clip((-a - c0) / safe, 0.0, 1.0))
    knots = np.stack(
        [np.zeros_like(v1), np.minimum(v1, v2), np.maximum(v1, v2), np.ones_like(v1)], -1
    )
    lo, width = knots[..., :-1, None], np.diff(knots, axis=-1)[..., None]
    v = lo + width * _GL_X
    inner = _segment_error(a[..., None, None], s[..., None, None] * v + c0[..., None, None], t)
    return np.sum(inner * width * _GL_W, axis=(-2, -1))


def _split(W, b):
    W = np.asarray(W, dtype=float)
    b = np.asarray(b, dtype=float)
    if W.ndim >= 2 and W.shape[-2] == 1:
        W = W[..., 0, :]
    if W.shape[-1] != 2 or b.shape[-1] != 2:
        raise ValueError(
            f"need W of shape (..., 1, 2) or (..., 2) and b (..., 2), got {W.shape}, {b.shape}"
        )
    return W[..., 0], W[..., 1], b[..., 0], b[..., 1]


def expected_feature_losses(W, b, p) -> np.ndarray:
    """Exact E[(x_i − x̂_i)²] for each feature (unweighted), shape (..., 2).

    Condition on which features are active: none (probability (1−p)², error ReLU(b_i)²), only x1
    (p(1−p): x̂1 = ReLU(w1² u + b1), x̂2 = ReLU(w1w2 u + b2), 1-D integrals in closed form), only
    x2 (mirror), both (p²: a 2-D integral whose inner integral is closed form and whose outer one
    is a piecewise cubic, integrated exactly). Machine precision, no sampling.
    """
    w1, w2, b1, b2 = _split(W, b)
    p = np.asarray(p, dtype=float)
    q = 1.0 - p
    a11, a22, a12 = w1 * w1, w2 * w2, w1 * w2
    f1 = (
        q * q * np.maximum(b1, 0.0) ** 2
        + p * q * (_segment_error(a11, b1, 1.0) + _segment_error(a12, b1, 0.0))
        + p * p * _mean_segment_error(a11, a12, b1, 1.0)
    )
    f2 = (
        q * q * np.maximum(b2, 0.0) ** 2
        + p * q * (_segment_error(a22, b2, 1.0) + _segment_error(a12, b2, 0.0))
        + p * p * _mean_segment_error(a22, a12, b2, 1.0)
    )
    return np.stack(np.broadcast_arrays(f1, f2), axis=-1)


def expected_loss(W, b, p, r, reduction: str = "sum") -> np.ndarray:
    """Exact expected importance-weighted loss of x̂ = ReLU(WᵀW x + b); broadcasts W's leading
    axes, b's, p and r. See ``expected_feature_losses``."""
    f = expected_feature_losses(W, b, p)
    return _scale(reduction) * (f[..., 0] + np.asarray(r, dtype=float) * f[..., 1])


def monte_carlo_loss(
    W,
    b,
    p: float,
    r: float,
    n_samples: int = 1_000_000,
    seed: int = 0,
    reduction: str = "sum",
    return_stderr: bool = False,
    chunk: int = 1 << 20,
):
    """Monte Carlo estimate of the expected loss of one model (W of shape (1, 2) or (2,), b (2,)).

    Samples x_i = 0 w.p. 1 − p else U[0, 1] with ``numpy.random.default_rng(seed)``. With
    ``return_stderr`` returns (estimate, standard error of the estimate).
    """
    W = np.asarray(W, dtype=float).reshape(1, 2)
    b = np.asarray(b, dtype=float).reshape(2)
    weights = np.array([1.0, float(r)]) * _scale(reduction)
    rng = np.random.default_rng(seed)
    total = total_sq = 0.0
    done = 0
    while done < n_samples:
        size = min(chunk, n_samples - done)
        active = rng.random((size, 2)) < p
        x = np.where(active, rng.random((size, 2)), 0.0)
        xhat = np.maximum((x @ W.T) @ W + b, 0.0)
        err = ((x - xhat) ** 2) @ weights
        total += err.sum()
        total_sq += (err * err).sum()
        done += size
    mean = total / n_samples
    if not return_stderr:
        return mean
    var = max(total_sq / n_samples - mean * mean, 0.0)
    return mean, np.sqrt(var / (n_samples - 1))


# ---------------------------------------------------------------------------------------------
# Numerical optimisation (no scipy): best bias for fixed W, local relaxation of whole solutions


def optimal_bias(
    W, p, bound: float | None = None, grid: int = 401, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Best bias for fixed W at density p, and the resulting per-feature losses, both (..., 2).

    The loss separates over features (b_i only touches x̂_i), so importance does not matter.
    Each 1-D problem is not convex (the ReLU kink), hence a grid over [−bound, bound] (default
    1 + max|w_i|·‖W‖₁) to find the basin, then golden-section search on the bracketing cell.
    """
    W = np.asarray(W, dtype=float)
    if W.ndim >= 2 and W.shape[-2] == 1:
        W = W[..., 0, :]
    W, p = np.broadcast_arrays(W, np.asarray(p, dtype=float)[..., None])
    p = p[..., 0]
    if bound is None:
        bound = (
            1.0 + float(np.max(np.abs(W)) * np.max(np.sum(np.abs(W), axis=-1))) if W.size else 1.0
        )
    bs = np.linspace(-bound, bound, grid)
    best_b = np.empty(W.shape)
    best_f = np.empty(W.shape)
    for i in range(2):

        def f(bi, i=i):
            b = np.zeros(bi.shape + (2,))
            b[..., i] = bi
            return expected_feature_losses(W[..., None, None, :], b, p[..., None])[..., i]

        # f vectorised over a trailing axis of candidate biases.
        vals = f(np.broadcast_to(bs, p.shape + (grid,)))
        j = np.argmin(vals, axis=-1)
        left = bs[np.maximum(j - 1, 0)]
        right = bs[np.minimum(j + 1, grid - 1)]
        lo, hi = _golden(lambda x: f(x[..., None])[..., 0], left, right, tol)
        bi = 0.5 * (lo + hi)
        fb = f(bi[..., None])[..., 0]
        # Keep the grid point if the refinement somehow did worse (flat regions).
        gb = np.take_along_axis(vals, j[..., None], -1)[..., 0]
        best_b[..., i] = np.where(fb <= gb, bi, bs[j])
        best_f[..., i] = np.minimum(fb, gb)
    return best_b, best_f


def _golden(f, lo, hi, tol):
    """Vectorised golden-section search for a minimum of f on [lo, hi]; returns the final bracket."""
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    g = (np.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(200):
        if np.max(hi - lo, initial=0.0) <= tol:
            break
        left = f1 <= f2  # minimum in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        probe = np.where(left, hi - g * (hi - lo), lo + g * (hi - lo))
        fp = f(probe)
        x1, x2, f1, f2 = (
            np.where(left, probe, x2),
            np.where(left, x1, probe),
            np.where(left, fp, f2),
            np.where(left, f1, fp),
        )
    return lo, hi
