"""One chunk of an SAE sweep: every SAE of it in one ``jit(vmap(train))`` program
(``toymodels.sae.train_saes``), and one row per SAE with its decoder and scores; the SAE job kind's
``program`` and ``rows`` (``sweeps.sae.job``), run by ``sweeps.jobs.chunks.run_chunk``."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from sweeps.jobs.chunks import identity_columns
from sweeps.jobs.kind import Chunk, ChunkProgram
from sweeps.sae.plan import SaeGroup, SaePoint, hparam_lists

# Scores of toymodels.sae.metrics.SaeScores stored as one float column each.
SCORES = (
    "mmcs",
    "mmcs_reverse",
    "n_dead",
    "dead_fraction",
    "l0",
    "true_l0",
    "mse",
    "fvu",
    "h_var",
    "gamma",
    "precision",
    "recall",
    "f1",
    "loss",
    "absorption",
    "n_dead_long",
    "dead_fraction_long",
    "absorption_gap",
)
# Per edge (parent, child) of a world's hierarchy: SaeScores.<name>_F over the children, stored as lists.
EDGE_SCORES = (
    "edge_child_events",
    "edge_absorbed",
    "edge_parent_only",
    "edge_parent_only_hits",
    "edge_absorbing",
    "edge_absorbing_count",
)


def source_arrays(chunk: Chunk[SaeGroup, SaePoint], points):
    from sweeps.sae.toy import toy_source_arrays
    from sweeps.sae.worlds import world_arrays

    return toy_source_arrays(chunk.carry, points) if chunk.carry else world_arrays(points)


def program(chunk: Chunk[SaeGroup, SaePoint]) -> ChunkProgram:
    """Every SAE of ``chunk`` (padded) in one compiled program; ``context``: the sources' arrays."""
    from toymodels.sae import hparams, sae_keys, split_keys, train_saes

    points = chunk.padded()
    arrays = source_arrays(chunk, points)
    init_keys, data_keys = split_keys(
        sae_keys(chunk.base_seed, [p.source_uid for p in points], [p.seed for p in points])
    )
    hp = hparams(len(points), **hparam_lists(points))
    spec = chunk.spec.spec
    return ChunkProgram(
        partial(train_saes, spec, chunk.spec.source),
        (init_keys, hp, arrays, data_keys),
        (0, 0, 0 if spec.per_sae_source else None, None if spec.shared_data else 0),
        context=arrays,
    )


def _source_columns(chunk: Chunk[SaeGroup, SaePoint], arrays) -> dict[str, np.ndarray]:
    """Per SAE: its source's true directions (for MCC) and which of them are represented."""
    import jax

    source = chunk.spec.source
    columns = {
        "truth": np.asarray(jax.vmap(source.truth)(arrays)),
        "represented": np.asarray(jax.vmap(source.represented)(arrays)),
    }
    if source.has_hierarchy:
        columns["parents"] = np.asarray(jax.vmap(source.parents)(arrays))
    return columns


def hparam_columns(kind, point) -> dict:
    """The kind's hyperparameters as columns: ``l1`` (NaN for kinds without λ), ``k`` (0 for kinds
    without k), and each hyperparameter the kind declares (static ones from its spec); ``sparsity``,
    the value of its sparsity setting (λ or k), ``sparsity_axis`` its name (l1, k) and
    ``sparsity_name`` how figures label it (λ, k)."""
    values = {**dict(point.values)}
    columns: dict[str, float | str] = {
        "l1": float(values.get("l1", np.nan)),
        "k": int(values.get("k", 0)),
    }
    columns.update({name: v for name, v in values.items() if name not in columns})
    setting = kind.sparsity
    columns["sparsity"] = (
        float(values[setting.name]) if setting and setting.name in values else np.nan
    )
    columns["sparsity_axis"] = setting.name if setting else ""
    columns["sparsity_name"] = setting.shown if setting else ""
    return columns


def edge_columns(i: int, scores, parents) -> dict:
    """The per-edge absorption counts of SAE ``i``, one list entry per edge (parent, child)."""
    children = np.flatnonzero(parents >= 0)
    columns = {"edge_parent": parents[children].tolist(), "edge_child": children.tolist()}
    for name in EDGE_SCORES:
        values = np.asarray(getattr(scores, name + "_F")[i])[children]
        columns[name] = values.astype(int).tolist()
    return columns


def rows(
    chunk: Chunk[SaeGroup, SaePoint], program: ChunkProgram, result, seconds: float
) -> pd.DataFrame:
    import jax

    from toymodels.sae import SAE_KINDS, chance_mmcs, decoder, mcc
    from toymodels.sae.metrics import hedging, uniqueness
    from toymodels.sae.saelens import params_blob

    arrays = program.context
    spec, source = chunk.spec.spec, chunk.spec.source
    W_dec = np.asarray(jax.vmap(decoder)(result.params))
    truth = _source_columns(chunk, arrays)
    chance = chance_mmcs(source.n_hidden, spec.dict_size)
    kind = SAE_KINDS.get(spec.kind)
    every = max(spec.steps // spec.curve_points, 1)
    out = []
    for i, p in enumerate(chunk.points):
        row = identity_columns(chunk, p, between=p.source)
        row.update(
            source_uid=p.source_uid,
            sae_source="toy" if chunk.carry else "world",
            kind=spec.kind,
            dict_size=spec.dict_size,
            **hparam_columns(kind, p),
            **dict(spec.options),
            lr=p.lr,
            ortho=p.ortho,
            steps=spec.steps,
            batch_size=spec.batch_size,
            n_features=source.n_features,
            n_hidden=source.n_hidden,
            n_true=source.n_true,
            n_represented=int(truth["represented"][i].sum()),
            **{s: float(np.asarray(getattr(result.scores, s))[i]) for s in SCORES},
            dead_samples=spec.dead_batches * spec.eval_batch,
            mmcs_chance=chance,
            mcc=mcc(W_dec[i], truth["truth"][i], truth["represented"][i]),
            uniqueness=uniqueness(W_dec[i], truth["truth"][i], truth["represented"][i]),
            n_composed=int(result.scores.n_composed[i]),
            W_dec=W_dec[i].tolist(),
            b_dec=np.asarray(result.params["b_dec_H"][i]).tolist(),
            params=params_blob(
                {name: np.asarray(v[i]) for name, v in result.params.items()}
            ),  # for export
            max_cos=np.asarray(result.scores.max_cos_D[i]).tolist(),
            # the training curve at the end of each interval it averages (what wandb and loss curves read)
            snap_step=[every * (j + 1) for j in range(len(result.curve[i]))],
            snap_loss=np.asarray(result.curve[i]).tolist(),
            train_seconds=seconds / chunk.n_models,
        )
        if "parents" in truth:
            edge_hedging = hedging(
                W_dec[i], truth["truth"][i], truth["parents"][i], truth["represented"][i]
            )
            children = truth["parents"][i] >= 0
            row.update(
                edge_columns(i, result.scores, truth["parents"][i]),
                edge_hedging=edge_hedging[children].tolist(),
                hedging=float(np.nanmean(edge_hedging[children]))
                if np.isfinite(edge_hedging[children]).any()
                else float("nan"),
            )
        out.append(row)
    return pd.DataFrame(out)
