"""A new target every sample (``data.kind=random_target``; docs/science/open-questions.md, issue 17 item
2): the
loss covers x_t only, t uniform over the n features, x_t ~ U[0, 1], every other feature
Bernoulli(p)·U[0, s] with s = ``noise_scale`` (0.1).

Linear model x' = WᵀWx + b, exactly. Write g_t = ‖W_t‖², G = WᵀW, v_T = Var x_t = 1/12 and
v_j = Var x_j = p_j(s²/3 − p_j s²/4) for a background feature. The bias b_t only ever meets
examples whose target is t, so it cancels their mean error, and

    L(W) = (1/n) Σ_t [ v_T (1 − g_t)² + Σ_{j≠t} v_j G_tj² ]   (``linear_target_loss``).

With equal densities let ρ = v_j/v_T = p(0.04 − 0.03p) for s = 0.1. Since Σ_t Σ_j G_tj² = tr(M²)
with M = WWᵀ (m×m) and tr(M²) ≥ tr(M)²/m = (Σ g)²/m, and Σ g² ≥ (Σ g)²/n,

    n·L/v_T ≥ Σ (1 − g_t)² + ρ[(Σ g)²/m − Σ g²] ≥ n[(1 − g)² + k g²],  k = ρ(n/m − 1),

(the second step at fixed Σ g = ng, using 1 − ρ > 0), with equality iff M ∝ I (a tight frame)
and every g_t = g. Minimising over g: g = 1/(1 + k) and L = v_T·k/(1 + k) = (1/12)·k/(1 + k)
(``closed_form``), for n ≥ m. Every equal-norm tight frame attains it: in the plane any n
directions whose doubled angles sum to zero, evenly spaced or not. The loss cannot tell them
apart; the full reconstruction (every output against its input) and whether the target is the
largest output (one-hot accuracy) can.
"""

from __future__ import annotations

import numpy as np

TARGET_VAR = 1.0 / 12.0  # Var U[0, 1]


def background_var(p, noise_scale: float = 0.1):
    """Var of Bernoulli(p)·U[0, s]: p s²/3 − (p s/2)²."""
    p = np.asarray(p, np.float64)
    return p * noise_scale**2 / 3.0 - (p * noise_scale / 2.0) ** 2


def closed_form(n, m, p, noise_scale: float = 0.1) -> dict:
    """The linear model's optimum at equal densities: ρ, k, loss and ‖W_t‖² (module docstring)."""
    rho = background_var(p, noise_scale) / TARGET_VAR
    k = rho * (np.asarray(n, np.float64) / m - 1.0)
    return {"rho": rho, "k": k, "loss": TARGET_VAR * k / (1.0 + k), "norm2": 1.0 / (1.0 + k)}


def linear_target_loss(W_HxF, density_F, noise_scale: float = 0.1, b_F=None) -> float:
    """The exact expected target-only loss of x' = WᵀWx + b; the optimal bias when ``b_F`` is
    None, else the variance terms plus each target's squared mean error."""
    W = np.asarray(W_HxF, np.float64)
    p = np.asarray(density_F, np.float64)
    G = W.T @ W
    g = np.diag(G)
    v_F, mu_F = background_var(p, noise_scale), p * noise_scale / 2.0
    off = G - np.diag(g)
    per_target = TARGET_VAR * (1.0 - g) ** 2 + (off**2) @ v_F
    if b_F is not None:
        per_target = per_target + ((g - 1.0) * 0.5 + off @ mu_F + np.asarray(b_F, np.float64)) ** 2
    return float(np.mean(per_target))


def optimal_bias(W_HxF, density_F, noise_scale: float = 0.1) -> np.ndarray:
    """b_t cancelling the mean error of examples with target t."""
    W = np.asarray(W_HxF, np.float64)
    G = W.T @ W
    g = np.diag(G)
    return -((g - 1.0) * 0.5 + (G - np.diag(g)) @ (np.asarray(density_F) * noise_scale / 2.0))


def tight_frame(angles, norm2: float) -> np.ndarray:
    """2×n W with columns at ``angles`` and squared norm ``norm2`` each."""
    a = np.asarray(angles, np.float64)
    return np.sqrt(norm2) * np.stack([np.cos(a), np.sin(a)])


def frame_deviation(W_HxF) -> float:
    """‖M/c − I‖_F/√m with M = WWᵀ, c = tr M/m: 0 exactly for a tight frame."""
    W = np.asarray(W_HxF, np.float64)
    M = W @ W.T
    m = M.shape[0]
    c = np.trace(M) / m
    return (
        float(np.linalg.norm(M / max(c, 1e-12) - np.eye(m)) / np.sqrt(m)) if c > 0 else float("nan")
    )


def angular_unevenness(W_2xF) -> float:
    """How far n directions in the plane are from evenly spaced: the spread (max − min) of the
    gaps between consecutive doubled angles 2θ (a direction and its negative read the same
    through G² terms), relative to the even gap 2π/n. 0 for evenly spaced lines."""
    W = np.asarray(W_2xF, np.float64)
    doubled = np.sort(np.mod(2.0 * np.arctan2(W[1], W[0]), 2 * np.pi))
    gaps = np.diff(np.concatenate([doubled, doubled[:1] + 2 * np.pi]))
    return float(np.ptp(gaps) / (2 * np.pi / W.shape[1]))
