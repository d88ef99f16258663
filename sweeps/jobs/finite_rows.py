"""Rows of the store for finite-data models (issue 7: memorisation and double descent).

``finite_table`` turns one chunk's ``FiniteResult`` into one row per model: the grid coordinates
the planner passes in, the per-model values that were trained, losses, weights, norms,
dimensionalities (SCIENCE.md §5) and the repeated-data memorisation verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from toymodels.finite import FiniteHParams, FiniteResult, FiniteSpec, dimensionality, repeat_layout

MEMORISED_TOP = 0.001  # a point is memorised when its data dimensionality is in the top 0.1%
HP_COLUMNS = ("density", "lr", "weight_decay", "dataset_seed")


def _hp_values(hp: FiniteHParams | None, i: int) -> dict:
    """The per-model values model ``i`` was trained with (they override the planner's copy)."""
    if hp is None:
        return {}
    values = {name: np.asarray(getattr(hp, name))[i].item() for name in HP_COLUMNS}
    values["dataset_seed"] = int(values["dataset_seed"])
    importance = np.asarray(hp.importance_F)[i]
    values.update(importance_min=float(importance.min()), importance_max=float(importance.max()))
    return values


def data_dim_summary(dims_T: np.ndarray, distinct_T: np.ndarray) -> dict:
    """Summary of the data-point dimensionalities over the distinct training points: enough to
    say whether a point sits in the top 0.1% and how much of the hidden space the data take."""
    d = np.asarray(dims_T, np.float64)[np.asarray(distinct_T, bool)]
    return dict(
        data_dim_mean=float(d.mean()),
        data_dim_median=float(np.median(d)),
        data_dim_q999=float(np.quantile(d, 1.0 - MEMORISED_TOP)),
        data_dim_max=float(d.max()),
        data_dim_sum=float(d.sum()),  # Σ_t D_t ≤ m: dimensions spent on individual points
    )


def _repeated_columns(result, i: int, repeated_R: np.ndarray) -> dict:
    if not len(repeated_R):
        return dict(repeated_dim=float("nan"), repeated_dims=[], repeated_rank=float("nan"),
                    repeated_memorised=False, repeated_memorised_frac=float("nan"), hidden_repeated=[])
    dims = np.asarray(result.data_dims_T[i])[repeated_R]
    rank = np.asarray(result.repeated_rank_R[i], np.float64)
    return dict(
        repeated_dim=float(dims[0]),
        repeated_dims=dims.tolist(),
        repeated_rank=float(rank[0]),
        repeated_memorised=bool(rank[0] < MEMORISED_TOP),
        repeated_memorised_frac=float(np.mean(rank < MEMORISED_TOP)),
        hidden_repeated=np.asarray(result.hidden_repeated_RxH[i]).tolist(),
    )


def finite_table(points_meta: Sequence[dict], spec: FiniteSpec, result: FiniteResult, seconds: float,
                 hp: FiniteHParams | None = None) -> pd.DataFrame:
    """One row per model of ``points_meta`` (dicts of grid axis -> value plus seed, uid, order, and
    any of lr, weight_decay, density, dataset_seed); ``hp``, when given, supplies the trained
    per-model values. ``result`` may hold padding models past ``len(points_meta)``.

    ``loss`` repeats ``train_loss``: best-of-seeds selection ranks by what was optimised, never
    by the test loss."""
    _, distinct_N, repeated_R = repeat_layout(spec)
    distinct_T = distinct_N[: spec.n_train]
    n_models = len(points_meta)
    W = np.asarray(result.params.W_HxF)[:n_models]
    b = np.asarray(result.params.b_F)[:n_models]
    snaps = result.snapshots
    rows = []
    for i, meta in enumerate(points_meta):
        row = dict(meta)
        row.update(_hp_values(hp, i))
        n_hidden_points = min(spec.hidden_points, spec.n_train)
        row.update(
            model=spec.model, n_features=spec.n_features, n_hidden=spec.n_hidden, n_train=spec.n_train,
            steps=spec.steps, warmup_steps=spec.warmup_steps, max_active=spec.K, n_test=spec.n_test,
            repeats=spec.repeats, n_repeated=spec.n_repeated,
            train_loss=float(result.train_loss[i]), test_loss=float(result.test_loss[i]),
            loss=float(result.train_loss[i]),
            W=W[i].tolist(), b=b[i].tolist(),
            norm_W=float(np.linalg.norm(W[i])), norm_b=float(np.linalg.norm(b[i])),
            feature_dims=np.asarray(result.feature_dims_F[i]).tolist(),
            feature_dim_sum=float(dimensionality(W[i].T.astype(np.float64)).sum()),
            data_dims=np.asarray(result.data_dims_T[i])[:n_hidden_points].tolist(),
            hidden=np.asarray(result.hidden_first_PxH[i]).tolist(),
            n_overflow=int(result.n_overflow[i]), n_empty=int(result.n_empty[i]),
            snap_step=np.asarray(snaps.step_S[i]).tolist(),
            snap_train_loss=np.asarray(snaps.train_loss_S[i]).tolist(),
            snap_test_loss=np.asarray(snaps.test_loss_S[i]).tolist(),
            snap_norm_W=np.asarray(snaps.norm_W_S[i]).tolist(),
            snap_norm_b=np.asarray(snaps.norm_b_S[i]).tolist(),
            train_seconds=seconds / n_models,
        )
        row.update(data_dim_summary(np.asarray(result.data_dims_T[i]), distinct_T))
        row.update(_repeated_columns(result, i, repeated_R))
        rows.append(row)
    return pd.DataFrame(rows)
