"""Superposition metrics of a weight matrix W (m×n, column W_i per feature), docs/science/metrics.md.

Every function takes W with any leading batch axes (``...×m×n``) and works on numpy and JAX
arrays alike, so the same code serves snapshots inside the compiled training loop and the
analysis of thousands of stored models.
"""

from __future__ import annotations

import numpy as np

# Below this squared norm a feature counts as absent: its capacity and interference are 0.
NORM_EPS = 1e-12


def _xp(a):
    if isinstance(a, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def gram(W):
    """WᵀW, the n×n matrix of feature overlaps W_i·W_j."""
    xp = _xp(W)
    return xp.swapaxes(W, -1, -2) @ W


def feature_norms(W):
    """‖W_i‖, representation strength of each feature."""
    xp = _xp(W)
    return xp.sqrt(xp.sum(W * W, axis=-2))


def _overlaps(W):
    """(‖W_i‖², Σ_j (W_i·W_j)²) per feature. The second is W_iᵀ (W Wᵀ) W_i: an m×m product, so
    the cost is O(n m²) and never builds the n×n Gram matrix (n = 10,000 in Henighan et al.)."""
    xp = _xp(W)
    M = W @ xp.swapaxes(W, -1, -2)  # m×m
    return xp.sum(W * W, axis=-2), xp.sum(W * (M @ W), axis=-2)


def capacity(W):
    """C_i = (W_i·W_i)² / Σ_j (W_i·W_j)², the feature dimensionality D_i. 0 for a zero vector."""
    xp = _xp(W)
    diag, total = _overlaps(W)
    return xp.where(total > NORM_EPS**2, diag**2 / xp.maximum(total, NORM_EPS**2), 0.0)


def capacity_for_gradients(W):
    """``capacity`` written as C_i = ‖W_i‖² / (Ŵ_iᵀ WWᵀ Ŵ_i), whose gradient stays finite as W_i
    shrinks to 0 (a penalty that pushes C_i to 0 does exactly that). In ``capacity``'s form,
    (W_i·W_i)² / Σ_j (W_i·W_j)², the derivative divides by the denominator squared, which
    underflows in float32 once ‖W_i‖ ≈ 1e-12 (0/0: NaN). The same values up to rounding."""
    xp = _xp(W)
    sq = xp.sum(W * W, axis=-2)
    unit = W / xp.sqrt(xp.maximum(sq, _TINY))[..., None, :]
    M = W @ xp.swapaxes(W, -1, -2)  # m×m
    spread = xp.sum(unit * (M @ unit), axis=-2)  # Σ_j (Ŵ_i·W_j)² ≥ ‖W_i‖²
    return sq / xp.maximum(spread, _TINY)


_TINY = 1e-18  # and its square are normal float32 numbers; only a norm below 1e-9 meets it


def interference(W):
    """Σ_{j≠i} (Ŵ_i·W_j)², Ŵ_i = W_i/‖W_i‖: how much other features leak onto feature i."""
    xp = _xp(W)
    diag, total = _overlaps(W)
    off2 = total - diag**2
    return xp.where(diag > NORM_EPS, xp.maximum(off2, 0.0) / xp.maximum(diag, NORM_EPS), 0.0)


def polysemanticity(W):
    """sqrt of interference: the notebook's colour for superposed features."""
    return _xp(W).sqrt(interference(W))


def dimensions_per_feature(W):
    """D* = m / ‖W‖_F²."""
    xp = _xp(W)
    m = W.shape[-2]
    return m / xp.sum(W * W, axis=(-2, -1))


def datapoint_dimensionality(W, X):
    """Dimensionality of each data point's hidden vector h_t = W x_t (Henighan et al. 2023):
    ‖h_t‖⁴ / Σ_s (h_t·h_s)², the feature-dimensionality formula applied to the columns of
    H = W X. ``X`` is n×T (one data point per column); T points on a regular T-gon in 2-D give m/T."""
    return capacity(W @ X)
