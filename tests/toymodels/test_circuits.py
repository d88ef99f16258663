"""Residual MLPs and capacity across layers (issue 17 item 4): exact constructions of both kinds,
the per-layer snapshots, mean-ablation and the learned-then-dropped rule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from analysis.measures.circuits import ablation_losses, dropped
from tests.helpers import compose_config
from toymodels import HParams, TrainSpec, metrics, model_keys, train_many
from toymodels.data import data_spec
from toymodels.models import MODELS, model_loss
from toymodels.models.residual import GROUP, embedding
from toymodels.registry import ConfigError


def _abs_circuit(n: int) -> dict:
    """One layer of n units, unit i reading −x_i and writing 2·E_i: x + 2ReLU(−x) = |x|."""
    E = embedding(n)
    return {"W_in": -E.T[None], "b_in": jnp.zeros((1, n)), "W_out": 2.0 * E[None]}


def _group_circuit(n: int) -> dict:
    """Two layers of n units: the first makes |x| as above; the second's first n/4 units read
    Σ_{i∈g} |x_i| − 1 and write it to group g's output direction."""
    d = n + n // GROUP
    E = embedding(d)
    W_in = jnp.zeros((2, n, d)).at[0].set(-E[:, :n].T)
    W_out = jnp.zeros((2, d, n)).at[0].set(2.0 * E[:, :n])
    b_in = jnp.zeros((2, n))
    for g in range(n // GROUP):
        W_in = W_in.at[1, g].set(E[:, g * GROUP : (g + 1) * GROUP].sum(axis=1))
        W_out = W_out.at[1, :, g].set(E[:, n + g])
        b_in = b_in.at[1, g].set(-1.0)
    return {"W_in": W_in, "b_in": b_in, "W_out": W_out}


def test_both_kinds_have_exact_circuits_and_read_what_the_embedding_says():
    x = jax.random.uniform(jax.random.key(0), (8, 4096), minval=-1.0, maxval=1.0)
    x = jnp.where(jax.random.uniform(jax.random.key(1), x.shape) < 0.5, x, 0.0)
    ones = jnp.ones((8,))
    for kind, params in (
        ("residual_mlp", _abs_circuit(8)),
        ("residual_mlp_groups", _group_circuit(8)),
    ):
        assert (
            float(model_loss(params, x, ones, kind)) < 1e-10
        )  # (rows and dense forms agree: test_kinds)
    R = MODELS.get("residual_mlp").read_matrices(_abs_circuit(8))
    np.testing.assert_allclose(
        R[0], -np.eye(8), atol=1e-6
    )  # unit i reads −x_i alone: capacity 1 each
    np.testing.assert_allclose(metrics.capacity(np.asarray(R)), np.ones((1, 8)), atol=1e-6)


def test_snapshots_record_each_layers_capacity_and_it_sums_to_at_most_the_width():
    models, n, m = 2, 8, 8  # n·m > 50: the dense form (the rows form is checked above)
    spec = TrainSpec(
        n_features=n,
        n_hidden=m,
        model="residual_mlp",
        model_options=(("layers", 2),),
        data=data_spec("signed"),
        steps=20,
        batch_size=64,
        snapshot_every=10,
        eval_samples=64,
    )
    f32 = lambda v: jnp.full((models,), v, jnp.float32)
    hp = HParams(
        density_F=jnp.full((models, n), 0.3),
        importance_F=jnp.ones((models, n)),
        lr=f32(1e-2),
        weight_decay=f32(0.01),
    )
    result = jax.device_get(train_many(spec, model_keys(0, np.arange(models)), hp))
    C = np.asarray(result.snapshots.layer_capacity_SxLxF)
    assert C.shape == (models, 2, 2, n)
    assert np.all(C.sum(axis=-1) <= m // 2 + 1e-4)
    final = metrics.capacity(
        np.asarray(
            MODELS.get("residual_mlp").read_matrices(jax.tree.map(lambda a: a[0], result.params))
        )
    )
    np.testing.assert_allclose(C[0, -1], final, rtol=1e-5, atol=1e-6)
    assert MODELS.get("residual_mlp").features(result.params).shape == (models, m, n)


def _row(kind: str, params: dict, n: int, m: int, layers: int) -> pd.Series:
    return pd.Series(
        {
            "model": kind,
            "n_features": n,
            "n_hidden": m,
            "layers": layers,
            "data_kind": "signed",
            "feature_density": [0.5] * n,
            "feature_importance": [1.0] * n,
            **{k: np.asarray(v).tolist() for k, v in params.items()},
        }
    )


def test_mean_ablating_the_only_layer_of_an_exact_circuit_costs_what_the_skip_path_alone_costs():
    n = 8
    result = ablation_losses(_row("residual_mlp", _abs_circuit(n), n, n, 1), examples=8192)
    assert result["clean"] < 1e-10
    # Without the layer's write the output is x + E[2ReLU(−x)]: per feature E[(|x| − x − c)²] with
    # c = E[|x| − x] = p/2 (x = 0 w.p. 1 − p, else U[−1, 1]): p·2/3 − p²/4 at p = 0.5.
    assert result["ablated"][0] == pytest.approx(0.5 * 2 / 3 - 0.25 / 4, rel=0.05)
    groups = ablation_losses(
        _row("residual_mlp_groups", _group_circuit(n), n, 2 * n, 2), examples=4096
    )
    assert groups["clean"] < 1e-10 and min(groups["ablated"]) > 1e-3


def test_a_feature_is_dropped_only_after_being_held_long_enough():
    held_FxS = np.array(
        [
            [1, 1, 1, 1, 0],  # held 4 snapshots, not at the end: dropped
            [1, 1, 1, 0, 0],  # held 3: dropped
            [1, 1, 0, 1, 0],  # never 3 in a row: not dropped
            [0, 1, 1, 1, 1],
        ],
        bool,
    )  # held at the end: kept
    assert dropped(held_FxS.T, persist=3).tolist() == [True, True, False, False]


def test_layers_must_share_the_units_and_groups_must_tile_the_features():
    with pytest.raises(ConfigError, match="model.options.layers.*divisor"):
        compose_config(["experiment=circuits_small", "sweep.grid.layers=[1,3]"])
    with pytest.raises(ConfigError, match="model.n_features.*multiple of 4"):
        compose_config(["experiment=circuits_small", "model.n_features=18"])
