"""Running chunks: the pure chunk job.

``run_chunk`` is what any executor runs for one chunk: a plain payload in, a table out, nothing
shared. Executors (``sweeps.executors``) decide where chunks run and report each finished or failed
chunk to the driver's callbacks as soon as it is known.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from sweeps.jobs.plan import Chunk, hparams_arrays


class ChunkFailed(RuntimeError):
    """A chunk that failed by itself (bad numbers, not a lost worker): recorded, not retried."""


def run_chunk(chunk: Chunk) -> pd.DataFrame:
    """Train every model of ``chunk`` in one compiled program; one row per model."""
    import jax
    import jax.numpy as jnp

    from toymodels.plugins import ensure_registered
    from toymodels import HParams, model_keys, stream_key_words, train_many
    from toymodels.finite import FiniteSpec

    ensure_registered(chunk.kinds)
    if not isinstance(chunk, Chunk):  # an SAE sweep's chunk (sweeps.sae.plan.SaeChunk)
        from sweeps.sae.execute import run_sae_chunk

        return run_sae_chunk(chunk)
    if isinstance(chunk.spec, FiniteSpec):
        return run_finite_chunk(chunk)
    arrays = hparams_arrays(chunk)
    spec = chunk.spec
    optional = (["l1_hidden"] if spec.hidden_l1 else []) + (
        ["capacity_onehot_F", "capacity_target", "capacity_penalty"] if spec.capacity_penalty else []) + (
        ["mono_penalty", "mono_start"] if spec.mono_penalty else [])
    hp = HParams(**{name: jnp.asarray(arrays[name]) for name in
                    ["density_F", "importance_F", "lr", "weight_decay", *optional]})
    stream_words = None
    if spec.shared_streams:  # one stream per seed index of the chunk
        seeds, stream = np.unique(arrays["seed"], return_inverse=True)
        hp = hp.replace(stream=jnp.asarray(stream, jnp.int32))
        stream_words = stream_key_words(chunk.base_seed, seeds)
    start = time.perf_counter()
    result = jax.device_get(train_many(chunk.spec, model_keys(chunk.base_seed, arrays["uid"]), hp, stream_words))
    seconds = time.perf_counter() - start
    _check_finite(chunk, result.eval_loss, result.params)
    return chunk_table(chunk, result, seconds)


def _check_finite(chunk: Chunk, loss, params) -> None:
    """Fail the chunk when any model's loss or weights are not finite (a diverged model can still
    report a finite loss: ReLU maps NaN to 0 on some backends)."""
    import jax

    n = chunk.n_models
    finite = np.isfinite(np.asarray(loss)[:n])
    for leaf in jax.tree.leaves(params):
        finite &= np.isfinite(np.asarray(leaf)[:n]).reshape(n, -1).all(axis=1)
    bad = [chunk.points[i] for i in np.flatnonzero(~finite)]
    if bad:
        where = dict(bad[0].coords, seed=bad[0].seed)
        raise ChunkFailed(f"non-finite loss or weights for {len(bad)} model(s), first at {where}")


def run_finite_chunk(chunk: Chunk) -> pd.DataFrame:
    """A chunk of finite-data models (``toymodels.finite``): full-batch training on each model's
    dataset; rows from ``sweeps.jobs.finite_rows`` plus the columns every table shares."""
    import jax
    import jax.numpy as jnp

    from sweeps.jobs.finite_rows import finite_table
    from toymodels import model_keys
    from toymodels.finite import FiniteHParams, train_finite_many

    arrays = hparams_arrays(chunk)
    hp = FiniteHParams(density=jnp.asarray(arrays["density_F"][:, 0]), importance_F=jnp.asarray(arrays["importance_F"]),
                       lr=jnp.asarray(arrays["lr"]), weight_decay=jnp.asarray(arrays["weight_decay"]),
                       dataset_seed=jnp.asarray(arrays["dataset_seed"]))
    start = time.perf_counter()
    result = jax.device_get(train_finite_many(chunk.spec, model_keys(chunk.base_seed, arrays["uid"]), hp))
    seconds = time.perf_counter() - start
    _check_finite(chunk, result.train_loss, result.params)
    table = finite_table([identity_columns(chunk, p) for p in chunk.points], chunk.spec, result, seconds, hp)
    for name, values in feature_columns(chunk, np.asarray(result.params.W_HxF)[: chunk.n_models]).items():
        table[name] = values
    table["snap_loss"] = table["snap_train_loss"]  # the curve every table has: the optimised loss
    return table


def identity_columns(chunk: Chunk, p) -> dict:
    """Where a model sits: its grid coordinates, seed, uid, order in the plan and chunk."""
    return dict(p.coords, seed=p.seed, uid=p.uid, order=p.order, chunk=chunk.id)


def feature_columns(chunk: Chunk, W_NxHxF: np.ndarray) -> dict[str, list]:
    """Per model, per feature: ‖W_i‖, capacity, interference (SCIENCE.md §5) and the densities and
    importances it was trained with; the columns every stored model has, fresh or finite data."""
    from toymodels import metrics

    return {"norms": metrics.feature_norms(W_NxHxF).tolist(), "capacity": metrics.capacity(W_NxHxF).tolist(),
            "interference": metrics.interference(W_NxHxF).tolist(),
            "feature_density": [list(p.density_F) for p in chunk.points],
            "feature_importance": [list(p.importance_F) for p in chunk.points]}


def chunk_table(chunk: Chunk, result, seconds: float) -> pd.DataFrame:
    from toymodels.data import feature_kurtosis
    from toymodels.models import MODELS

    n, spec = chunk.n_models, chunk.spec
    # Every parameter is stored under its own name; ``W`` is the kind's feature directions.
    params = {name: np.asarray(value)[:n] for name, value in result.params.items()}
    W = np.asarray(MODELS.get(spec.model).features(result.params))[:n]
    snaps = result.snapshots
    features = feature_columns(chunk, W)
    cap = np.asarray(features["capacity"])
    rows = []
    for i, p in enumerate(chunk.points):
        row = {**dict(spec.model_options), **identity_columns(chunk, p)}
        held = p.capacity_feature if spec.capacity_penalty else -1
        row.update(
            model=spec.model,
            data_kind=spec.data.kind,
            kurtosis=float(feature_kurtosis(spec.data, p.density_F[:1])[0]),
            n_features=chunk.spec.n_features,
            n_hidden=chunk.spec.n_hidden,
            steps=chunk.spec.steps,
            batch_size=chunk.spec.batch_size,
            lr=p.lr,
            weight_decay=p.weight_decay,
            loss=float(result.eval_loss[i]),
            W=W[i].tolist(),
            **{name: value[i].tolist() for name, value in params.items() if name != "W"},
            **{name: values[i] for name, values in features.items()},
            snap_step=np.asarray(snaps.step_S[i]).tolist(),
            snap_loss=np.asarray(snaps.loss_S[i]).tolist(),
            snap_norms=np.asarray(snaps.norms_SxF[i]).tolist(),
            snap_capacity=np.asarray(snaps.capacity_SxF[i]).tolist(),
            **_layer_columns(snaps, i),
            l1_hidden=p.l1_hidden if spec.hidden_l1 else 0.0,
            capacity_feature=held,
            capacity_target=p.capacity_target if held >= 0 else float("nan"),
            capacity_penalty=p.capacity_penalty if held >= 0 else 0.0,
            **({"mono_penalty": p.mono_penalty, "mono_start": p.mono_start} if spec.mono_penalty else {}),
            # At a minimum of L + λ(C_f − c)², −∂L/∂C_f = 2λ(C_f − c): the held feature's marginal
            # benefit of capacity, read off the penalty's pull (Scherlis et al.).
            penalty_marginal_benefit=(2 * p.capacity_penalty * (float(cap[i, held]) - p.capacity_target)
                                      if held >= 0 else float("nan")),
            train_seconds=seconds / n,
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _layer_columns(snaps, i: int) -> dict:
    """Per-layer read-vector norms and capacities (kinds with ``read_matrices``): the final ones
    and every snapshot's (L×n and S×L×n)."""
    if snaps.layer_capacity_SxLxF is None:
        return {}
    norms, capacity = np.asarray(snaps.layer_norms_SxLxF[i]), np.asarray(snaps.layer_capacity_SxLxF[i])
    return {"layer_norms": norms[-1].tolist(), "layer_capacity": capacity[-1].tolist(),
            "snap_layer_norms": norms.tolist(), "snap_layer_capacity": capacity.tolist()}
