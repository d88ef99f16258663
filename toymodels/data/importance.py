"""Per-feature importance profiles (docs/science/models.md): the loss weights feature i by I_i."""

from __future__ import annotations

import numpy as np

IMPORTANCE_KINDS = ("geometric", "logspace", "explicit", "target_only")


def importance_profile(
    n_features: int,
    kind: str = "geometric",
    decay: float = 1.0,
    ratio: float = 1.0,
    values: tuple[float, ...] = (),
) -> np.ndarray:
    """Per-feature importance I_i, first feature 1 (or as given).

    - ``geometric``: I_i = decay**i (decay 1 is uniform importance).
    - ``logspace``: I_i = ratio**(-i/(n-1)), from 1 down to 1/ratio (e.g. 100^-linspace(0,1,n)).
    - ``explicit``: the n given ``values``.
    - ``target_only``: 1 for the first feature, 0 for the rest (the loss covers only the target
      coordinate: the noise-features experiment).
    """
    if kind == "geometric":
        return decay ** np.arange(n_features, dtype=np.float64)
    if kind == "logspace":
        return ratio ** -np.linspace(0.0, 1.0, n_features)
    if kind == "explicit":
        if len(values) != n_features:
            raise ValueError(f"explicit importance needs {n_features} values, got {len(values)}")
        return np.asarray(values, dtype=np.float64)
    if kind == "target_only":
        return (np.arange(n_features) == 0).astype(np.float64)
    raise ValueError(f"importance kind {kind!r} is not one of {IMPORTANCE_KINDS}")
