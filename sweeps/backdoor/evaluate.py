"""Test sets and detector scores for a backdoor feature in superposition (issue 17 item 1), numpy
only. The model is TMS's ReLU model with n = n_b + 1 features, the last one the backdoor; a
detector sees hidden vectors h = W x and a trusted set D (inputs with the backdoor off). Scores
come from ``sweeps.backdoor.detect``.

Test sets (``N`` inputs each; benign features active with probability p, U[0, 1] when active):

- positives ``alone``: the backdoor alone, x_bd ~ U[0, 1], every benign feature 0;
- positives ``background``: the backdoor on an input from D;
- negatives ``fresh``: fresh inputs from D (an input with no active feature included: it is
  benign, and at p = 0.02, n_b = 8 it is 85% of them);
- negatives ``dense``: benign features at density min(3p, 1), unusual combinations of benign
  features;
- negatives ``mimic``: for each ``alone`` positive, the benign input with at most k = m − 1 active
  features that best reproduces its h (non-negative pursuit over the benign columns, values clipped
  to [0, 1] so that it is an input D could hold).
"""

from __future__ import annotations

import numpy as np

from sweeps.backdoor import detect

POSITIVES = ("alone", "background")
NEGATIVES = ("fresh", "dense", "mimic")
DETECTORS = (
    "norm",
    "mahalanobis",
    "mahalanobis_uncentred",
    "dimensionality",
    "oracle",
    "sae_error",
    "sae_l1",
    "sae_pursuit",
)
REPRESENTED = 0.5  # ‖W_bd‖ at or above which the backdoor counts as represented


def benign(rng: np.random.Generator, n_benign: int, p: float, count: int) -> np.ndarray:
    """count × n_b benign inputs: each feature active with probability p, U[0, 1] when active."""
    return np.where(rng.random((count, n_benign)) < p, rng.random((count, n_benign)), 0.0)


def test_inputs(rng: np.random.Generator, W_HxF: np.ndarray, p: float, count: int) -> dict:
    """Inputs (count × n, backdoor last) of every test set but ``mimic`` (which needs pursuit)."""
    n_benign = W_HxF.shape[1] - 1
    with_backdoor = lambda x, u: np.concatenate([x, u[:, None]], axis=1)
    zero = np.zeros(count)
    return {
        "alone": with_backdoor(np.zeros((count, n_benign)), rng.random(count)),
        "background": with_backdoor(benign(rng, n_benign, p, count), rng.random(count)),
        "fresh": with_backdoor(benign(rng, n_benign, p, count), zero),
        "dense": with_backdoor(benign(rng, n_benign, min(3 * p, 1.0), count), zero),
    }


def mimics(W_HxF: np.ndarray, h_alone_NxH: np.ndarray, k: int) -> np.ndarray:
    """Benign inputs (N × n) with at most k active features whose h best reproduces each backdoor h."""
    coef, _ = detect.pursuit(h_alone_NxH, W_HxF[:, :-1], k)
    return np.concatenate([np.clip(coef, 0.0, 1.0), np.zeros((len(coef), 1))], axis=1)


def sae_scores(sae: dict, H_NxM: np.ndarray, k: int) -> dict:
    """The SAE detectors of hidden vectors: relative reconstruction error ‖h − ĥ‖²/‖h‖², ‖f‖₁/‖h‖,
    and the pursuit residual with the decoder's columns as atoms. ``sae``: numpy arrays W_enc (D×M),
    b_enc (D), W_dec (M×D, unit columns), b_dec (M) of a plain ReLU SAE."""
    H = np.asarray(H_NxM, np.float64)
    f = np.maximum(0.0, (H - sae["b_dec"]) @ sae["W_enc"].T + sae["b_enc"])
    error = np.sum((H - (f @ sae["W_dec"].T + sae["b_dec"])) ** 2, axis=1)
    sq = np.sum(H * H, axis=1)
    norm = np.sqrt(np.maximum(sq, detect.EPS))
    safe = sq > detect.EPS
    return {
        "sae_error": np.where(safe, error / np.maximum(sq, detect.EPS), 0.0),
        "sae_l1": np.where(safe, f.sum(axis=1) / norm, 0.0),
        "sae_pursuit": detect.pursuit_residual(H, sae["W_dec"], k),
    }


def scores(
    W_HxF: np.ndarray,
    trusted_H_NxM: np.ndarray,
    H_NxM: np.ndarray,
    k: int,
    sae: dict | None = None,
    atoms=None,
) -> dict:
    """Every detector's score of hidden vectors ``H_NxM``, fitted on the trusted ones. ``atoms``:
    the oracle's true benign directions (default: every column of W but the last)."""
    mom = detect.moments(trusted_H_NxM)
    out = {
        "norm": detect.norm(H_NxM),
        "mahalanobis": detect.mahalanobis(H_NxM, mom),
        "mahalanobis_uncentred": detect.mahalanobis(H_NxM, mom, centred=False),
        "dimensionality": detect.dimensionality(H_NxM, mom),
        "oracle": detect.pursuit_residual(H_NxM, W_HxF[:, :-1] if atoms is None else atoms, k),
    }
    if sae is not None:
        out.update(sae_scores(sae, H_NxM, k))
    return out


def evaluate(
    W_HxF: np.ndarray,
    p: float,
    rng: np.random.Generator,
    trusted: int,
    count: int,
    sae: dict | None = None,
) -> list[dict]:
    """AUROC and TPR at 1% FPR of every detector on every (positive, negative) test-set pair of
    one model: one dict per (detector, positive, negative)."""
    W = np.asarray(W_HxF, np.float64)
    k = max(W.shape[0] - 1, 1)
    n_benign = W.shape[1] - 1
    trusted_x = np.concatenate([benign(rng, n_benign, p, trusted), np.zeros((trusted, 1))], axis=1)
    sets = test_inputs(rng, W, p, count)
    sets["mimic"] = mimics(W, sets["alone"] @ W.T, k)
    trusted_H = trusted_x @ W.T
    scored = {name: scores(W, trusted_H, x @ W.T, k, sae) for name, x in sets.items()}
    rows = []
    for detector in scored["alone"]:
        for pos in POSITIVES:
            for neg in NEGATIVES:
                a, b = scored[pos][detector], scored[neg][detector]
                rows.append(
                    {
                        "detector": detector,
                        "positive": pos,
                        "negative": neg,
                        "auroc": detect.auroc(a, b),
                        "tpr_at_1pct": detect.tpr_at_fpr(a, b, 0.01),
                    }
                )
    return rows
