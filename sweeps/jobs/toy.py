"""The fresh-data job kind: toy models trained on a fresh batch every step (``toymodels.train``).

A chunk is one ``train_many`` program over models sharing a ``TrainSpec`` (shape, kind, data kind,
steps, batch, the optional loss terms compiled in); its rows hold every parameter under its own
name, the kind's feature directions as ``W``, the feature measures and the training snapshots.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import pandas as pd

from sweeps import resources
from sweeps.config import Config, is_finite
from sweeps.config_kinds import data_spec_of, model_options
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
from sweeps.jobs.terms import term_arrays, term_columns, terms_on
from toymodels.train import TrainSpec


def spec_for(config: Config, static: dict) -> TrainSpec:
    m, t, d = config.model, config.train, config.data
    kind = static.get("model", m.kind)
    return TrainSpec(
        n_features=static.get("n_features", m.n_features),
        n_hidden=static.get("n_hidden", m.n_hidden),
        model=kind,
        model_options=model_options(config, kind, static),
        data=data_spec_of(config),
        batch_blocks=t.batch_blocks,
        shared_streams=d.streams == "seed",
        terms=tuple(term.name for term in terms_on(config)),
        steps=static.get("steps", t.steps),
        batch_size=static.get("batch_size", t.batch_size),
        schedule=t.schedule,
        warmup_steps=t.warmup_steps,
        b1=t.b1,
        b2=t.b2,
        eps=t.eps,
        init=m.init,
        init_instances=m.init_instances,
        snapshot_every=t.snapshot_every,
        eval_samples=t.eval_samples,
        eval_seed=t.eval_seed,
    )


def plan(
    config: Config, device: resources.Device
) -> tuple[list[tuple[TrainSpec, ModelPoint]], dict]:
    return plan_models(config, device, spec_for), {}


def working_set(spec: TrainSpec) -> int:
    """Per model and step: uniforms, inputs, outputs and their gradients (~6 batch×n float32
    arrays), and the evaluation batch."""
    return 4 * 6 * max(spec.batch_size, 4096) * spec.n_features


def program(chunk: Chunk[TrainSpec, ModelPoint]) -> ChunkProgram:
    import jax
    import jax.numpy as jnp

    from toymodels import HParams, model_keys, stream_key_words, train_many
    from toymodels.terms import TERMS

    arrays = hparams_arrays(chunk)
    spec = chunk.spec
    terms = term_arrays(
        [TERMS.get(name) for name in spec.terms], [p.terms for p in chunk.padded()], spec.n_features
    )
    hp = HParams(
        **{
            name: jnp.asarray(arrays[name])
            for name in ["density_F", "importance_F", "lr", "weight_decay"]
        },
        terms=jax.tree.map(jnp.asarray, terms),
    )
    stream_words = None
    if spec.shared_streams:  # one stream per seed index of the chunk
        seeds, stream = np.unique(arrays["seed"], return_inverse=True)
        hp = dataclasses.replace(hp, stream=jnp.asarray(stream, jnp.int32))
        stream_words = stream_key_words(chunk.base_seed, seeds)
    return ChunkProgram(
        partial(train_many, spec),
        (model_keys(chunk.base_seed, arrays["uid"]), hp, stream_words),
        (0, 0, None),
    )


def rows(
    chunk: Chunk[TrainSpec, ModelPoint], program: ChunkProgram, result, seconds: float
) -> pd.DataFrame:
    from toymodels.data import feature_kurtosis
    from toymodels.models import bind_kind

    n, spec = chunk.n_models, chunk.spec
    # Every parameter is stored under its own name; ``W`` is the kind's feature directions.
    params = {name: np.asarray(value)[:n] for name, value in result.params.items()}
    kind = bind_kind(spec.model, spec.n_features, spec.n_hidden, spec.model_options)
    W = np.asarray(kind.features(result.params))[:n]
    snaps = result.snapshots
    features = feature_columns(chunk.points, W)
    cap = np.asarray(features["capacity"])
    out = []
    for i, p in enumerate(chunk.points):
        row = {**dict(spec.model_options), **identity_columns(chunk, p)}
        row.update(
            model=spec.model,
            data_kind=spec.data.kind,
            kurtosis=float(feature_kurtosis(spec.data, p.density_F[:1])[0]),
            n_features=spec.n_features,
            n_hidden=spec.n_hidden,
            steps=spec.steps,
            batch_size=spec.batch_size,
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
            **term_columns(p.terms, cap[i]),  # every loss term's settings and measures
            train_seconds=seconds / n,
        )
        out.append(row)
    return pd.DataFrame(out)


def _layer_columns(snaps, i: int) -> dict:
    """Per-layer read-vector norms and capacities (kinds with ``read_matrices``): the final ones
    and every snapshot's (L×n and S×L×n)."""
    if snaps.layer_capacity_SxLxF is None:
        return {}
    norms, capacity = (
        np.asarray(snaps.layer_norms_SxLxF[i]),
        np.asarray(snaps.layer_capacity_SxLxF[i]),
    )
    return {
        "layer_norms": norms[-1].tolist(),
        "layer_capacity": capacity[-1].tolist(),
        "snap_layer_norms": norms.tolist(),
        "snap_layer_capacity": capacity.tolist(),
    }


def _validate(config: Config) -> None:
    from sweeps.validation import validate_models

    validate_models(config)


FRESH: JobKind[TrainSpec, ModelPoint] = JobKind(
    name="fresh",
    applies=lambda config: not is_finite(config),
    validate=_validate,
    plan=plan,
    working_set=working_set,
    model_bytes=resources.model_bytes,
    pad_to_one_worker=False,  # pad to the chunk's own size, as every toy-model store was trained
    program=program,
    checked=lambda result: (result.eval_loss, result.params),
    rows=rows,
    user_kinds=lambda spec: toy_kinds(spec.model, spec.data.kind, spec.terms),
    columns=TOY_COLUMNS,
    doc="toy models on a fresh batch every step (toymodels.train.train_many)",
)
