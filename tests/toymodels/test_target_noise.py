"""A new target every sample (data.kind=random_target; docs/science/open-questions.md): per-entry loss weights
through the core, the data kind, and the linear model's exact optimum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis.measures.target_noise import sample_examples
from analysis.theory.target_noise import (
    closed_form,
    frame_deviation,
    linear_target_loss,
    optimal_bias,
    tight_frame,
)
from tests.helpers import compose_config
from toymodels import HParams, TrainSpec, model_keys, train_many
from toymodels.data import data_spec, sample_weighted_batch
from toymodels.models import model_loss
from toymodels.registry import ConfigError
from toymodels.rng import key_words


def _loss_and_gradient(W, p_F):
    """The exact loss (optimal bias) and its central-difference gradient."""
    grad = np.zeros_like(W)
    for idx in np.ndindex(*W.shape):
        step = np.zeros_like(W)
        step[idx] = 1e-6
        grad[idx] = (linear_target_loss(W + step, p_F) - linear_target_loss(W - step, p_F)) / 2e-6
    return linear_target_loss(W, p_F), grad


@pytest.mark.parametrize("n,p", [(3, 1.0), (8, 0.05), (20, 1.0), (50, 0.2)])
def test_every_equal_norm_tight_frame_attains_the_closed_form_and_it_is_the_minimum(n, p):
    theory = closed_form(n, 2, p)
    assert theory["rho"] == pytest.approx(p * (0.04 - 0.03 * p), rel=1e-12)
    p_F = np.full(n, p)
    even = tight_frame(np.pi * np.arange(n) / n, theory["norm2"])
    # Doubled angles summing to zero, far from evenly spaced: every line doubled at a small angle.
    base = np.pi * np.arange(n // 2) / (n // 2) if n % 2 == 0 else np.pi * np.arange(n) / n
    uneven = tight_frame(
        np.concatenate([base, base + 0.05])[:n] if n % 2 == 0 else base, theory["norm2"]
    )
    for W in (even, uneven):
        assert frame_deviation(W) < 1e-9
        loss, grad = _loss_and_gradient(W, p_F)
        assert loss == pytest.approx(theory["loss"], rel=1e-9)
        assert np.abs(grad).max() < 1e-7
    rng = np.random.default_rng(n)
    for _ in range(50):  # no nearby W does better, tight or not
        assert linear_target_loss(even + 0.02 * rng.normal(size=even.shape), p_F) >= theory["loss"]


def test_loss_cannot_tell_tight_frames_apart_but_one_hot_accuracy_can():
    n, p = 4, 1.0
    theory = closed_form(n, 2, p)
    x, t = sample_examples(n, p, 0.1, examples=20_000)
    accuracy = {}
    for name, angles in {
        "even": [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
        "pairs": [0, 0.05, np.pi / 2, np.pi / 2 + 0.05],
    }.items():
        W = tight_frame(angles, theory["norm2"])
        b = optimal_bias(W, np.full(n, p))
        assert linear_target_loss(W, np.full(n, p), b_F=b) == pytest.approx(
            theory["loss"], rel=1e-9
        )
        out = W.T @ W @ x + b[:, None]
        accuracy[name] = np.mean(np.argmax(out, axis=0) == t)
    assert accuracy["even"] > 0.75 and accuracy["pairs"] < 0.6, accuracy


@pytest.mark.parametrize("n", [5, 30])  # the loss computes in rows for n·m ≤ 50, dense beyond
def test_the_weighted_loss_is_the_exact_target_only_loss_and_the_kind_draws_its_distribution(n):
    p = 0.3
    spec = data_spec("random_target")
    x, w = sample_weighted_batch(
        spec, key_words(jax.random.key(3)), jnp.uint32(0), jnp.full((n,), p), 60_000
    )
    x, w = np.asarray(x), np.asarray(w)
    t = np.argmax(w, axis=0)
    assert np.all(w.sum(axis=0) == n) and np.all((w == 0) | (w == n))
    assert np.abs(np.bincount(t, minlength=n) / len(t) - 1 / n).max() < 0.015
    cols = np.arange(x.shape[1])
    assert np.mean(x[t, cols]) == pytest.approx(0.5, abs=0.005)
    others = np.ones_like(x, bool)
    others[t, cols] = False
    assert np.mean(x[others] > 0) == pytest.approx(p, abs=0.01) and x[others].max() < 0.1
    W = 0.5 * jax.random.normal(jax.random.key(4), (2, n))
    b = 0.1 * jax.random.normal(jax.random.key(5), (n,))
    loss = float(
        model_loss(
            {"W": W, "b": b}, jnp.asarray(x), jnp.ones((n,)), "linear", weight_FxB=jnp.asarray(w)
        )
    )
    exact = linear_target_loss(np.asarray(W), np.full(n, p), b_F=np.asarray(b))
    assert loss == pytest.approx(exact, rel=0.02)


def test_a_linear_model_trains_to_a_tight_frame_at_the_closed_form():
    n, p, models = 5, 1.0, 4
    spec = TrainSpec(
        n_features=n,
        n_hidden=2,
        model="linear",
        data=data_spec("random_target"),
        steps=3000,
        batch_size=1024,
        snapshot_every=3000,
        eval_samples=4096,
    )
    f32 = lambda v: jnp.full((models,), v, jnp.float32)
    hp = HParams(
        density_F=jnp.full((models, n), p),
        importance_F=jnp.ones((models, n)),
        lr=f32(3e-3),
        weight_decay=f32(0.01),
    )
    result = jax.device_get(train_many(spec, model_keys(0, np.arange(models)), hp))
    W = np.asarray(result.params["W"], np.float64)
    exact = [linear_target_loss(w, np.full(n, p)) for w in W]
    best = int(np.argmin(exact))
    theory = closed_form(n, 2, p)
    assert exact[best] == pytest.approx(theory["loss"], rel=0.01)
    assert frame_deviation(W[best]) < 0.05
    assert np.mean(np.sum(W[best] ** 2, axis=0)) == pytest.approx(theory["norm2"], rel=0.02)


def test_zero_background_density_is_a_setting_of_this_kind_only_and_bad_settings_name_their_key():
    config = compose_config(["experiment=target_noise_small"])
    assert 0.0 in config.sweep.grid["density"]
    with pytest.raises(ConfigError, match=r"sweep.grid.density\[0\].*\(0, 1\]"):
        compose_config(["experiment=target_noise_small", "data.kind=sparse"])
    with pytest.raises(ConfigError, match="data.kind.*'quadratic' has 1 outputs"):
        compose_config(["experiment=target_noise_small", "sweep.grid.model=[quadratic]"])
    with pytest.raises(ConfigError, match="data.rest_scale"):
        compose_config(["experiment=target_noise_small", "data.rest_scale=0.1"])
    with pytest.raises(ConfigError, match="data.options.noise_scale"):
        compose_config(["experiment=target_noise_small", "+data.options.noise_scale=-1"])
