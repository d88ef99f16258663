"""The toy-model family: data distributions' statistics, each model's shapes and gradients, and the
optional loss terms (L1 on hidden activations, a held capacity)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels import HParams, TrainSpec, metrics, rng, train_many
from toymodels.data import (
    MAGNITUDE_KURTOSIS,
    DataSpec,
    data_spec,
    feature_kurtosis,
    importance_profile,
    sample_batch,
)
from toymodels.models import (
    MODELS,
    bind_kind,
    forward_with_hidden,
    init_params,
    model_loss,
    n_outputs,
    target,
)

WORDS = rng.key_words(jax.random.key(7))


def draw(spec: DataSpec, density, batch=200_000) -> np.ndarray:
    return np.asarray(
        sample_batch(spec, WORDS, jnp.uint32(1), jnp.asarray(density, jnp.float32), batch)
    )


def test_correlated_sets_switch_on_together():
    x = draw(data_spec("correlated", set_size=2), [0.3] * 6)
    active = x > 0
    for s in range(3):
        a, b = active[2 * s], active[2 * s + 1]
        assert np.mean(a) == pytest.approx(0.3, abs=0.005)
        assert (
            np.mean(a != b) < 1e-4
        )  # both or neither (a U[0,1) draw of exactly 0 is the only exception)
    # Different sets are independent: P(both sets active) = p².
    assert np.mean(active[0] & active[2]) == pytest.approx(0.09, abs=0.004)
    # Active members are independently U[0, 1].
    both = active[0] & active[1]
    assert np.mean(x[0][both]) == pytest.approx(0.5, abs=0.01)
    assert abs(np.corrcoef(x[0][both], x[1][both])[0, 1]) < 0.02


def test_anticorrelated_sets_have_exactly_one_active_member():
    p = 0.6
    x = draw(data_spec("anticorrelated", set_size=3), [p] * 6)
    per_set = (x > 0).reshape(2, 3, -1).sum(axis=1)
    assert per_set.max() == 1  # never two members of one set
    assert np.mean(per_set[0] == 1) == pytest.approx(p, abs=0.005)
    # The active member is uniform among the set: each feature is active with probability p / 3.
    np.testing.assert_allclose(np.mean(x > 0, axis=1), p / 3, atol=0.005)
    assert np.mean(x[x > 0]) == pytest.approx(0.5, abs=0.01)


def test_signed_inputs_are_uniform_on_minus_one_one_when_active():
    x = draw(data_spec("signed"), [0.25, 1.0])
    assert np.mean(x[0] != 0) == pytest.approx(0.25, abs=0.005)
    on = x[1]
    assert on.min() >= -1 and on.max() <= 1
    assert np.mean(on) == pytest.approx(0.0, abs=0.01) and np.var(on) == pytest.approx(
        1 / 3, abs=0.01
    )


@pytest.mark.parametrize("magnitude", ["uniform", "gaussian", "sign"])
def test_kurtosis_data_has_unit_variance_and_kurtosis_ku_over_p(magnitude):
    density = [1.0, 0.2]
    spec = data_spec("kurtosis", magnitude=magnitude)
    x = draw(spec, density, batch=400_000).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=0.01)
    np.testing.assert_allclose((x**2).mean(axis=1), 1.0, rtol=0.02)
    expected = feature_kurtosis(spec, density)
    np.testing.assert_allclose(expected, MAGNITUDE_KURTOSIS[magnitude] / np.asarray(density))
    np.testing.assert_allclose((x**4).mean(axis=1), expected, rtol=0.05)
    assert np.mean(x[1] != 0) == pytest.approx(0.2, abs=0.005)


def test_rest_scale_shrinks_the_noise_features_and_target_only_importance():
    x = draw(data_spec("sparse", rest_scale=0.1), [1.0, 1.0, 1.0])
    assert x[0].max() > 0.99 and x[1:].max() <= 0.1
    np.testing.assert_array_equal(importance_profile(4, "target_only"), [1, 0, 0, 0])


@pytest.mark.parametrize("kind", MODELS.names())
def test_every_model_has_the_right_shapes_and_finite_gradients(kind):
    n, m, B = 6, 3, 16
    params = init_params(jax.random.key(0), n, m, 0.5, kind)
    x = jnp.asarray(draw(data_spec("signed" if kind == "abs" else "sparse"), [0.5] * n, batch=B))
    bound = bind_kind(kind, n, m)  # specialised to its default options, if it has a bind
    out, h = forward_with_hidden(params, x, bound)
    n_out = n_outputs(kind, n)
    assert out.shape == (n_out, B) and h.shape == (m, B)
    assert target(x, jnp.ones(n), bound).shape == (n_out, B)
    assert ("W2" in params) == (kind == "abs")
    grads = jax.grad(model_loss)(params, x, jnp.ones(n), bound, 0.1)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)


def test_model_outputs_match_their_formulas():
    rs = np.random.default_rng(0)
    W, W2, b = rs.normal(size=(3, 5)), rs.normal(size=(5, 3)), rs.normal(size=5)
    x = rs.uniform(-1, 1, size=(5, 7))
    relu = lambda a: np.maximum(a, 0)
    P = {"W": jnp.asarray(W), "b": jnp.asarray(b)}
    np.testing.assert_allclose(
        forward_with_hidden(P, jnp.asarray(x), "relu_hidden")[0],
        relu(W.T @ relu(W @ x) + b[:, None]),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        forward_with_hidden(P, jnp.asarray(x), "gelu")[0],
        jax.nn.gelu(W.T @ W @ x + b[:, None]),
        rtol=1e-4,
        atol=1e-5,
    )
    P2 = {"W": jnp.asarray(W), "b": jnp.asarray(b), "W2": jnp.asarray(W2)}
    np.testing.assert_allclose(
        forward_with_hidden(P2, jnp.asarray(x), "abs")[0],
        relu(W2 @ relu(W @ x) + b[:, None]),
        rtol=1e-5,
        atol=1e-5,
    )
    Pq = {"W": jnp.asarray(W), "b": jnp.asarray([0.3])}
    quad = np.einsum("fb,fb->b", x, W.T @ W @ x) + 0.3
    np.testing.assert_allclose(
        forward_with_hidden(Pq, jnp.asarray(x), "quadratic")[0][0], quad, rtol=1e-4
    )
    v = np.arange(1.0, 6.0)
    np.testing.assert_allclose(
        target(jnp.asarray(x), jnp.asarray(v), "quadratic")[0],
        (v[:, None] * x**2).sum(0),
        rtol=1e-5,
    )
    assert float(model_loss(P, jnp.asarray(x), jnp.ones(5), "relu", 0.5)) == pytest.approx(
        float(model_loss(P, jnp.asarray(x), jnp.ones(5), "relu"))
        + 0.5 * np.abs(W @ x).sum(0).mean(),
        rel=1e-5,
    )


def _hp(n, **extra):
    return HParams(
        density_F=jnp.full((1, n), 0.1),
        importance_F=jnp.ones((1, n)),
        lr=jnp.asarray([1e-2]),
        weight_decay=jnp.asarray([0.0]),
        **extra,
    )


def test_l1_on_hidden_activations_shrinks_them():
    spec = TrainSpec(6, 3, steps=800, batch_size=256, eval_samples=4096, snapshot_every=800)
    plain = train_many(spec, jax.random.key(0)[None], _hp(6))
    sparse_spec = TrainSpec(
        6, 3, steps=800, batch_size=256, eval_samples=4096, snapshot_every=800, terms=("l1_hidden",)
    )
    pressed = train_many(
        sparse_spec,
        jax.random.key(0)[None],
        _hp(6, terms={"l1_hidden": {"l1_hidden": jnp.asarray([0.3])}}),
    )
    assert np.sum(np.abs(pressed.params["W"])) < 0.7 * np.sum(np.abs(plain.params["W"]))
    assert float(pressed.eval_loss[0]) > float(plain.eval_loss[0])  # monosemanticity has a cost


def test_capacity_penalty_holds_a_feature_at_its_target():
    n = 5
    spec = TrainSpec(
        n,
        2,
        steps=1500,
        batch_size=256,
        eval_samples=4096,
        snapshot_every=1500,
        terms=("capacity",),
    )
    targets = jnp.asarray([0.25, 0.5, 0.75])
    onehot = jnp.tile(jnp.eye(n)[0], (3, 1))
    hp = HParams(
        density_F=jnp.full((3, n), 0.1),
        importance_F=jnp.tile(0.9 ** jnp.arange(n), (3, 1)),
        lr=jnp.full((3,), 1e-2),
        weight_decay=jnp.zeros(3),
        terms={
            "capacity": dict(
                capacity_onehot_F=onehot,
                capacity_target=targets,
                capacity_penalty=jnp.full((3,), 10.0),
            )
        },
    )
    result = train_many(spec, jax.random.split(jax.random.key(1), 3), hp)
    held = metrics.capacity(np.asarray(result.params["W"]))[:, 0]
    np.testing.assert_allclose(held, targets, atol=0.05)


def _quadratic_models(density, ratio, steps=2000, capacity=None):
    """Trained n=2, m=1 quadratic models (sign inputs, K = 1/p), best of 3 seeds per setting."""
    k = len(density)
    spec = TrainSpec(
        2,
        1,
        model="quadratic",
        data=data_spec("kurtosis", magnitude="sign"),
        steps=steps,
        batch_size=1024,
        eval_samples=16_384,
        snapshot_every=steps,
        terms=() if capacity is None else ("capacity",),
    )
    extra = (
        {}
        if capacity is None
        else {
            "terms": {
                "capacity": dict(
                    capacity_onehot_F=jnp.tile(jnp.eye(2)[0], (3 * k, 1)),
                    capacity_target=jnp.repeat(jnp.asarray(capacity), 3),
                    capacity_penalty=jnp.full((3 * k,), 200.0),
                )
            }
        }
    )
    hp = HParams(
        density_F=jnp.repeat(jnp.asarray(density)[:, None], 2, axis=1).repeat(3, axis=0),
        importance_F=jnp.stack([jnp.ones(k), jnp.asarray(ratio)], axis=1).repeat(3, axis=0),
        lr=jnp.full((3 * k,), 1e-2),
        weight_decay=jnp.zeros(3 * k),
        **extra,
    )
    result = train_many(spec, jax.random.split(jax.random.key(3), 3 * k), hp)
    best = np.asarray(result.eval_loss).reshape(k, 3).argmin(axis=1) + 3 * np.arange(k)
    return metrics.capacity(np.asarray(result.params["W"]))[best], np.asarray(result.eval_loss)[
        best
    ]


@pytest.mark.reproduction
def test_trained_quadratic_models_fall_in_the_predicted_region():
    from analysis.theory.capacity import two_feature_region

    # (p, r) far from the boundary 2/(K−1) < r < (K−1)/2, K = 1/p.
    cases = [(0.05, 0.6), (0.05, 0.3), (0.1, 0.7), (0.5, 0.5), (0.2, 0.1), (0.03, 0.02)]
    C, _ = _quadratic_models([p for p, _ in cases], [r for _, r in cases])
    for (p, r), c in zip(cases, C):
        region = two_feature_region(r, 1 / p)
        assert (region == "polysemantic") == (0.1 < c[1] < 0.9 and 0.1 < c[0] < 0.9), (
            p,
            r,
            c,
            region,
        )
        assert c.sum() <= 1 + 1e-5  # the capacity budget: Σ C_i ≤ m


def test_held_capacity_gives_the_exact_held_loss_and_its_marginal_benefit():
    from analysis.theory.capacity import held_loss_two_features

    targets = [0.2, 0.5, 0.8]
    p, r = 0.5, 0.7  # K = 2 < 3: increasing marginal benefit
    C, loss = _quadratic_models([p] * 3, [r] * 3, steps=3000, capacity=targets)
    held = C[:, 0]
    np.testing.assert_allclose(held, targets, atol=0.03)
    np.testing.assert_allclose(loss, [held_loss_two_features(c, r, 1 / p) for c in held], rtol=0.05)


def test_capacity_budget_holds_for_every_trained_model():
    spec = TrainSpec(8, 3, steps=300, batch_size=256, eval_samples=4096, snapshot_every=100)
    hp = HParams(
        density_F=jnp.asarray([[0.05] * 8, [1.0] * 8]),
        importance_F=jnp.ones((2, 8)),
        lr=jnp.full((2,), 1e-2),
        weight_decay=jnp.zeros(2),
    )
    result = train_many(spec, jax.random.split(jax.random.key(0), 2), hp)
    assert np.all(np.asarray(result.snapshots.capacity_SxF).sum(axis=-1) <= 3 + 1e-4)


@pytest.mark.parametrize("kind", ["sparse", "signed", "correlated", "anticorrelated", "kurtosis"])
def test_column_blocks_of_a_batch_are_the_batch_bit_for_bit(kind):
    spec = data_spec(kind, **({"set_size": 2} if kind in ("correlated", "anticorrelated") else {}))
    density = jnp.asarray([0.3, 0.3, 0.7, 0.7])
    whole = sample_batch(spec, WORDS, jnp.uint32(5), density, 64)
    blocks = [
        sample_batch(spec, WORDS, jnp.uint32(5), density, 64, (jnp.uint32(j), 4)) for j in range(4)
    ]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)


def test_batch_blocks_train_the_same_model_up_to_rounding():
    hp = _hp(5)
    one, four = (
        train_many(
            TrainSpec(
                5,
                2,
                steps=200,
                batch_size=256,
                eval_samples=4096,
                snapshot_every=100,
                batch_blocks=k,
            ),
            jax.random.key(4)[None],
            hp,
        )
        for k in (1, 4)
    )
    np.testing.assert_allclose(four.params["W"], one.params["W"], atol=2e-4)
    np.testing.assert_allclose(four.snapshots.loss_S, one.snapshots.loss_S, rtol=1e-4)
