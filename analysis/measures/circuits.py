"""Capacity across layers and over training, "circuit economics" (issue 17 item 4): residual MLPs
(``toymodels.models.residual``) whose L layers share a fixed total of m units.

From the snapshots (``snap_layer_capacity``, ``snap_layer_norms``: each layer's C_i and ‖R_i‖ of
feature i's read vector R_i = W_in·E_i, S×L×n) and the final weights:

- **held**: feature i is held at a snapshot when its read vectors carry at least ``HELD_CAPACITY``
  of capacity summed over layers and their total norm is at least ``HELD_NORM_SHARE`` of the
  largest feature's (a feature nobody reads keeps random leftovers of its initial read vectors,
  whose capacity alone can be large);
- **learned then dropped**: held over at least ``PERSIST`` consecutive snapshots, not held at
  the end;
- **value-per-capacity cut-off**: feature i is worth v_i = I_i·p_i·E[(|x| − x)²] = I_i·p_i·2/3
  (what computing |x_i| saves over passing x_i through the skip); at each snapshot, the cheapest
  held feature's value per unit of capacity, v_i / Σ_l C_i^l, and the dearest dropped feature's
  value: the price below which features are not bought;
- **mean-ablation**: the loss increase when one layer's write W_out·h is replaced by its mean over
  the data (evaluated with the kind's own forward pass).

The thresholds are ours (the issue gives none) and are written on every figure.
"""

from __future__ import annotations

from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis.measures.model_rows import params_of
from analysis.seeds import best_of_seeds
from sweeps.store import nested_array

HELD_CAPACITY = 0.5
HELD_NORM_SHARE = 0.5
PERSIST = 3
ABS_GAIN = 2.0 / 3.0  # E[(|x| − x)²] for x ~ U[−1, 1]


def layer_series(row: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps S, C S×L×n, ‖R‖ S×L×n) of one model."""
    return (
        np.asarray(row["snap_step"], float),
        nested_array(row["snap_layer_capacity"]),
        nested_array(row["snap_layer_norms"]),
    )


def held_mask(C_SxLxF: np.ndarray, N_SxLxF: np.ndarray) -> np.ndarray:
    """S×n: which features are held at each snapshot (module docstring)."""
    total_C = C_SxLxF.sum(axis=1)
    norm = np.sqrt((N_SxLxF**2).sum(axis=1))
    return (total_C >= HELD_CAPACITY) & (norm >= HELD_NORM_SHARE * norm.max(axis=1, keepdims=True))


def dropped(held_SxF: np.ndarray, persist: int = PERSIST) -> np.ndarray:
    """Features held over ``persist`` consecutive snapshots at some time and not held at the end."""
    run = np.zeros(held_SxF.shape[1], int)
    ever = np.zeros(held_SxF.shape[1], bool)
    for held in held_SxF:
        run = np.where(held, run + 1, 0)
        ever |= run >= persist
    return ever & ~held_SxF[-1]


def feature_values(row: pd.Series) -> np.ndarray:
    """v_i = I_i·p_i·E[(|x| − x)²]: the loss computing |x_i| saves over the skip path."""
    return (
        np.asarray(row["feature_importance"], float)
        * np.asarray(row["feature_density"], float)
        * ABS_GAIN
    )


def cutoff_series(row: pd.Series) -> pd.DataFrame:
    """Per snapshot: held features, the cheapest held feature's value per capacity and value, and
    the dearest not-held feature's value."""
    steps, C, N = layer_series(row)
    held = held_mask(C, N)
    value = feature_values(row)
    per_capacity = value[None, :] / np.maximum(C.sum(axis=1), 1e-12)
    rows = []
    for s, step in enumerate(steps):
        h = held[s]
        rows.append(
            {
                "step": step,
                "held": int(h.sum()),
                "cutoff_per_capacity": float(per_capacity[s, h].min()) if h.any() else np.nan,
                "cheapest_held_value": float(value[h].min()) if h.any() else np.nan,
                "dearest_dropped_value": float(value[~h].max()) if (~h).any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _batch(row: pd.Series, examples: int, seed: int = 7):
    from toymodels import rng
    from toymodels.data import data_spec, sample_batch

    density = jnp.asarray(row["feature_density"], jnp.float32)
    return sample_batch(
        data_spec(row.get("data_kind", "signed")),
        rng.key_words(jax.random.key(seed)),
        jnp.uint32(0),
        density,
        examples,
    )


def ablation_losses(row: pd.Series, examples: int = 8192) -> dict:
    """The loss (the kind's own: importance-weighted MSE) of the trained model and with each layer
    mean-ablated, on fresh inputs: {"clean": L, "ablated": [L_0, …]}."""
    from toymodels.models import DENSE, MODELS, forward
    from toymodels.models.residual import forward_ablated, layer_writes

    kind = MODELS.get(row["model"])
    params = params_of(row)
    x = _batch(row, examples)
    imp = jnp.asarray(row["feature_importance"], jnp.float32)
    y = cast(jax.Array, kind.target(x, imp, DENSE))  # an array in the DENSE form
    weight = imp if kind.importance_weighted else jnp.ones((y.shape[0],))

    def loss(out):
        return float(jnp.mean(weight[:, None] * (y - out) ** 2))

    means = jnp.mean(jax.jit(layer_writes)(params, x), axis=2)  # L×d
    ablated = jax.jit(forward_ablated, static_argnums=2)
    return {
        "clean": loss(jax.jit(forward, static_argnums=2)(params, x, row["model"])),
        "ablated": [
            loss(ablated(params, x, layer, means[layer])) for layer in range(means.shape[0])
        ],
    }


def circuit_table(table: pd.DataFrame) -> pd.DataFrame:
    """The best seed per (model, layers, density) with its measures: learned-then-dropped count,
    held features at the end, per-layer Σ C and mean-ablation loss increases."""
    keys = [k for k in ("model", "layers", "density") if k in table]
    best = best_of_seeds(table, keys)
    measures = []
    for _, row in best.iterrows():
        _steps, C, N = layer_series(row)
        held = held_mask(C, N)
        ablation = ablation_losses(row)
        measures.append(
            {
                "n_dropped": int(dropped(held).sum()),
                "n_held": int(held[-1].sum()),
                "layer_capacity_sum": C[-1].sum(axis=1).tolist(),
                "ablation_increase": [a - ablation["clean"] for a in ablation["ablated"]],
                "clean_loss": ablation["clean"],
            }
        )
    return pd.concat([best, pd.DataFrame(measures)], axis=1)
