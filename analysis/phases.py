"""Per-feature phase of a trained model, with explicit thresholds (docs/science/metrics.md).

The papers give no numbers for "represented" or "superposed"; these are ours, configurable, and
written on every figure that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toymodels import metrics

PHASES = ("not learned", "dedicated", "superposed")
NOT_LEARNED, DEDICATED, SUPERPOSED = range(3)
PHASE_COLORS = ("#d9d9d9", "#4c72b0", "#dd8452")


@dataclass(frozen=True)
class PhaseThresholds:
    # ‖W_i‖ at or above which feature i counts as learned (≈1 represented, ≈0 not).
    represented: float = 0.5
    # Interference Σ_{j≠i}(Ŵ_i·W_j)² at or above which a learned feature counts as superposed.
    # An antipodal partner of equal norm gives 1; an orthogonal one 0.
    superposed: float = 0.1

    def describe(self) -> str:
        return (
            f"phase thresholds: learned if ‖W_i‖ ≥ {self.represented:g}; "
            f"superposed if also Σ_j≠i (Ŵ_i·W_j)² ≥ {self.superposed:g}"
        )


def feature_phase(W: np.ndarray, thresholds: PhaseThresholds = PhaseThresholds()) -> np.ndarray:
    """Phase index (0 not learned, 1 dedicated, 2 superposed) of every feature: ``...×n``."""
    W = np.asarray(W, dtype=np.float64)
    learned = metrics.feature_norms(W) >= thresholds.represented
    superposed = metrics.interference(W) >= thresholds.superposed
    return np.where(learned, np.where(superposed, SUPERPOSED, DEDICATED), NOT_LEARNED)
