"""How well a decomposition recovers the ground truth (docs/spd.md, "Scores").

At a scored site with trained matrix W and feature input directions D (I×F), feature j's true
mechanism responds T_j = W D_j, and subcomponent c responds U_c a_cj with a_cj = V_cᵀ D_j (for
TMS's W, D = identity: T_j is W's column j and U_c a_cj the column j of U_c V_cᵀ, the paper's
definition).

- ``mmcs``: mean over represented features (‖T_j‖ ≥ 0.1) of max_c cos(U_c a_cj, T_j) (Bushnaq et
  al. 2025, MMCS).
- ``ml2r``: mean over the same features of ‖U_c a_cj‖ / ‖T_j‖ at the c of largest cosine (ML2R;
  1 is no shrinkage, > 1 a subcomponent larger than its column).
- ``recovered``: every represented feature's best subcomponent has cosine ≥ ``match_cosine`` (0.999),
  an L2 ratio within ``match_ratio`` (0.1) of 1, and is alive, and no subcomponent is the best of
  two features (one subcomponent per feature). The cosine alone says little in few dimensions:
  the best of C random directions is already close (``chance_mmcs``: 0.995 for C = 20 in 2-D).
- ``exact``: recovered, and the site has exactly as many alive subcomponents as represented
  features (none left over).
- ``alive``: a subcomponent whose causal importance exceeds ``alive_threshold`` (0.1, the
  reference's) on some evaluation input.
- ``probe_ci``: the mean over features of the best subcomponent's importance on the one-hot input
  0.75 e_j (the paper's causal-importance figures probe with x_j = 0.75); ~1 when the matched
  subcomponent is switched on by its feature.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

REPRESENTED_NORM = 0.1  # a true column shorter than this is not represented: nothing to recover
PROBE_VALUE = 0.75


def unit_columns(A):
    return A / jnp.maximum(jnp.linalg.norm(A, axis=0, keepdims=True), 1e-12)


def feature_cosines(U_OxC, V_IxC, T_OxF, D_IxF):
    """cos(U_c a_cj, T_j) (C×F) and a_CxF = Vᵀ D: U_c a_cj is U_c scaled by a signed scalar, so its
    cosine with T_j is sign(a_cj) cos(U_c, T_j) (0 where either is zero)."""
    a_CxF = V_IxC.T @ D_IxF
    return jnp.sign(a_CxF) * (unit_columns(U_OxC).T @ unit_columns(T_OxF)), a_CxF


def site_scores(U_OxC, V_IxC, W_OxI, D_IxF, alive_C, match_cosine=0.999, match_ratio=0.1):
    """(mmcs, ml2r, recovered, exact, best subcomponent per feature F) of one scored site."""
    T_OxF = W_OxI @ D_IxF
    cos_CxF, a_CxF = feature_cosines(U_OxC, V_IxC, T_OxF, D_IxF)
    best_F = jnp.argmax(cos_CxF, axis=0)
    f = jnp.arange(T_OxF.shape[1])
    best_cos_F = cos_CxF[best_F, f]
    t_norm_F = jnp.linalg.norm(T_OxF, axis=0)
    ratio_F = (
        jnp.abs(a_CxF[best_F, f])
        * jnp.linalg.norm(U_OxC, axis=0)[best_F]
        / jnp.maximum(t_norm_F, 1e-12)
    )
    represented_F = t_norm_F >= REPRESENTED_NORM
    count = jnp.maximum(jnp.sum(represented_F), 1)
    mmcs = jnp.sum(jnp.where(represented_F, best_cos_F, 0.0)) / count
    ml2r = jnp.sum(jnp.where(represented_F, ratio_F, 0.0)) / count
    matched_F = (
        (best_cos_F >= match_cosine) & (jnp.abs(ratio_F - 1.0) <= match_ratio) & alive_C[best_F]
    )
    uses_C = jnp.zeros(U_OxC.shape[1], jnp.int32).at[best_F].add(represented_F.astype(jnp.int32))
    recovered = jnp.all(matched_F | ~represented_F) & (jnp.max(uses_C) <= 1)
    exact = recovered & (jnp.sum(alive_C) == jnp.sum(represented_F))
    return mmcs, ml2r, recovered, exact, best_F


def probes(n_features: int) -> jax.Array:
    """The one-hot inputs 0.75 e_j (F×F, one per column)."""
    return PROBE_VALUE * jnp.eye(n_features)


def chance_mmcs(d_out: int, C: int, samples: int = 20_000, seed: int = 0) -> float:
    """Expected MMCS of C random rank-one subcomponents: each feature's best |cos| with C isotropic
    random directions in d_out dimensions (a subcomponent's column j is ±U_c, the sign that of
    a_cj). The floor an MMCS must clear: 0.995 for C = 20 in 2-D, so TMS 5→2's MMCS says little
    alone; 0.80 for C = 200 in 10-D."""
    samples = min(samples, max(100, 4_000_000 // (d_out * C)))
    normals = np.random.default_rng(seed).normal(size=(samples, d_out, C))
    return float((np.abs(normals[:, 0, :]) / np.linalg.norm(normals, axis=1)).max(axis=1).mean())
