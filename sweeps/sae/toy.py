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
    """The models a ``query`` selects (all without one): a filter over the store's columns, parsed
    by ``sweeps.store.query`` (never evaluated as code); a bad or empty selection is a ConfigError
    naming ``key`` (``sae.toy.models``, or ``--models`` of ``toymodels-sae``)."""
    from sweeps.store.query import filter_rows

    return filter_rows(table, query, key)


def load_sweep(root: Path, key: str) -> tuple[pd.DataFrame, dict]:
    """The stored sweep's table and config, through the store's reader (``sweeps.store.read_stored``):
    a damaged ``results.parquet`` or chunk is never read (the finished chunks are, with a note), a
    damaged ``sweep.yaml`` is a ConfigError naming it; a directory that holds no sweep is a
    ConfigError naming ``key``."""
    import sys

    from sweeps.store import META, RESULTS, read_config, read_stored

    if not (root / RESULTS).exists() and not (root / META).exists():
        raise ConfigError(
            key, f"{root} holds no {RESULTS}: is it a sweep's output directory (sweep.out)?"
        )
    try:
        table, status = read_stored(root)
        config = read_config(root)
    except FileNotFoundError as error:
        raise ConfigError(key, str(error)) from None
    except ConfigError:
        raise
    except OSError as error:
        raise ConfigError(
            key, f"cannot read {error.filename or root}: {error.strerror or error}"
        ) from None
    if status:
        print(f"note: {status}", file=sys.stderr, flush=True)
    if table.empty:
        raise ConfigError(key, f"{root} holds no finished model yet")
    return table, config


def stored_data_spec(config: dict) -> DataSpec:
    """The sweep's DataSpec (kind, set size, magnitude, rest scale) as the planner built it. Runs
    none of the sweep's plug-in files: its own kinds must be registered already, from files the
    user named and ``sweeps.store.trust`` checked (``require_kinds``)."""
    from omegaconf import OmegaConf

    from sweeps.config_kinds import data_spec_of

    return data_spec_of(OmegaConf.create(config))


def toy_arrays(models: pd.DataFrame, model: str, n: int, m: int) -> list[dict]:
    """Each toy model's parameters (rebuilt from the stored columns of the kind's parameter names)
    and feature densities, in the order of ``models``' rows. Each model's arrays are its own: models
    of one kind whose shapes differ (a grid over a kind's option, e.g. layers) go side by side."""
    from sweeps.store import nested_array
    from toymodels.sae.toy import param_names

    names = param_names(model, n, m)
    missing = [name for name in names if name not in models.columns]
    if missing:
        raise ConfigError(
            "sae.toy.sweep", f"the stored {model!r} models have no column {missing[0]!r}"
        )
    return [
        {
            "params": {name: nested_array(row[name]).astype(np.float32) for name in names},
            "density_F": nested_array(row["feature_density"]).astype(np.float32),
        }
        for _, row in models.iterrows()
    ]


def toy_measures(W_NxHxF: np.ndarray) -> dict:
    """The toy models' superposition (docs/science/metrics.md) beside each SAE's scores."""
    from toymodels import metrics

    return {
        "interference_mean": metrics.interference(W_NxHxF).mean(axis=-1),
        "dims_per_feature": metrics.dimensions_per_feature(W_NxHxF),
    }


def stored_toys(config, section: str = "sae") -> tuple[pd.DataFrame, dict, DataSpec]:
    """The stored sweep's selected models, its config and its DataSpec (read once per file version).
    ``section``: the config section whose ``toy`` names them (``sae``, ``spd``)."""
    toy = getattr(config, section).toy
    root = Path(toy.sweep)
    results = root / "results.parquet"
    key = (
        str(root.resolve()),
        results.stat().st_mtime_ns if results.is_file() else None,
        toy.models,
        tuple(sorted(p.name for p in (root / "chunks").glob("*.parquet")))
        if (root / "chunks").is_dir()
        else (),
    )
    if key not in _CACHE:
        table, stored = load_sweep(root, f"{section}.toy.sweep")
        from sweeps.store import require_kinds, verify_plugins

        verify_plugins(
            root, stored, config.plugins, "plugins", allow_extra=True
        )  # loaded already: the user named them
        require_kinds(
            root, stored, f"{section}.toy.sweep", "name it in plugins=[FILE] on this command line"
        )
        models = select_models(table, toy.models, f"{section}.toy.models")
        _refuse_bound_kinds(models, section)
        _CACHE.clear()
        _CACHE[key] = (models.reset_index(drop=True), stored, stored_data_spec(stored))
    return _CACHE[key]


def _refuse_bound_kinds(models: pd.DataFrame, section: str = "sae") -> None:
    """An SAE reads a toy model's hidden layer through its kind's forward pass by name; a kind whose
    forward depends on its static options (``ModelKind.bind``: ``cc_residual``) is not read that way yet."""
    from toymodels.models import MODELS

    for name in models["model"].unique():
        kind = MODELS.find(str(name))
        if kind is not None and kind.bind is not None:
            raise ConfigError(
                f"{section}.toy.sweep",
                f"holds {name} models, whose forward pass depends on their options; "
                f"{section.upper()}s on them are not supported yet",
            )


def _info(row: pd.Series, axes: list[str], measures: dict, i: int) -> tuple:
    from sweeps.sae.config import SAE_STATIC_AXES, TRAIN_PER_AXES, kind_hparams

    taken = TRAIN_PER_AXES + tuple(kind_hparams()) + SAE_STATIC_AXES + TOY_VALUES
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


def toy_carry(config, section: str = "sae") -> dict[int, dict]:
    """Each selected toy model's parameters and feature densities (numpy) by its uid: what the
    chunks of its SAEs (or decompositions) carry to workers (``sweeps.sae.job``)."""
    models, _, _ = stored_toys(config, section)
    out: dict[int, dict] = {}
    # grouped by the stored columns that fix a model's parameter names
    for (model, n, m), chosen in models.groupby(["model", "n_features", "n_hidden"], sort=False):
        arrays = toy_arrays(chosen, str(model), int(n), int(m))
        out.update(zip((int(uid) for uid in chosen["uid"]), arrays))
    return out


def toy_kinds(source, sae_kind: str = "plain") -> tuple:
    """The user's own kinds a chunk needs on a worker: its SAE kind, and a toy source's model and
    data kinds."""
    from toymodels.plugins import kinds_used
    from toymodels.sae.toy import ToySource

    if isinstance(source, ToySource):
        return kinds_used([source.model], [source.data.kind], sae_names=[sae_kind])
    return kinds_used([], [], sae_names=[sae_kind])


def toy_source_arrays(carry, points) -> dict:
    """One toy model's arrays per SAE (a leading SAE axis), from a chunk's ``carry``."""
    import jax

    return jax.tree.map(lambda *leaves: np.stack(leaves), *(carry[p.source_uid] for p in points))
