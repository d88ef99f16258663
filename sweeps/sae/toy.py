"""Toy models of a stored sweep as the sources of an SAE sweep (``sae.source=toy``): each model's own
data kind and forward pass (``toymodels.sae.toy.ToySource``), read through the store's public
reader (``toymodels-sae``, ``sweeps.sae.cli``, checks its options with the same readers)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from toymodels.registry import ConfigError

if TYPE_CHECKING:
    from toymodels.data import DataSpec

# Stored toy columns copied beside each SAE's scores; a toy grid axis that an SAE column already
# names (lr, steps, ...) is copied as toy_<axis>.
TOY_VALUES = ("seed", "loss", "model", "data_kind", "n_features", "n_hidden")
_CACHE: dict = {}


def select_models(table: pd.DataFrame, query: str | None, key: str) -> pd.DataFrame:
    """The models a pandas ``query`` selects (all without one); a bad or empty selection is a
    ConfigError naming ``key`` (``sae.toy.models``, or ``--models`` of ``toymodels-sae``)."""
    if not query:
        return table
    try:
        chosen = table.query(query)
    except (
        NameError,
        SyntaxError,
        ValueError,
        TypeError,
        KeyError,
    ) as error:  # what a bad query raises
        raise ConfigError(
            key,
            f"bad query {query!r} ({type(error).__name__}: {error}); "
            f"columns: {', '.join(c for c in table.columns if table[c].dtype != object)}",
        ) from None
    if chosen.empty:
        raise ConfigError(key, f"query {query!r} selects no model out of {len(table)}")
    return chosen


def load_sweep(root: Path, key: str) -> tuple[pd.DataFrame, dict]:
    """The stored sweep's table and config, through the store's public reader; a directory that
    holds none is a ConfigError naming ``key``."""
    from sweeps.store import RESULTS, read_config, read_results

    if not (root / RESULTS).exists():
        raise ConfigError(
            key, f"{root} holds no {RESULTS}: is it a sweep's output directory (sweep.out)?"
        )
    table = read_results(root)
    if table.empty:
        raise ConfigError(key, f"{root} holds no finished model yet")
    return table, read_config(root)


def stored_data_spec(config: dict):
    """The sweep's DataSpec (kind, set size, magnitude, rest scale) as the planner built it, after
    loading the sweep's plugin files (a user's kinds)."""
    from omegaconf import OmegaConf

    from sweeps.config_kinds import data_spec_of
    from toymodels.plugins import load_plugins

    load_plugins(config.get("plugins", []))
    return data_spec_of(OmegaConf.create(config))


def toy_arrays(models: pd.DataFrame, model: str, n: int, m: int) -> dict:
    """Every toy model's parameters (rebuilt from the stored columns of the kind's parameter
    names) and feature densities, stacked along a leading model axis."""
    from sweeps.store import as_matrix
    from toymodels.sae.toy import param_names

    names = param_names(model, n, m)
    missing = [name for name in names if name not in models.columns]
    if missing:
        raise ConfigError(
            "sae.toy.sweep", f"the stored {model!r} models have no column {missing[0]!r}"
        )
    params = {
        name: np.stack(
            [np.asarray(np.asarray(v, dtype=object).tolist(), np.float32) for v in models[name]]
        )
        for name in names
    }
    return {"params": params, "density_F": as_matrix(models["feature_density"]).astype(np.float32)}


def toy_measures(W_NxHxF: np.ndarray) -> dict:
    """The toy models' superposition (docs/science/metrics.md) beside each SAE's scores."""
    from toymodels import metrics

    return {
        "interference_mean": metrics.interference(W_NxHxF).mean(axis=-1),
        "dims_per_feature": metrics.dimensions_per_feature(W_NxHxF),
    }


def stored_toys(config) -> tuple[pd.DataFrame, dict, DataSpec]:
    """The stored sweep's selected models, its config and its DataSpec (read once per file version)."""
    root = Path(config.sae.toy.sweep)
    results = root / "results.parquet"
    key = (
        str(root.resolve()),
        results.stat().st_mtime_ns if results.is_file() else None,
        config.sae.toy.models,
    )
    if key not in _CACHE:
        table, stored = load_sweep(root, "sae.toy.sweep")
        models = select_models(table, config.sae.toy.models, "sae.toy.models")
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
    from sweeps.store import as_matrix
    from toymodels.sae.toy import ToySource

    models, stored, data = stored_toys(config)
    axes = list(stored.get("sweep", {}).get("grid", {}))
    measures = toy_measures(np.stack([as_matrix(w) for w in models["W"]]))
    return [
        (
            ToySource(
                model=str(row["model"]),
                data=data,
                n_features=int(row["n_features"]),
                n_hidden=int(row["n_hidden"]),
            ),
            (),
            int(row["uid"]),
            _info(row, axes, measures, i),
        )
        for i, row in models.iterrows()
    ]


def toy_carry(config) -> dict[int, dict]:
    """Each selected toy model's parameters and feature densities (numpy) by its uid: what the
    chunks of its SAEs carry to workers (``sweeps.sae.job``)."""
    models, _, _ = stored_toys(config)
    out: dict[int, dict] = {}
    for (model, n, m), chosen in models.groupby(["model", "n_features", "n_hidden"], sort=False):
        arrays = toy_arrays(chosen, str(model), int(n), int(m))
        out.update(
            {
                int(uid): {
                    "params": {name: v[i] for name, v in arrays["params"].items()},
                    "density_F": arrays["density_F"][i],
                }
                for i, uid in enumerate(chosen["uid"])
            }
        )
    return out


def toy_kinds(source) -> tuple:
    """The user's own model and data kinds a toy source needs on a worker (none for worlds)."""
    from toymodels.plugins import kinds_used
    from toymodels.sae.toy import ToySource

    return kinds_used([source.model], [source.data.kind]) if isinstance(source, ToySource) else ()


def toy_source_arrays(carry, points) -> dict:
    """One toy model's arrays per SAE (a leading SAE axis), from a chunk's ``carry``."""
    import jax

    return jax.tree.map(lambda *leaves: np.stack(leaves), *(carry[p.source_uid] for p in points))
