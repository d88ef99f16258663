"""Properties of the pure JAX core: batching, compilation, determinism and the known optima."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels import HParams, TrainSpec, make_train, model_keys, rng, train_many
from toymodels.data import importance_profile, sample_features
from toymodels.models import DENSE, forward, init_std
from toymodels.optim import lr_multiplier


def hparams(n_models, n_features, density=1.0, importance=None, lr=1e-3, wd=1e-2):
    density_F = np.broadcast_to(np.asarray(density, np.float32), (n_models, n_features))
    imp = np.ones(n_features) if importance is None else importance
    return HParams(
        density_F=jnp.asarray(density_F),
        importance_F=jnp.asarray(
            np.broadcast_to(np.asarray(imp, np.float32), (n_models, n_features))
        ),
        lr=jnp.full((n_models,), lr, jnp.float32),
        weight_decay=jnp.full((n_models,), wd, jnp.float32),
    )


def take(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


SMALL = TrainSpec(
    n_features=5, n_hidden=2, steps=60, batch_size=64, snapshot_every=25, eval_samples=512
)
# n·m = 72 > UNROLL_MAX_WEIGHTS: the dense (matrix) path; SMALL takes the unrolled rows path.
WIDE = TrainSpec(
    n_features=12, n_hidden=6, steps=60, batch_size=64, snapshot_every=25, eval_samples=512
)
BOTH_PATHS = pytest.mark.parametrize("spec", [SMALL, WIDE], ids=["rows", "dense"])


@BOTH_PATHS
def test_vmapped_models_equal_single_runs(spec):
    n = spec.n_features
    hp = HParams(
        density_F=jnp.asarray(np.linspace(0.1, 1.0, 4)[:, None].repeat(n, 1), jnp.float32),
        importance_F=jnp.asarray(np.stack([0.9 ** np.arange(n)] * 4), jnp.float32),
        lr=jnp.asarray([1e-3, 3e-3, 1e-2, 3e-2], jnp.float32),
        weight_decay=jnp.asarray([0.0, 1e-2, 1e-1, 1e-2], jnp.float32),
    )
    keys = model_keys(0, np.arange(4))
    many = train_many(spec, keys, hp)
    single = jax.jit(make_train(spec))
    for i in range(4):
        one = single(keys[i], take(hp, i))
        np.testing.assert_allclose(many.params["W"][i], one.params["W"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(many.eval_loss[i], one.eval_loss, rtol=1e-5)
        np.testing.assert_allclose(many.snapshots.loss_S[i], one.snapshots.loss_S, rtol=1e-5)


@pytest.mark.parametrize("n,m", [(3, 2), (12, 6)], ids=["rows", "dense"])
def test_jit_equals_no_jit(n, m):
    # 4 steps: a snapshot interval (3) and a short tail (4); eager steps cost seconds each.
    spec = TrainSpec(
        n_features=n, n_hidden=m, steps=4, batch_size=16, snapshot_every=3, eval_samples=64
    )
    assert spec.snapshot_steps == (3, 4)
    key = model_keys(0, [7])[0]
    hp = take(hparams(1, n, density=0.5), 0)
    jitted = jax.jit(make_train(spec))(key, hp)
    with jax.disable_jit():
        eager = make_train(spec)(key, hp)
    np.testing.assert_allclose(jitted.params["W"], eager.params["W"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jitted.eval_loss, eager.eval_loss, rtol=1e-5)


@BOTH_PATHS
def test_same_seed_same_bits_and_different_seed_differs(spec):
    hp = hparams(2, spec.n_features, density=0.3)
    a = train_many(spec, model_keys(0, [1, 2]), hp)
    b = train_many(spec, model_keys(0, [1, 2]), hp)
    c = train_many(spec, model_keys(1, [1, 2]), hp)
    assert np.array_equal(np.asarray(a.params["W"]), np.asarray(b.params["W"]))
    assert np.array_equal(np.asarray(a.eval_loss), np.asarray(b.eval_loss))
    assert not np.allclose(np.asarray(a.params["W"]), np.asarray(c.params["W"]))


def test_snapshots_cover_every_interval_and_a_short_tail():
    spec = TrainSpec(
        n_features=4, n_hidden=2, steps=70, batch_size=32, snapshot_every=20, eval_samples=256
    )
    assert spec.snapshot_steps == (20, 40, 60, 70)
    r = train_many(spec, model_keys(0, [0]), hparams(1, 4))
    np.testing.assert_array_equal(r.snapshots.step_S[0], [20, 40, 60, 70])
    assert r.snapshots.norms_SxF.shape == (1, 4, 4)
    assert r.snapshots.capacity_SxF.shape == (1, 4, 4)
    np.testing.assert_allclose(
        r.snapshots.norms_SxF[0, -1], np.linalg.norm(r.params["W"][0], axis=0), rtol=1e-5
    )
    assert TrainSpec(n_features=2, n_hidden=1, steps=50, snapshot_every=0).snapshot_steps == (50,)


@pytest.mark.parametrize("n", [4, 8], ids=["rows", "dense"])
def test_dense_features_with_enough_dimensions_give_identity(n):
    spec = TrainSpec(
        n_features=n,
        n_hidden=n,
        model="linear",
        steps=3000,
        batch_size=256,
        snapshot_every=0,
        eval_samples=4096,
    )
    r = train_many(spec, model_keys(0, [0]), hparams(1, n, lr=1e-2, wd=0.0))
    W = np.asarray(r.params["W"][0])
    np.testing.assert_allclose(W.T @ W, np.eye(n), atol=0.05)
    assert float(r.eval_loss[0]) < 1e-4


@pytest.mark.parametrize("n,m", [(6, 3), (16, 4)], ids=["rows", "dense"])
def test_linear_model_learns_top_m_features_by_importance(n, m):
    spec = TrainSpec(
        n_features=n,
        n_hidden=m,
        model="linear",
        steps=4000,
        batch_size=256,
        snapshot_every=0,
        eval_samples=4096,
    )
    r = train_many(
        spec, model_keys(0, [0, 1]), hparams(2, n, importance=0.7 ** np.arange(n), lr=1e-2, wd=0.0)
    )
    norms = np.linalg.norm(np.asarray(r.params["W"]), axis=1)
    assert np.all(norms[:, :m] > 0.9), norms
    assert np.all(norms[:, m:] < 0.15), norms


@pytest.mark.reproduction
def test_sparse_relu_model_superposes_five_features_in_two_dimensions():
    # TMS intro: at density 0.05 all five features are represented (a pentagon), with negative bias.
    spec = TrainSpec(
        n_features=5, n_hidden=2, steps=6000, batch_size=1024, snapshot_every=0, eval_samples=16384
    )
    r = train_many(
        spec, model_keys(0, [0, 1, 2]), hparams(3, 5, density=0.05, importance=0.9 ** np.arange(5))
    )
    best = int(np.argmin(r.eval_loss))
    norms = np.linalg.norm(np.asarray(r.params["W"][best]), axis=0)
    assert np.all(norms > 0.8), norms
    assert np.all(np.asarray(r.params["b"][best]) < 0)


def test_sampler_statistics():
    density = jnp.asarray([1.0, 0.5, 0.1, 0.01])
    x = np.asarray(sample_features(rng.key_words(jax.random.key(0)), 3, density, 200_000))
    assert x.shape == (4, 200_000)  # feature-major
    active = x > 0
    np.testing.assert_allclose(active.mean(1), density, rtol=0.05)
    for i in range(4):
        values = x[i, active[i]]
        assert values.max() < 1.0
        assert values.mean() == pytest.approx(0.5, abs=0.02)
        assert values.var() == pytest.approx(1 / 12, abs=0.01)
    assert abs(np.corrcoef(x[0], x[1])[0, 1]) < 0.01  # features are independent


def test_importance_profiles():
    np.testing.assert_allclose(importance_profile(3, "geometric", decay=0.9), [1, 0.9, 0.81])
    np.testing.assert_allclose(importance_profile(3, "logspace", ratio=100), [1, 0.1, 0.01])
    np.testing.assert_allclose(importance_profile(2, "explicit", values=(2.0, 3.0)), [2, 3])
    with pytest.raises(ValueError):
        importance_profile(2, "explicit", values=(1.0,))


def test_loss_is_importance_weighted_mean_over_batch_and_features():
    x_FxB = jnp.asarray([[1.0, 0.5], [0.0, 0.5]])  # two samples: (1, 0) and (0.5, 0.5)
    xhat = jnp.zeros_like(x_FxB)
    imp = jnp.asarray([1.0, 0.1])
    expected = (1 * 1 + 0.1 * 0 + 1 * 0.25 + 0.1 * 0.25) / 4
    assert float(DENSE.weighted_mse(x_FxB, xhat, imp)) == pytest.approx(expected)
    params = {"W": jnp.zeros((1, 2)), "b": jnp.asarray([-1.0, 2.0])}
    np.testing.assert_allclose(forward(params, x_FxB, "relu"), [[0, 0], [2, 2]])
    np.testing.assert_allclose(forward(params, x_FxB, "linear"), [[-1, -1], [2, 2]])
    W = jnp.asarray([[1.0, 2.0]])
    out = forward({"W": W, "b": jnp.zeros(2)}, x_FxB, "linear")
    np.testing.assert_allclose(out, (W.T @ W) @ x_FxB)  # x' = WᵀW x, column per sample


@pytest.mark.parametrize("n,m", [(5, 2), (10, 5), (20, 5), (100, 20)])  # unrolled and matrix paths
def test_forward_matches_the_matrix_formula(n, m):
    rng_np = np.random.default_rng(n)
    W = rng_np.normal(size=(m, n)).astype(np.float32)
    b = rng_np.normal(size=n).astype(np.float32)
    x = rng_np.uniform(size=(n, 64)).astype(np.float32)
    out = forward({"W": jnp.asarray(W), "b": jnp.asarray(b)}, jnp.asarray(x), "relu")
    np.testing.assert_allclose(out, np.maximum(W.T @ W @ x + b[:, None], 0), rtol=1e-4, atol=1e-4)


def test_init_std():
    assert init_std(5, 2, "xavier") == pytest.approx(np.sqrt(2 / 7))
    # Xavier-normal on a stacked (instances, n, m) tensor: fan_in n·m, fan_out instances·m
    assert init_std(5, 2, "notebook", 10) == pytest.approx(np.sqrt(2 / (2 * 5 + 10 * 2)))


def test_schedules():
    assert float(lr_multiplier(0, "constant", 100)) == 1.0
    assert float(lr_multiplier(50, "linear", 100)) == pytest.approx(0.5)
    assert float(lr_multiplier(0, "cosine", 100)) == pytest.approx(1.0)
    assert float(lr_multiplier(100, "cosine", 100)) == pytest.approx(0.0, abs=1e-7)
    assert float(lr_multiplier(0, "warmup_cosine", 100, 10)) == pytest.approx(0.0)
    assert float(lr_multiplier(5, "warmup_cosine", 100, 10)) == pytest.approx(0.5)
    assert float(lr_multiplier(10, "warmup_cosine", 100, 10)) == pytest.approx(1.0)
    assert float(lr_multiplier(100, "warmup_cosine", 100, 10)) == pytest.approx(0.0, abs=1e-7)


def test_per_model_learning_rate_and_weight_decay_take_effect():
    spec = TrainSpec(
        n_features=3, n_hidden=2, steps=200, batch_size=64, snapshot_every=0, eval_samples=256
    )
    keys = model_keys(0, [5, 5])
    hp = hparams(2, 3)
    hp = hp.replace(weight_decay=jnp.asarray([0.0, 50.0]))
    r = train_many(spec, keys, hp)
    assert np.linalg.norm(r.params["W"][1]) < 0.5 * np.linalg.norm(r.params["W"][0])


@pytest.fixture(scope="module")
def fresh_import():
    """What importing toymodels does in a new process (one process for both tests below: starting
    one costs seconds): the modules it imports, and XLA_FLAGS after the import with no XLA_FLAGS
    given, then after the package is imported again (reloaded) with each of the flags ``given``."""
    code = f"""
import importlib, json, os, sys
import toymodels, toymodels.train, toymodels.metrics
modules = sorted(m for m in ('hydra','ray','wandb','matplotlib','omegaconf') if m in sys.modules)
flags = [os.environ['XLA_FLAGS']]
for given in {GIVEN!r}:
    os.environ['XLA_FLAGS'] = given
    importlib.reload(toymodels)
    flags.append(os.environ['XLA_FLAGS'])
print(json.dumps({{"modules": modules, "flags": flags}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


GIVEN = ["--xla_gpu_deterministic_ops=false", "--xla_cpu_enable_fast_math=false"]


def test_core_imports_no_orchestration_packages(fresh_import):
    assert fresh_import["modules"] == []


def test_importing_toymodels_asks_xla_for_deterministic_gpu_ops_and_keeps_a_users_choice(
    fresh_import,
):
    """docs/gpus.md#determinism: without the flag, finite data's stored numbers differed between two
    runs of the same program on an H200; importing toymodels sets it unless the user set it."""
    assert fresh_import["flags"] == [
        "--xla_gpu_deterministic_ops=true",
        "--xla_gpu_deterministic_ops=false",
        "--xla_cpu_enable_fast_math=false --xla_gpu_deterministic_ops=true",
    ]
