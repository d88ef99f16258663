"""Running one chunk of an SAE sweep: every SAE of it in one ``jit(vmap(train))`` program
(``toymodels.sae.train_saes``), one row per SAE with its decoder, as ``sweeps.jobs.execute.run_chunk``
does for toy models (it hands ``SaeChunk``s here)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from sweeps.sae.plan import SaeChunk, hparam_lists, padded

# Scores of toymodels.sae.metrics.SaeScores stored as one float column each.
SCORES = ("mmcs", "mmcs_reverse", "n_dead", "dead_fraction", "l0", "true_l0", "mse", "fvu", "h_var", "gamma",
          "precision", "recall", "f1", "loss", "absorption")


def source_arrays(chunk: SaeChunk, points):
    from sweeps.sae.toy import toy_source_arrays
    from sweeps.sae.worlds import world_arrays

    return toy_source_arrays(chunk, points) if chunk.toy_arrays else world_arrays(points)


def run_sae_chunk(chunk: SaeChunk) -> pd.DataFrame:
    """Train every SAE of ``chunk`` in one compiled program; one row per SAE."""
    import jax

    from sweeps.jobs.execute import ChunkFailed
    from toymodels.plugins import ensure_registered
    from toymodels.sae import hparams, sae_keys, split_keys, train_saes

    ensure_registered(chunk.kinds)
    points = padded(chunk)
    arrays = source_arrays(chunk, points)
    init_keys, data_keys = split_keys(sae_keys(chunk.base_seed, [p.source_uid for p in points],
                                               [p.seed for p in points]))
    hp = hparams(len(points), **hparam_lists(points))
    start = time.perf_counter()
    result = jax.device_get(train_saes(chunk.spec, chunk.group.source, init_keys, hp, arrays, data_keys))
    seconds = time.perf_counter() - start
    n = chunk.n_models
    finite = np.isfinite(np.asarray(result.scores.loss)[:n])
    for leaf in jax.tree.leaves(result.params):
        finite &= np.isfinite(np.asarray(leaf)[:n]).reshape(n, -1).all(axis=1)
    if not finite.all():
        bad = chunk.points[int(np.flatnonzero(~finite)[0])]
        raise ChunkFailed(f"non-finite loss or weights for {int((~finite).sum())} SAE(s), first at "
                          f"{dict(bad.coords, seed=bad.seed)}")
    return sae_table(chunk, result, arrays, seconds)


def _source_columns(chunk: SaeChunk, arrays) -> dict[str, np.ndarray]:
    """Per SAE: its source's true directions (for MCC) and which of them are represented."""
    import jax

    source = chunk.group.source
    return {"truth": np.asarray(jax.vmap(source.truth)(arrays)),
            "represented": np.asarray(jax.vmap(source.represented)(arrays))}


def sae_table(chunk: SaeChunk, result, arrays, seconds: float) -> pd.DataFrame:
    import jax

    from toymodels.sae import SAE_KINDS, chance_mmcs, decoder, mcc

    spec, source = chunk.spec, chunk.group.source
    W_dec = np.asarray(jax.vmap(decoder)(result.params))
    truth = _source_columns(chunk, arrays)
    chance = chance_mmcs(source.n_hidden, spec.dict_size)
    top_k = SAE_KINDS.get(spec.kind).top_k
    every = max(spec.steps // spec.curve_points, 1)
    rows = []
    for i, p in enumerate(chunk.points):
        row = {**dict(p.coords), **dict(p.source)}
        row.update(
            seed=p.seed, uid=p.uid, order=p.order, chunk=chunk.id, source_uid=p.source_uid,
            sae_source="toy" if chunk.toy_arrays else "world", kind=spec.kind, dict_size=spec.dict_size,
            l1=float("nan") if top_k else p.l1, k=p.k if top_k else 0, sparsity=float(p.k if top_k else p.l1),
            lr=p.lr, bandwidth=p.bandwidth, ortho=p.ortho, steps=spec.steps, batch_size=spec.batch_size,
            n_features=source.n_features, n_hidden=source.n_hidden, n_true=source.n_true,
            n_represented=int(truth["represented"][i].sum()),
            **{s: float(np.asarray(getattr(result.scores, s))[i]) for s in SCORES},
            mmcs_chance=chance, mcc=mcc(W_dec[i], truth["truth"][i], truth["represented"][i]),
            n_composed=int(result.scores.n_composed[i]),
            W_dec=W_dec[i].tolist(), b_dec=np.asarray(result.params["b_dec_H"][i]).tolist(),
            max_cos=np.asarray(result.scores.max_cos_D[i]).tolist(),
            # the training curve at the end of each interval it averages (what wandb and loss curves read)
            snap_step=[every * (j + 1) for j in range(len(result.curve[i]))],
            snap_loss=np.asarray(result.curve[i]).tolist(),
            train_seconds=seconds / chunk.n_models,
        )
        rows.append(row)
    return pd.DataFrame(rows)
