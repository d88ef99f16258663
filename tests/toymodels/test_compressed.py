"""Compressed computation (``cc_residual``; docs/science/compressed-computation.md): the factored
forward pass against the literal residual stream, the label constructions, the naive baseline's
exact loss against Monte Carlo through the model's own loss, the p → 0 theory, and trained tiny
models beating or not beating the naive baseline as that theory says."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis.theory.compressed import (
    naive_loss,
    naive_loss_clean,
    naive_parts,
    p0_bound,
    p0_loss,
    p0_naive,
    p0_optimum,
    p0_targets,
)
from toymodels import HParams, TrainSpec, model_keys, train_many
from toymodels.data import data_spec, sample_batch
from toymodels.models import DENSE, ROWS, bind_kind, forward_with_hidden, init_params, model_loss
from toymodels.models.compressed import OPTIONS, embedding, mixing_matrix
from toymodels.registry import ConfigError
from toymodels.rng import key_words


def _x(n: int, batch: int, p: float, seed: int = 0) -> jax.Array:
    return sample_batch(
        data_spec("signed"),
        key_words(jax.random.key(seed)),
        jnp.uint32(0),
        jnp.full((n,), p),
        batch,
    )


@pytest.mark.parametrize("labels", ["embed", "clean", "mixing"])
@pytest.mark.parametrize("param", ["stream", "effective"])
def test_the_factored_pass_is_the_literal_residual_stream_and_both_parameterisations_start_equal(
    labels, param
):
    n, m, L, d = 9, 6, 3, 30
    options = {
        **OPTIONS,
        "layers": L,
        "d_embed": d,
        "labels": labels,
        "param": param,
        "embed_seed": 4,
    }
    kind = bind_kind("cc_residual", n, m, options)
    params = init_params(jax.random.key(1), n, m, 0.1, kind, options)
    stream = init_params(jax.random.key(1), n, m, 0.1, kind, {**options, "param": "stream"})
    x = _x(n, 128, 0.4)
    W_E = jnp.asarray(embedding(n, d, 4))
    r = W_E.T @ x  # r₀ = W_Eᵀx, each layer adds W_out ReLU(W_in r), ŷ = W_E r
    for layer in range(L):
        r = r + stream["W_out"][layer] @ jax.nn.relu(stream["W_in"][layer] @ r)
    out, h = forward_with_hidden(params, x, kind)
    np.testing.assert_allclose(out, W_E @ r, atol=2e-6)
    assert h.shape == (m, 128)
    relu = jax.nn.relu(x)
    y = {
        "embed": x + relu,
        "clean": W_E @ W_E.T @ x + relu,
        "mixing": W_E @ W_E.T @ x
        + relu
        - jnp.asarray(mixing_matrix(n, d, 4, "mixing"), jnp.float32) @ x,
    }[labels]
    assert float(model_loss(params, x, jnp.ones(n), kind)) == pytest.approx(
        float(jnp.mean((W_E @ r - y) ** 2)), rel=1e-5
    )
    tiny = bind_kind("cc_residual", 4, 2, options)  # 4·2 ≤ 50: the unrolled rows form
    p4 = init_params(jax.random.key(2), 4, 2, 0.1, tiny, {**options, "layers": 1})
    tiny = bind_kind("cc_residual", 4, 2, {**options, "layers": 1})
    x4 = _x(4, 32, 0.5)
    np.testing.assert_allclose(
        jnp.stack(tiny.forward(p4, ROWS.batch(x4), ROWS)[0]),
        tiny.forward(p4, x4, DENSE)[0],
        atol=1e-6,
    )


def test_the_mixings_are_symmetric_zero_diagonal_and_of_one_size():
    n, d = 30, 120
    W_E = embedding(n, d, 2)
    np.testing.assert_allclose(np.linalg.norm(W_E, axis=1), 1.0, rtol=1e-6)
    N, S = mixing_matrix(n, d, 2, "embed"), mixing_matrix(n, d, 2, "mixing")
    np.testing.assert_allclose(N, W_E.astype(np.float64) @ W_E.T - np.eye(n), atol=1e-6)
    for A in (N, S):
        np.testing.assert_array_equal(A, A.T)
        assert np.all(np.diag(A) == 0)
    assert np.linalg.norm(S) == pytest.approx(np.linalg.norm(N))
    assert (
        abs(np.corrcoef(N[np.triu_indices(n, 1)], S[np.triu_indices(n, 1)])[0, 1]) < 0.1
    )  # not the embedding's
    assert not np.any(mixing_matrix(n, d, 2, "clean"))
    assert np.mean(N[np.triu_indices(n, 1)] ** 2) == pytest.approx(
        1.0 / d, rel=0.2
    )  # variance ≈ 1/d


@pytest.mark.parametrize(
    "options, key",
    [
        ({"layers": 4}, "layers"),
        ({"d_embed": 5}, "d_embed"),
        ({"labels": "noisy"}, "labels"),
        ({"param": "tensor"}, "param"),
        ({"embed_seed": -1}, "embed_seed"),
        ({"layers": 0}, "layers"),
    ],
)
def test_bad_options_are_refused_naming_the_key(options, key):
    from toymodels.models import MODELS

    with pytest.raises(ConfigError, match=f"model.options.{key}"):
        MODELS.get("cc_residual").check(8, 6, {**OPTIONS, **options})


def _naive_params(n: int, m: int, d: int, seed: int) -> dict:
    """The naive model as cc_residual stream weights: neuron j reads feature j alone through the
    dual basis of W_E and writes to output j alone."""
    W = embedding(n, d, seed).astype(np.float64)
    G = np.linalg.inv(W @ W.T)
    pick = np.eye(n)[:m]
    return {
        "W_in": jnp.asarray((pick @ G @ W)[None], jnp.float32),
        "W_out": jnp.asarray((W.T @ G @ pick.T)[None], jnp.float32),
    }


@pytest.mark.parametrize("labels", ["embed", "clean", "mixing"])
def test_naive_closed_form_matches_monte_carlo_through_the_models_own_loss(labels):
    n, m, d, seed, p = 12, 5, 24, 1, 0.2
    options = {**OPTIONS, "d_embed": d, "labels": labels, "embed_seed": seed}
    kind = bind_kind("cc_residual", n, m, options)
    params = _naive_params(n, m, d, seed)
    losses = [float(model_loss(params, _x(n, 65536, p, s), jnp.ones(n), kind)) for s in range(6)]
    exact = naive_loss(mixing_matrix(n, d, seed, labels), p, m)
    assert np.mean(losses) == pytest.approx(
        exact, rel=4 * np.std(losses) / np.sqrt(len(losses)) / exact + 2e-3
    )
    if labels == "clean":
        assert exact == pytest.approx(naive_loss_clean(n, m, p))


def test_naive_with_a_diagonal_mixing_picks_its_neurons_and_gains_exactly():
    """A general N (diagonal included): the closed form against an explicit numpy naive model."""
    rng = np.random.default_rng(3)
    n, m, p = 6, 3, np.array([0.3, 0.5, 0.2, 0.6, 0.4, 0.5])
    N = rng.normal(scale=0.4, size=(n, n))
    N[0, 0], N[1, 1] = -1.6, 0.7  # c = 1.6 reads +x (ab = 2.6); c = −0.7 prefers −x (ab = −0.7)
    parts = naive_parts(N, p, m)
    x = rng.uniform(-1, 1, size=(400_000, n)) * (rng.uniform(size=(400_000, n)) < p)
    y = np.maximum(x, 0) - x @ N.T
    out = np.zeros_like(x)
    for i in np.flatnonzero(parts["chosen"]):
        reads_plus = parts["gain"][i] == 1.0 - N[i, i]
        out[:, i] = parts["gain"][i] * (
            np.maximum(x[:, i], 0) if reads_plus else np.minimum(x[:, i], 0)
        )
    mc = np.mean((out - y) ** 2)
    assert mc == pytest.approx(naive_loss(N, p, m), rel=0.01)
    perturbed = out.copy()  # and no other gain does better
    i = int(np.flatnonzero(parts["chosen"])[0])
    perturbed[:, i] *= 1.05
    assert np.mean((perturbed - y) ** 2) > mc


def test_p0_theory_clean_bound_is_the_naive_loss_and_mixing_opens_a_gap():
    n, m = 16, 8
    clean = np.zeros((n, n))
    assert (
        p0_bound(clean, m)
        == pytest.approx(p0_naive(clean, m))
        == pytest.approx(naive_loss_clean(n, m, 1.0))
    )
    N = mixing_matrix(n, 48, 0, "embed")
    lam = np.linalg.eigvalsh(N)
    s2 = np.sort(1 - 2 * lam + 2 * lam**2)[::-1]  # σ(T)² from N's spectrum (docstring)
    np.testing.assert_allclose(
        np.sort(np.linalg.svd(p0_targets(N), compute_uv=False) ** 2)[::-1], s2, atol=1e-9
    )
    gap = np.sum(s2[:m]) - m  # naive − bound, ×6n
    assert p0_naive(N, m) - p0_bound(N, m) == pytest.approx(gap / (6 * n)) and gap > 0
    best = p0_optimum(N, m, restarts=2, maxiter=500)
    assert p0_bound(N, m) - 1e-9 <= best["loss"] <= p0_naive(N, m) + 1e-9
    assert best["loss"] == pytest.approx(p0_loss(best["A"], best["B"], N))
    # p0_loss is the p → 0 limit of the model's loss per p
    kind = bind_kind("cc_residual", n, m, {**OPTIONS, "d_embed": 48, "param": "effective"})
    params = {
        "A": jnp.asarray(best["A"][None], jnp.float32),
        "B": jnp.asarray(best["B"][None], jnp.float32),
    }
    p = 0.002
    mc = (
        np.mean(
            [float(model_loss(params, _x(n, 131072, p, s), jnp.ones(n), kind)) for s in range(4)]
        )
        / p
    )
    assert mc == pytest.approx(best["loss"], rel=0.1)


def _train(n, m, labels, d, p, steps=2000, seeds=3):
    options = {**OPTIONS, "d_embed": d, "labels": labels, "embed_seed": 0}
    spec = TrainSpec(
        n_features=n,
        n_hidden=m,
        model="cc_residual",
        model_options=tuple(sorted(options.items())),
        data=data_spec("signed"),
        steps=steps,
        batch_size=1024,
        schedule="cosine",
        snapshot_every=steps,
        eval_samples=131072,
    )
    f32 = lambda v: jnp.full((seeds,), v, jnp.float32)
    hp = HParams(
        density_F=jnp.full((seeds, n), p),
        importance_F=jnp.ones((seeds, n)),
        lr=f32(3e-3),
        weight_decay=f32(0.01),
    )
    return np.asarray(train_many(spec, model_keys(0, np.arange(seeds)), hp).eval_loss)


@pytest.mark.reproduction
def test_trained_tiny_models_beat_naive_only_with_mixing_as_the_p0_theory_says():
    """Measured (3 seeds): clean 1.015–1.016 of naive, embed 0.63–0.70 (p → 0 bound 0.26)."""
    n, m, d, p = 8, 4, 8, 0.05  # n·m ≤ 50: trained in the rows form
    clean = _train(n, m, "clean", d, p) / naive_loss(np.zeros((n, n)), p, m)
    N = mixing_matrix(n, d, 0, "embed")
    embed = _train(n, m, "embed", d, p) / naive_loss(N, p, m)
    assert np.all(clean > 0.97)  # no bias-free model beats naive without mixing as p → 0
    assert np.mean(embed) < 0.8 and np.all(embed > p0_bound(N, m) / p0_naive(N, m))


@pytest.mark.parametrize("experiment", ["cc_mixing_n100", "cc_mixing_n100_short"])
def test_the_papers_size_experiments_train_the_papers_model(experiment):
    # A grid key an experiment leaves out is inherited from its defaults: cc_mixing's
    # n_hidden [10, 5] once overrode cc_mixing_n100's m = 50.
    from sweeps.jobs.models import grid_axes
    from sweeps.plan import plan_sweep
    from tests.helpers import compose_config

    config = compose_config([f"experiment={experiment}"])
    assert grid_axes(config)["n_hidden"] == [50]
    shapes = {(spec.n_features, spec.n_hidden) for spec, _ in plan_sweep(config).units}
    assert shapes == {(100, 50)}
