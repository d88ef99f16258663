"""Compressed computation (``model.kind=cc_residual``; docs/science/compressed-computation.md):
the naive baseline's exact loss and the p → 0 limit of what any residual MLP can do (numpy and
scipy only).

Every label construction asks the MLP to output y = ReLU(x) − N x on top of the residual's own
M x, with N symmetric and zero on the diagonal (N = M − I for ``embed``, 0 for ``clean``, a random
matrix of the same Frobenius norm for ``mixing``). Inputs: x_i = 0 with probability 1 − p_i, else
U[−1, 1], independently; the loss is the mean over the n outputs of I_i (ŷ_i − y_i)².

**Naive baseline** (``naive_loss``): m neurons, each reading one feature alone and writing to that
feature's output alone, the other features ignored. Write y_i = ReLU(x_i) + c_i x_i + ν_i with
c_i = −N_ii and ν_i = −Σ_{j≠i} N_ij x_j, which is independent of x_i with mean 0, so no function of
x_i reduces E[ν_i²] = Σ_{j≠i} N_ij² p_j/3 and it adds to every output whatever the neurons do.
With E[ReLU(x)²] = E[min(x, 0)²] = p/6:
- an ignored feature costs ((1 + c)² + c²) p/6;
- a neuron b·ReLU(a x_i) reading +x_i (a > 0) is best at ab = 1 + c and costs c² p/6; reading −x_i
  it is best at ab = c and costs (1 + c)² p/6: a covered feature costs min(c², (1 + c)²) p/6.
The neurons go to the m features with the largest I_i p_i max(c_i², (1 + c_i)²). With a zero
diagonal every weight is ab = 1 and

    L_naive = (n − m)/n · p/6 + (p/3) ‖N‖_F² / n     (equal p, unit importance),

exactly linear in p (no two neurons ever interact).

**The p → 0 limit** (``p0_bound``). As p → 0 almost every non-zero input has one active feature,
x = t e_i. With no biases every network here is positively homogeneous: its output is t g(e_i)
for t > 0 and |t| g(−e_i) for t < 0, while the labels are t(e_i − N_i) and |t| N_i (N_i: column
i). So L/p → (1/6n) ‖G − T‖²_F with T = [I − N, N] (n × 2n) and G the outputs on the 2n unit
inputs. G = Σ_l B_l H_l has rank at most m whatever the depth (the output is linear in the m
neurons), so by Eckart–Young

    lim L/p ≥ (1/6n) Σ_{k>m} σ_k(T)².

TTᵀ = I − 2N + 2N², so σ² = 1 − 2λ + 2λ² over N's eigenvalues λ; as tr N = 0,
naive − bound = (1/6n) Σ_{top m} 2λ(λ − 1) over the m eigenvalues with the largest 1 − 2λ + 2λ²:
positive whenever N has eigenvalues outside [0, 1]. With clean labels (N = 0) the bound is the
naive loss: no bias-free residual MLP of any depth beats the naive baseline as p → 0. With mixing
it may, by up to that margin. ``p0_optimum`` is what one ReLU layer reaches on the p → 0 objective
(a local optimum: between the bound and the naive loss; Bhagat et al.'s semi-NMF baseline is of
this kind).
"""

from __future__ import annotations

import numpy as np

RELU_SQ = 1.0 / 6.0  # E[ReLU(x)²] = E[min(x, 0)²] per unit density, x ~ U[−1, 1] when active
X_SQ = 1.0 / 3.0  # E[x²] per unit density


def _per_feature(value, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.float64), (n,)).copy()


def naive_parts(N, p, m: int, importance=None) -> dict:
    """The naive baseline in parts (module docstring): per feature its own-label cost when
    ignored and when covered, the mixing cost E[ν_i²], which features the m neurons cover, and
    each neuron's gain ab. ``p`` and ``importance`` are numbers or per-feature arrays."""
    N = np.asarray(N, np.float64)
    n = N.shape[0]
    p_F, I_F = _per_feature(p, n), _per_feature(1.0 if importance is None else importance, n)
    c = -np.diag(N)
    off = N - np.diag(np.diag(N))
    ignored = ((1.0 + c) ** 2 + c**2) * p_F * RELU_SQ
    covered = np.minimum(c**2, (1.0 + c) ** 2) * p_F * RELU_SQ
    mixing = (off**2) @ p_F * X_SQ
    order = np.argsort(-(I_F * (ignored - covered)), kind="stable")
    chosen = np.zeros(n, bool)
    chosen[order[: min(m, n)]] = True
    gain = np.where(c**2 <= (1.0 + c) ** 2, 1.0 + c, c)  # ab, reading +x_i or −x_i
    return {
        "ignored": ignored,
        "covered": covered,
        "mixing": mixing,
        "chosen": chosen,
        "gain": gain,
        "importance": I_F,
    }


def naive_loss(N, p, m: int, importance=None) -> float:
    """The best naive model's exact expected loss (mean over the n outputs)."""
    parts = naive_parts(N, p, m, importance)
    own = np.where(parts["chosen"], parts["covered"], parts["ignored"])
    return float(np.mean(parts["importance"] * (own + parts["mixing"])))


def naive_loss_clean(n: int, m: int, p) -> float:
    """The naive loss with clean labels, (n − m)/n · p/6 (Bhagat et al.'s reference line)."""
    return max(n - m, 0) / n * float(p) * RELU_SQ


def p0_targets(N) -> np.ndarray:
    """T = [I − N, N] (n × 2n): the labels on the unit inputs +e_i and −e_i."""
    N = np.asarray(N, np.float64)
    return np.concatenate([np.eye(len(N)) - N, N], axis=1)


def p0_bound(N, m: int) -> float:
    """Lower bound on lim_{p→0} L/p for any bias-free residual MLP with m neurons (unit
    importance): (1/6n) Σ_{k>m} σ_k(T)²."""
    s = np.linalg.svd(p0_targets(N), compute_uv=False)
    return float(RELU_SQ * np.sum(s[m:] ** 2) / len(N))


def p0_naive(N, m: int) -> float:
    """lim L/p of the naive baseline (it is exactly linear in p)."""
    return naive_loss(N, 1.0, m)


def p0_loss(A, B, N) -> float:
    """lim L/p of the one-layer model ŷ − Mx = B ReLU(A x): (1/6n)(‖B ReLU(A) − (I − N)‖² +
    ‖B ReLU(−A) − N‖²)."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    G = B @ np.concatenate([np.maximum(A, 0.0), np.maximum(-A, 0.0)], axis=1)
    return float(RELU_SQ * np.sum((G - p0_targets(N)) ** 2) / len(N))


def p0_optimum(N, m: int, restarts: int = 4, seed: int = 0, maxiter: int = 3000) -> dict:
    """The best of ``restarts`` local optima of the one-layer p → 0 objective (``p0_loss``),
    L-BFGS from the naive solution and from random starts: {"loss", "A", "B"}. An upper bound on
    the one-layer optimum; ``p0_bound`` is a lower bound on every depth's."""
    from scipy.optimize import minimize

    N = np.asarray(N, np.float64)
    n = len(N)
    T = p0_targets(N)
    scale = RELU_SQ / n

    def objective(theta):
        A, B = theta[: m * n].reshape(m, n), theta[m * n :].reshape(n, m)
        Hp, Hm = np.maximum(A, 0.0), np.maximum(-A, 0.0)
        R = B @ np.concatenate([Hp, Hm], axis=1) - T
        gB = 2.0 * R @ np.concatenate([Hp, Hm], axis=1).T
        gH = 2.0 * B.T @ R
        gA = gH[:, :n] * (A > 0) - gH[:, n:] * (A < 0)
        return scale * np.sum(R**2), scale * np.concatenate([gA.ravel(), gB.ravel()])

    rng = np.random.default_rng(seed)
    starts = []
    k = min(m, n)
    A0, B0 = np.zeros((m, n)), np.zeros((n, m))
    A0[np.arange(k), np.arange(k)] = 1.0
    B0[np.arange(k), np.arange(k)] = 1.0
    starts.append(np.concatenate([A0.ravel(), B0.ravel()]))
    for _ in range(max(restarts - 1, 0)):
        starts.append(rng.normal(scale=1.0 / np.sqrt(n), size=m * n + n * m))
    best = None
    for theta0 in starts:
        result = minimize(
            objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter}
        )
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None  # starts holds the naive solution at least
    A, B = best.x[: m * n].reshape(m, n), best.x[m * n :].reshape(n, m)
    return {"loss": float(best.fun), "A": A, "B": B}


def mixing_size(N) -> float:
    """σ: the root mean square of N's off-diagonal entries (≈ 1/√d for the embedding's M − I)."""
    N = np.asarray(N, np.float64)
    n = len(N)
    off = N - np.diag(np.diag(N))
    return float(np.sqrt(np.sum(off**2) / max(n * (n - 1), 1)))
