"""Local relaxation of the hand-built n=2, m=1 solutions of ``analysis.theory.n2m1`` on the exact
expected loss of ``analysis.theory.n2m1_exact`` (numpy only, no scipy).

``optimise_params`` descends from any (W, b); ``relaxed_solutions`` relaxes each start. The relaxed
antipodal pair beats its closed form near the triple point, so trained models superpose somewhat
above ``superposition_boundary``.
"""

from __future__ import annotations

import numpy as np

from analysis.phases import PhaseThresholds, feature_phase
from analysis.theory.n2m1 import SUPERPOSITION, _scale, solution_params, superposition_boundary
from analysis.theory.n2m1_exact import _split, expected_loss


def optimise_params(
    W0,
    b0,
    p,
    r,
    tol: float = 1e-10,
    max_iter: int = 300,
    max_rounds: int = 30,
    reduction: str = "sum",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local minimum of ``expected_loss`` over (w1, w2, b1, b2) reached by descent from (W0, b0),
    vectorised over any leading axes.

    BFGS on the exact loss (central-difference gradients; Armijo backtracking with all trial
    steps evaluated in one batch), then a probe of 64 small steps (±coordinate and ±diagonal
    directions, sizes 1e-2 and 1e-3). The loss is only C¹ and piecewise smooth, and hand-built
    solutions can be saddles (zero gradient, so BFGS alone would stay put): when a probe finds a
    lower loss, BFGS restarts from there. It ends in the minimum of a basin (what gradient
    training from that start would find, weight decay aside), not a proven global one. Exactly
    symmetric starts at r = 1 stay symmetric if the symmetric point is a minimum along the probes.
    Returns W (..., 1, 2), b (..., 2) and the loss.
    """
    w1, w2, b1, b2 = _split(W0, b0)
    arrays = np.broadcast_arrays(
        w1, w2, b1, b2, np.asarray(p, dtype=float), np.asarray(r, dtype=float)
    )
    shape = arrays[0].shape
    x = np.stack([a.reshape(-1) for a in arrays[:4]], -1).astype(float)
    p_flat, r_flat = arrays[4].reshape(-1), arrays[5].reshape(-1)

    def f(z, idx):  # z (k, j, 4) for the models idx (k,)
        return expected_loss(z[..., :2], z[..., 2:], p_flat[idx, None], r_flat[idx, None])

    everyone = np.arange(len(x))
    fx = f(x[:, None, :], everyone)[:, 0]
    idx = everyone
    for _ in range(max_rounds):
        x[idx], fx[idx] = _bfgs(f, x[idx], fx[idx], idx, tol, max_iter)
        probes = x[idx, None, :] + _PROBES
        trial = f(probes, idx)
        k = np.argmin(trial, -1)
        f_best = trial[np.arange(len(idx)), k]
        moved = f_best < fx[idx] - 1e-12 * np.abs(fx[idx])
        if not moved.any():
            break
        idx, k, f_best, probes = idx[moved], k[moved], f_best[moved], probes[moved]
        x[idx] = probes[np.arange(len(idx)), k]
        fx[idx] = f_best
    x = x.reshape(shape + (4,))
    return x[..., None, :2], x[..., 2:], _scale(reduction) * fx.reshape(shape)


def _probe_directions() -> np.ndarray:
    eye = np.eye(4)
    dirs = [eye, -eye]
    for i in range(4):
        for j in range(i + 1, 4):
            for si in (1, -1):
                for sj in (1, -1):
                    dirs.append(((si * eye[i] + sj * eye[j]) / np.sqrt(2))[None])
    d = np.concatenate(dirs)
    return np.concatenate([1e-2 * d, 1e-3 * d])


_PROBES = _probe_directions()
_EYE = np.eye(4)
_DIFF = 1e-6 * np.concatenate([_EYE, -_EYE])
_ALPHAS = 2.0 ** -np.arange(0, 24)


def _gradient(f, x, idx):
    vals = f(x[:, None, :] + _DIFF, idx)
    return (vals[:, :4] - vals[:, 4:]) / (2 * _DIFF[0, 0])


def _bfgs(f, x, fx, idx, tol, max_iter):
    """BFGS on the rows of x (k, 4); only rows still improving are evaluated."""
    x, fx = x.copy(), fx.copy()
    g = _gradient(f, x, idx)
    H = np.broadcast_to(_EYE, (len(x), 4, 4)).copy()
    live = np.arange(len(x))
    for _ in range(max_iter):
        if not len(live):
            break
        xl, fl, gl, Hl = x[live], fx[live], g[live], H[live]
        d = -np.einsum("kij,kj->ki", Hl, gl)
        slope = np.sum(gl * d, -1)
        bad = slope >= 0  # not a descent direction: restart from steepest descent
        Hl[bad] = _EYE
        d[bad] = -gl[bad]
        slope[bad] = -np.sum(gl[bad] ** 2, -1)
        trial = f(xl[:, None, :] + _ALPHAS[:, None] * d[:, None, :], idx[live])
        armijo = trial <= fl[:, None] + 1e-4 * _ALPHAS * slope[:, None]
        k = np.where(armijo.any(-1), np.argmax(armijo, -1), np.argmin(trial, -1))
        f_new = trial[np.arange(len(live)), k]
        ok = f_new < fl
        s = _ALPHAS[k][:, None] * d
        keep = ok & (np.max(np.abs(s), -1) >= tol) & (fl - f_new > 1e-16 * np.abs(fl))
        # Accept every improving step; continue only with rows that moved meaningfully.
        live_ok, s_ok = live[ok], s[ok]
        x_new = xl[ok] + s_ok
        g_new = _gradient(f, x_new, idx[live_ok])
        y = g_new - gl[ok]
        sy = np.sum(s_ok * y, -1)
        upd = sy > 1e-16
        rho = np.where(upd, 1.0 / np.where(upd, sy, 1.0), 0.0)[:, None, None]
        V = _EYE - rho * s_ok[:, :, None] * y[:, None, :]
        H_new = V @ Hl[ok] @ np.swapaxes(V, -1, -2) + rho * s_ok[:, :, None] * s_ok[:, None, :]
        H[live_ok] = np.where(upd[:, None, None], H_new, Hl[ok])
        x[live_ok], fx[live_ok], g[live_ok] = x_new, f_new[ok], g_new
        live = live[keep]
    return x, fx


def phase_of(W, thresholds: PhaseThresholds = PhaseThresholds()) -> np.ndarray:
    """Phase of feature 2 in an m=1 model W (..., 1, 2) or (..., 2), by the same rule and
    thresholds as every figure (``analysis.phases.feature_phase``)."""
    W = np.asarray(W, dtype=float)
    W = W if W.shape[-2:] == (1, 2) else W[..., None, :]
    return feature_phase(W, thresholds)[..., 1]


RELAXED_STARTS = (
    "not_learned",
    "dedicated",
    "superposition",
    "confused",
    "lopsided_same_1",
    "lopsided_same_2",
    "lopsided_opposite_1",
    "lopsided_opposite_2",
)
# Starts beyond the hand-built solutions. Near r = 1 the best solutions are lopsided (one feature
# strong, the other weaker, both with biases) and exactly symmetric starts keep their symmetry,
# so starts near those minima are added, with either sign and either feature strong.
_LOPSIDED = {
    "lopsided_same_1": ((0.95, 0.4), (-0.1, 0.1)),
    "lopsided_same_2": ((0.4, 0.95), (0.1, -0.1)),
    "lopsided_opposite_1": ((0.93, -0.45), (0.2, 0.45)),
    "lopsided_opposite_2": ((-0.45, 0.93), (0.45, 0.2)),
}


def start_params(name: str, p) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of a start in ``RELAXED_STARTS``: a hand-built solution or a lopsided one."""
    if name in _LOPSIDED:
        (w1, w2), (b1, b2) = _LOPSIDED[name]
        one = np.ones_like(np.asarray(p, dtype=float))
        return np.stack([w1 * one, w2 * one], -1)[..., None, :], np.stack([b1 * one, b2 * one], -1)
    return solution_params(name, p)


def relaxed_solutions(
    p, r, reduction: str = "sum", names=RELAXED_STARTS, **optimise
) -> dict[str, dict]:
    """Each start in ``names`` relaxed by ``optimise_params`` to a minimum of the exact loss.

    Returns {name: {"W", "b", "loss", "phase"}}: optimised parameters, their loss (``reduction``)
    and the phase of feature 2 they end in (``phase_of``). What relaxing does (numerical
    findings, checked against 30 random starts on a 25×25 grid of r ∈ [0.1, 10], p ∈ [0.03, 1],
    none of which found a lower loss than the best of these eight):

    - ``not_learned`` / ``dedicated`` are stationary points with exactly the closed-form loss
      (W=(1,0) reproduces x1 exactly; b2 = p/2 is the best constant). not_learned is a saddle
      once r exceeds a threshold r*(p): moving w2 = −h, b2 = p/2 + hp/2, w1 = 1 + δh, b1 = βh
      (δ, β chosen by a second-order expansion) lowers the loss. r* ≈ 0.102, 0.319, 0.550, 0.773,
      0.942 at p = 0.1, 0.3, 0.5, 0.7, 0.9 (mirror r → 1/r for dedicated), below the analytic
      superposition boundary for p < 4/7 but *below 1* for p > 4/7: near r = 1 at high density
      the closed-form winner is not even a local minimum. Random probes find no descent below r*.
      Deep in the other phases the start relaxes into another solution (``phase`` says which);
      just above r* the descent cone is narrow and the local search may not leave the saddle.
    - ``superposition`` (antipodal) is not stationary (see ``solution_losses``): biases become
      positive and the weights rescale, unequally for r ≠ 1. The relaxed loss is well below
      (1 + r)p²/6 near the boundary (at r = 1: 14 % lower at p = 4/7, 2 % at p = 0.3, 0.4 % at
      p = 0.1), so superposition wins somewhat above ``superposition_boundary``: that curve is the
      crossing of the *unrelaxed* solutions (see ``relaxed_superposition_boundary``). On the
      dense side it can relax into dedicated / not learned.
    - ``confused`` W=(1/√2,1/√2), b=0 slides off for r ≠ 1; at r = 1 it is a saddle that this
      local search does not leave (the descent needs weights and biases to move together).
    - ``lopsided_*``: near r = 1 and at high density the best solutions have one feature strong,
      the other partly represented with a positive bias, opposite signs (same sign only ties at
      p = 1, where the sign of a weight can be absorbed into the bias since x ~ U[0,1] always):
      e.g. r = 1, p = 0.8: W ≈ (0.93, −0.44), b ≈ (0.21, 0.49), loss 1.1 % below σ². Which of a
      mirror pair wins at exactly r = 1 is a tie, so the phase there is ambiguous.

    ``optimise`` is passed to ``optimise_params``. Cost: roughly 30 ms per (p, r) point.
    """
    p, r = np.broadcast_arrays(np.asarray(p, dtype=float), np.asarray(r, dtype=float))
    out = {}
    for name in names:
        W0, b0 = start_params(name, p)
        W, b, loss = optimise_params(W0, b0, p, r, reduction=reduction, **optimise)
        out[name] = {"W": W, "b": b, "loss": loss, "phase": phase_of(W)}
    return out


def relaxed_phase(p, r, reduction: str = "sum", **optimise) -> tuple[np.ndarray, np.ndarray]:
    """Phase of feature 2 (``phase_of``) in the lowest-loss relaxed solution, and that loss.

    The numerical counterpart of ``predicted_phase``: what a model that found the best minimum
    would show. Best found from ``RELAXED_STARTS``, not a proven global optimum."""
    sols = relaxed_solutions(p, r, reduction=reduction, **optimise)
    losses = np.stack([s["loss"] for s in sols.values()])
    phases = np.stack([s["phase"] for s in sols.values()])
    best = np.argmin(losses, axis=0)
    return np.take_along_axis(phases, best[None], 0)[0], np.take_along_axis(losses, best[None], 0)[
        0
    ]


def relaxed_superposition_boundary(r, iters: int = 12, **optimise) -> np.ndarray:
    """Density below which the best *relaxed* solution has feature 2 in superposition.

    Bisection on ``relaxed_phase`` between 0.9 × ``superposition_boundary(r)`` and 1, assuming one
    crossing (NaN where the bracket does not hold). Precision 2^-iters. It lies above the
    analytic curve (r = 0.2: 0.296 against 0.267; r = 0.5: 0.485 against 0.444; r = 0.8: 0.597
    against 0.533) and is symmetric under r → 1/r; at r = 1 it depends on the tie between
    mirror-image lopsided solutions and on the ``phase_of`` thresholds (0.716 with the defaults).
    Slow: about 8 × iters relaxations per r value (~1 s each).
    """
    r = np.asarray(r, dtype=float)
    lo = 0.9 * superposition_boundary(r)
    hi = np.ones_like(r)
    valid = (relaxed_phase(lo, r, **optimise)[0] == SUPERPOSITION) & (
        relaxed_phase(hi, r, **optimise)[0] != SUPERPOSITION
    )
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        sup = relaxed_phase(mid, r, **optimise)[0] == SUPERPOSITION
        lo = np.where(sup, mid, lo)
        hi = np.where(sup, hi, mid)
    return np.where(valid, 0.5 * (lo + hi), np.nan)


def relaxed_superposition_loss(p, r, reduction: str = "mean") -> np.ndarray:
    """Loss of the antipodal pair relaxed by ``optimise_params`` (what trained superposed models
    reach), NaN where it relaxes out of superposition; about 4 ms per point."""
    sol = relaxed_solutions(p, r, reduction=reduction, names=("superposition",))["superposition"]
    return np.where(sol["phase"] == SUPERPOSITION, sol["loss"], np.nan)
