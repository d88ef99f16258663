"""A stored model as the core sees it: its parameters from a row of the store and its forward
pass (``toymodels.models``), for figures that must run a trained model on fresh inputs (a
full-reconstruction error, a mean-ablated layer, a detector's hidden vectors). Evaluation only:
nothing here trains."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from sweeps.store import nested_array
from toymodels.models import MODELS, init_params


def kind_options(row: pd.Series) -> dict:
    """The row's model-kind options (stored as columns of the same name)."""
    kind = MODELS.get(row["model"])
    return {name: (row[name] if name in row and not _missing(row[name]) else default)
            for name, default in kind.options.items()}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def param_names(row: pd.Series) -> list[str]:
    """The kind's parameter names (each a column of the store; ``W`` is the feature directions)."""
    n, m, options = int(row["n_features"]), int(row["n_hidden"]), kind_options(row)
    shapes = jax.eval_shape(lambda key: init_params(key, n, m, 1.0, row["model"], options), jax.random.key(0))
    return list(shapes)  # traced, never run: no compile per shape


def params_of(row: pd.Series) -> dict:
    """The row's trained parameters as float32 arrays, by name."""
    return {name: jnp.asarray(nested_array(row[name]), jnp.float32) for name in param_names(row)}


def outputs_of(row: pd.Series, x_FxB) -> np.ndarray:
    """The trained model's outputs (O×B) on a feature-major batch."""
    from toymodels.models import bind_kind, forward

    kind = bind_kind(row["model"], int(row["n_features"]), int(row["n_hidden"]), kind_options(row))
    return np.asarray(forward(params_of(row), jnp.asarray(x_FxB, jnp.float32), kind))
