"""A stored model as the core sees it: its parameters from a row of the store and its forward
pass (``toymodels.models``), for figures that must run a trained model on fresh inputs (a
full-reconstruction error, a mean-ablated layer, a detector's hidden vectors), and for a notebook
(``StoredModel``, from ``analysis.api.model``). Evaluation only: nothing here trains."""

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
    return {
        name: (row[name] if name in row and not _missing(row[name]) else default)
        for name, default in kind.options.items()
    }


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def param_names(row: pd.Series) -> list[str]:
    """The kind's parameter names (each a column of the store; ``W`` is the feature directions)."""
    n, m, options = int(row["n_features"]), int(row["n_hidden"]), kind_options(row)
    shapes = jax.eval_shape(
        lambda key: init_params(key, n, m, 1.0, row["model"], options), jax.random.key(0)
    )
    return list(shapes)  # traced, never run: no compile per shape


def params_of(row: pd.Series) -> dict:
    """The row's trained parameters as float32 arrays, by name."""
    return {name: jnp.asarray(nested_array(row[name]), jnp.float32) for name in param_names(row)}


def outputs_of(row: pd.Series, x_FxB) -> np.ndarray:
    """The trained model's outputs (O×B) on a feature-major batch."""
    from toymodels.models import bind_kind, forward

    kind = bind_kind(row["model"], int(row["n_features"]), int(row["n_hidden"]), kind_options(row))
    return np.asarray(forward(params_of(row), jnp.asarray(x_FxB, jnp.float32), kind))


class StoredModel:
    """One trained model of a stored sweep, as a Python user holds it: its table ``row`` (every
    stored column: ``model["loss"]``, ``model["W"]``) and callable, ``model(x)`` giving the
    outputs of its kind's forward pass (``toymodels.models``) on a batch.

    The parameters are read from the row's columns of the kind's parameter names and nothing else;
    the kind must be built in or registered in this session (``register_model``): making a model
    never imports or runs code the caller did not name. Batches are batch-first, as in a notebook:
    ``x`` is B×n (or one example of n), the outputs B×O (O = n for most kinds, 1 for
    ``quadratic``), ``model.hidden(x)`` B×m. Evaluation only."""

    def __init__(self, row: pd.Series):
        if "model" not in row or "W" not in row:
            raise ValueError(
                "this row is not a toy model (an SAE sweep's rows are SAEs); load a toy-model sweep"
            )
        name = str(row["model"])
        kind = MODELS.find(name)
        if kind is None:
            raise ValueError(
                f"the model kind {name!r} of this row is neither built in nor registered in this "
                "session: register it first (toymodels.models.register_model, or import your file "
                "that does); loading never runs a sweep's plugin files for you"
            )
        from toymodels.models import bind_kind

        # A kind with static options (``ModelKind.bind``) is specialised to the row's.
        self.row = row
        self.kind = bind_kind(kind, int(row["n_features"]), int(row["n_hidden"]), kind_options(row))
        self.params = {name: np.asarray(value) for name, value in params_of(row).items()}

    @property
    def n_features(self) -> int:
        return int(self.row["n_features"])

    def __getitem__(self, column: str):
        return self.row[column]

    def __repr__(self) -> str:
        shape = f"n={self.n_features}, m={int(self.row['n_hidden'])}"
        where = ", ".join(f"{k}={self.row[k]}" for k in ("uid", "seed") if k in self.row)
        return (
            f"StoredModel({self.kind.name}, {shape}, {where}, loss={float(self.row['loss']):.4g})"
        )

    def _batch(self, x) -> tuple[jax.Array, bool]:
        x = jnp.asarray(x, jnp.float32)
        single = x.ndim == 1
        x_BxF = x[None] if single else x
        if x_BxF.ndim != 2 or x_BxF.shape[1] != self.n_features:
            raise ValueError(
                f"x must be B×{self.n_features} (or one example of {self.n_features}), "
                f"got shape {tuple(x.shape)}"
            )
        return x_BxF.T, single

    def forward(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(outputs B×O, hidden B×m) on a batch ``x`` (B×n, or one example: then O and m)."""
        from toymodels.models import forward_with_hidden

        x_FxB, single = self._batch(x)
        params = {name: jnp.asarray(value, jnp.float32) for name, value in self.params.items()}
        out, hidden = (np.asarray(a).T for a in forward_with_hidden(params, x_FxB, self.kind))
        return (out[0], hidden[0]) if single else (out, hidden)

    def __call__(self, x) -> np.ndarray:
        """The model's outputs on ``x`` (B×n → B×O)."""
        return self.forward(x)[0]

    def hidden(self, x) -> np.ndarray:
        """The hidden activations on ``x`` (B×n → B×m)."""
        return self.forward(x)[1]
