"""Toy models of a stored sweep as the sources of an SAE sweep (``sae.source=toy``): each model's own
data kind and forward pass (``toymodels.sae.toy.ToySource``), read through the store's public
reader as ``toymodels-sae`` reads them (``sweeps.sae.cli``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from toymodels.registry import ConfigError

# Stored toy columns copied beside each SAE's scores; a toy grid axis that an SAE column already
# names (lr, steps, ...) is copied as toy_<axis>.
TOY_VALUES = ("seed", "loss", "model", "data_kind", "n_features", "n_hidden")
_CACHE: dict = {}


def stored_toys(config) -> tuple[pd.DataFrame, dict, object]:
    """The stored sweep's selected models, its config and its DataSpec (read once per file version)."""
    from sweeps.sae.cli import UsageError, load_sweep, select_models, stored_data_spec

    root = Path(config.sae.toy.sweep)
    results = root / "results.parquet"
    key = (str(root.resolve()), results.stat().st_mtime_ns if results.is_file() else None, config.sae.toy.models)
    if key not in _CACHE:
        try:
            table, stored = load_sweep(root)
            models = select_models(table, config.sae.toy.models)
        except UsageError as error:
            raise ConfigError("sae.toy.models" if "--models" in str(error) else "sae.toy.sweep",
                              str(error).split(": ", 1)[-1]) from None
        _CACHE.clear()
        _CACHE[key] = (models.reset_index(drop=True), stored, stored_data_spec(stored))
    return _CACHE[key]


def _info(row: pd.Series, axes: list[str], measures: dict, i: int) -> tuple:
    from sweeps.sae.config import SAE_PER_AXES, SAE_STATIC_AXES

    taken = SAE_PER_AXES + SAE_STATIC_AXES + TOY_VALUES
    info = {("toy_" + a if a in taken else a): row[a] for a in axes if a in row}
    info.update({f"toy_{name}": row[name] for name in TOY_VALUES})
    info.update({name: float(values[i]) for name, values in measures.items()})
    return tuple((k, v.item() if isinstance(v, np.generic) else v) for k, v in info.items())


def toy_sources(config) -> list[tuple]:
    """(ToySource, (), toy uid, the toy's stored values) of every selected toy model."""
    from sweeps.sae.cli import toy_measures
    from sweeps.store import as_matrix
    from toymodels.sae.toy import ToySource

    models, stored, data = stored_toys(config)
    axes = list(stored.get("sweep", {}).get("grid", {}))
    measures = toy_measures(np.stack([as_matrix(w) for w in models["W"]]))
    return [(ToySource(model=str(row["model"]), data=data, n_features=int(row["n_features"]),
                       n_hidden=int(row["n_hidden"])), (), int(row["uid"]), _info(row, axes, measures, i))
            for i, row in models.iterrows()]


def toy_chunk_arrays(config, points) -> dict[int, dict]:
    """Each toy model's parameters and feature densities (numpy), for the chunk to carry to workers."""
    from sweeps.sae.cli import toy_arrays

    models, _, _ = stored_toys(config)
    chosen = models[models["uid"].isin({p.source_uid for p in points})]
    row = chosen.iloc[0]
    arrays = toy_arrays(chosen, str(row["model"]), int(row["n_features"]), int(row["n_hidden"]))
    return {int(uid): {"params": {name: v[i] for name, v in arrays["params"].items()},
                       "density_F": arrays["density_F"][i]} for i, uid in enumerate(chosen["uid"])}


def toy_kinds(source) -> tuple:
    """The user's own model and data kinds a toy source needs on a worker (none for worlds)."""
    from toymodels.plugins import kinds_used
    from toymodels.sae.toy import ToySource

    return kinds_used([source.model], [source.data.kind]) if isinstance(source, ToySource) else ()


def toy_source_arrays(chunk, points) -> dict:
    """One toy model's arrays per SAE (a leading SAE axis)."""
    import jax

    return jax.tree.map(lambda *leaves: np.stack(leaves), *(chunk.toy_arrays[p.source_uid] for p in points))
