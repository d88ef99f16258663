"""The finite-data job kind: toy models trained full-batch on a finite dataset each (issue 7:
memorisation and double descent; ``toymodels.finite``).

A chunk is one ``train_finite_many`` program over models sharing a ``FiniteSpec``;
``finite_table`` turns its ``FiniteResult`` into one row per model: the grid coordinates, the
per-model values that were trained, losses, weights, norms, dimensionalities
(docs/science/metrics.md) and the repeated-data memorisation verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd

from sweeps import resources
from sweeps.config import Config, expand_axis, is_finite
from sweeps.jobs.chunks import identity_columns
from sweeps.jobs.kind import Chunk, ChunkProgram, JobKind
from sweeps.jobs.models import (
    TOY_COLUMNS,
    ModelPoint,
    feature_columns,
    hparams_arrays,
    plan_models,
    toy_kinds,
)
from toymodels.finite import (
    FiniteHParams,
    FiniteResult,
    FiniteSpec,
    dimensionality,
    max_active_for,
    piece_layout,
    repeat_layout,
)

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
        return dict(
            repeated_dim=float("nan"),
            repeated_dims=[],
            repeated_rank=float("nan"),
            repeated_memorised=False,
            repeated_memorised_frac=float("nan"),
            hidden_repeated=[],
        )
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


def finite_table(
    points_meta: Sequence[dict],
    spec: FiniteSpec,
    result: FiniteResult,
    seconds: float,
    hp: FiniteHParams | None = None,
) -> pd.DataFrame:
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
            model=spec.model,
            n_features=spec.n_features,
            n_hidden=spec.n_hidden,
            n_train=spec.n_train,
            steps=spec.steps,
            warmup_steps=spec.warmup_steps,
            max_active=spec.K,
            n_test=spec.n_test,
            repeats=spec.repeats,
            n_repeated=spec.n_repeated,
            train_loss=float(result.train_loss[i]),
            test_loss=float(result.test_loss[i]),
            loss=float(result.train_loss[i]),
            W=W[i].tolist(),
            b=b[i].tolist(),
            norm_W=float(np.linalg.norm(W[i])),
            norm_b=float(np.linalg.norm(b[i])),
            feature_dims=np.asarray(result.feature_dims_F[i]).tolist(),
            feature_dim_sum=float(dimensionality(W[i].T.astype(np.float64)).sum()),
            data_dims=np.asarray(result.data_dims_T[i])[:n_hidden_points].tolist(),
            hidden=np.asarray(result.hidden_first_PxH[i]).tolist(),
            n_overflow=int(result.n_overflow[i]),
            n_empty=int(result.n_empty[i]),
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


def spec_for(config: Config, static: dict) -> FiniteSpec:
    m, t, d = config.model, config.train, config.data
    n, T = static.get("n_features", m.n_features), static.get("n_train", d.n_train)
    n_test = t.eval_samples
    densities = (
        expand_axis("density", config.sweep.grid["density"])
        if "density" in config.sweep.grid
        else [d.density]
    )
    # One K for the whole config, from its largest density (a static value per chunk must not
    # depend on which models share the chunk); a point overflows with probability < 1e-6.
    K = d.max_active or max_active_for(n, max(densities), T + n_test)
    return FiniteSpec(
        n_features=n,
        n_hidden=static.get("n_hidden", m.n_hidden),
        n_train=T,
        steps=static.get("steps", t.steps),
        warmup_steps=t.warmup_steps,
        b1=t.b1,
        b2=t.b2,
        eps=t.eps,
        model=static.get("model", m.kind),
        max_active=K,
        piece_size=t.piece_size,
        n_test=n_test,
        repeats=static.get("repeats", d.repeats),
        n_repeated=d.n_repeated,
        snapshot_every=t.snapshot_every,
        init=m.init,
        init_instances=m.init_instances,
        test_seed=t.eval_seed,
    )


def plan(
    config: Config, device: resources.Device
) -> tuple[list[tuple[FiniteSpec, ModelPoint]], dict]:
    return plan_models(config, device, spec_for), {}


def working_set(spec: FiniteSpec) -> int:
    """Per model: a piece's dense outputs and their gradients, and the sparse datasets."""
    B, _ = piece_layout(spec.n_train, spec.piece_size, "cpu")
    return 4 * 6 * B * spec.n_features + 8 * (spec.n_train + spec.n_test) * spec.K


def program(chunk: Chunk[FiniteSpec, ModelPoint]) -> ChunkProgram:
    import jax.numpy as jnp

    from toymodels import model_keys
    from toymodels.finite import train_finite_many

    arrays = hparams_arrays(chunk)
    hp = FiniteHParams(
        density=jnp.asarray(arrays["density_F"][:, 0]),
        importance_F=jnp.asarray(arrays["importance_F"]),
        lr=jnp.asarray(arrays["lr"]),
        weight_decay=jnp.asarray(arrays["weight_decay"]),
        dataset_seed=jnp.asarray(arrays["dataset_seed"]),
    )
    return ChunkProgram(
        partial(train_finite_many, chunk.spec),
        (model_keys(chunk.base_seed, arrays["uid"]), hp),
        (0, 0),
        context=hp,
    )


def rows(
    chunk: Chunk[FiniteSpec, ModelPoint],
    program: ChunkProgram,
    result: FiniteResult,
    seconds: float,
) -> pd.DataFrame:
    """``finite_table``'s rows plus the columns every toy-model table has."""
    table = finite_table(
        [identity_columns(chunk, p) for p in chunk.points],
        chunk.spec,
        result,
        seconds,
        program.context,
    )
    for name, values in feature_columns(
        chunk.points, np.asarray(result.params.W_HxF)[: chunk.n_models]
    ).items():
        table[name] = values
    table["snap_loss"] = table["snap_train_loss"]  # the curve every table has: the optimised loss
    return table


def _validate(config: Config) -> None:
    from sweeps.validation import validate_models

    validate_models(config)


FINITE: JobKind[FiniteSpec, ModelPoint] = JobKind(
    name="finite",
    applies=is_finite,
    validate=_validate,
    plan=plan,
    working_set=working_set,
    model_bytes=resources.model_bytes,
    pad_to_one_worker=False,  # pad to the chunk's own size, as every finite-data store was trained
    program=program,
    checked=lambda result: (result.train_loss, result.params),
    rows=rows,
    user_kinds=lambda spec: toy_kinds(spec.model),
    columns=TOY_COLUMNS,
    doc="toy models trained full-batch on a finite dataset each (toymodels.finite.train_finite_many)",
)
