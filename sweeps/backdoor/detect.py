"""Detecting a backdoor feature in superposition from hidden vectors alone (issue 17 item 1;
docs/science/open-questions.md), numpy only.

A detector sees hidden vectors h = W x (rows of ``H_NxM``) and a trusted set D of hidden vectors of
inputs with the backdoor off; it scores each h (higher: more anomalous). Scores:

- ``norm``: ‖h‖.
- ``mahalanobis`` (centred, (h − μ)ᵀΣ⁻¹(h − μ)) and uncentred (hᵀS⁻¹h, S = E[hhᵀ]) with D's moments.
- ``dimensionality``: the data-point dimensionality of h among D's points, ‖h‖⁴ / (hᵀMh + ‖h‖⁴) with
  M = Σ_{s∈D} h_s h_sᵀ (Henighan et al.; the memorisation figures' measure).
- ``pursuit_residual``: non-negative pursuit of h over given atoms with at most k of them,
  residual²/‖h‖² (an explanation cost: how much of h k benign features cannot explain).

On a tight frame of benign directions (WWᵀ = cI) with i.i.d. benign features, Σ = Var(x)·cI, so the
centred score is ‖h − μ‖²/(Var(x)c): it ranks as the distance to D's mean, and exactly as ‖h‖ when
the frame also sums to zero (W·1 = 0, e.g. a regular polygon; then μ = 0 and S ∝ I too). A
frame that does not sum to zero separates the two (``mahalanobis`` ≠ ``norm`` ranking).

Metrics: ``auroc`` (Mann–Whitney, ties counted half) and ``tpr_at_fpr`` (the share of positives
above the negatives' (1 − fpr) quantile).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def moments(H_NxM: np.ndarray) -> dict:
    """D's mean μ, covariance Σ and second moment S of its hidden vectors."""
    H = np.asarray(H_NxM, np.float64)
    mean = H.mean(axis=0)
    second = H.T @ H / len(H)
    return {
        "mean": mean,
        "cov": second - np.outer(mean, mean),
        "second": second,
        "gram_sum": H.T @ H,
    }


def norm(H_NxM) -> np.ndarray:
    return np.linalg.norm(np.asarray(H_NxM, np.float64), axis=1)


RIDGE = 1e-9  # relative to the mean eigenvalue: a direction D never visits scores huge, not 0


def _quadratic_form(V_NxM, A_MxM) -> np.ndarray:
    m = A_MxM.shape[0]
    inverse = np.linalg.inv(A_MxM + RIDGE * max(np.trace(A_MxM) / m, EPS) * np.eye(m))
    return np.einsum("nm,mk,nk->n", V_NxM, inverse, V_NxM)


def mahalanobis(H_NxM, mom: dict, centred: bool = True) -> np.ndarray:
    H = np.asarray(H_NxM, np.float64)
    return (
        _quadratic_form(H - mom["mean"], mom["cov"])
        if centred
        else _quadratic_form(H, mom["second"])
    )


def dimensionality(H_NxM, mom: dict) -> np.ndarray:
    H = np.asarray(H_NxM, np.float64)
    sq = np.sum(H * H, axis=1)
    inner = np.einsum("nm,mk,nk->n", H, mom["gram_sum"], H)
    return np.where(sq > EPS, sq**2 / np.maximum(inner + sq**2, EPS), 0.0)


def _nnls(G_BxKxK: np.ndarray, c_BxK: np.ndarray, sweeps: int = 60) -> np.ndarray:
    """argmin_{a ≥ 0} aᵀGa − 2cᵀa per row, by cyclic coordinate descent (exact in the limit; k is
    small)."""
    a = np.zeros_like(c_BxK)
    diag = np.maximum(np.einsum("bkk->bk", G_BxKxK), EPS)
    for _ in range(sweeps):
        for j in range(c_BxK.shape[1]):
            grad = c_BxK[:, j] - np.einsum("bk,bk->b", G_BxKxK[:, j], a)
            a[:, j] = np.maximum(0.0, a[:, j] + grad / diag[:, j])
    return a


def pursuit(H_NxM, atoms_MxA, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative orthogonal pursuit of each h over the atoms with at most k of them: each step
    adds the unchosen atom most correlated with the residual, then refits every chosen coefficient
    by non-negative least squares (an unhelpful atom gets 0). Returns (coefficients N×A,
    residual N×M)."""
    H = np.asarray(H_NxM, np.float64)
    A = np.asarray(atoms_MxA, np.float64)
    unit = A / np.maximum(np.linalg.norm(A, axis=0), EPS)
    N, n_atoms = len(H), A.shape[1]
    rows = np.arange(N)
    chosen = np.zeros((N, 0), int)
    coef = np.zeros((N, 0))
    residual = H.copy()
    for _ in range(min(k, n_atoms)):
        corr = residual @ unit
        corr[rows[:, None], chosen] = -np.inf  # each atom once
        chosen = np.concatenate([chosen, np.argmax(corr, axis=1)[:, None]], axis=1)
        S = A[:, chosen].transpose(1, 0, 2)  # N×M×j
        coef = _nnls(np.einsum("nmj,nmk->njk", S, S), np.einsum("nmj,nm->nj", S, H))
        residual = H - np.einsum("nmj,nj->nm", S, coef)
    full = np.zeros((N, n_atoms))
    for j in range(chosen.shape[1]):
        full[rows, chosen[:, j]] += coef[:, j]
    return full, residual


def pursuit_residual(H_NxM, atoms_MxA, k: int) -> np.ndarray:
    """residual²/‖h‖² of ``pursuit`` (0 for h = 0: nothing to explain)."""
    _, residual = pursuit(H_NxM, atoms_MxA, k)
    sq = np.sum(np.asarray(H_NxM, np.float64) ** 2, axis=1)
    return np.where(sq > EPS, np.sum(residual**2, axis=1) / np.maximum(sq, EPS), 0.0)


def auroc(positive, negative) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann–Whitney U from
    average ranks)."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    _values, inverse, counts = np.unique(
        np.concatenate([pos, neg]), return_inverse=True, return_counts=True
    )
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based, ties averaged
    rank_sum = average_rank[inverse[: len(pos)]].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def tpr_at_fpr(positive, negative, fpr: float = 0.01) -> float:
    """Share of positives scoring above the threshold that (1 − fpr) of the negatives reach."""
    threshold = np.quantile(np.asarray(negative, np.float64), 1.0 - fpr)
    return float(np.mean(np.asarray(positive, np.float64) > threshold))
