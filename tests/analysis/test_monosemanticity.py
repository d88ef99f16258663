"""Buying monosemanticity (issue 17 item 3): the switch point of μ·Σ C(1−C) on the n = 2, m = 1
quadratic model, derived two independent ways; the term in training (from scratch and as a
fine-tune); the capacity phase diagram's marked points; the hidden-bias option."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis.figures.capacity_phase import MARKED, marginal_curves, plot_capacity_phase
from analysis.figures.monosemanticity import (
    plot_mono_switch,
    plot_polysemantic_vs_loss,
    switch_table,
)
from analysis.measures import monosemanticity as mono_measures
from analysis.theory import capacity as ct
from analysis.theory import monosemanticity as mono
from tests.helpers import compose_config
from toymodels import HParams, TrainSpec, metrics, model_keys, train_many
from toymodels.data import data_spec
from toymodels.models import DENSE, MODELS, init_params
from toymodels.registry import ConfigError


@pytest.mark.parametrize("K,mu_c,increase", [(10.0, 3.607, 0.715), (30.0, 18.917, 3.696)])
def test_the_switch_point_is_the_issues_and_a_direct_minimisation_over_W_finds_it(
    K, mu_c, increase
):
    ratio = 0.6
    assert mono.switch_point(ratio, K) == pytest.approx(mu_c, abs=0.001)  # the issue: 3.61, 18.9
    assert mono.loss_increase(ratio, K) == pytest.approx(increase, abs=0.001)  # +72%, +370%
    # Independently of the held-capacity curve: W = (w₁, w₂) on a grid, the quadratic loss with its
    # optimal bias plus μ Σ C(1 − C); below μ_c the minimum keeps both features, above it one.
    w = np.linspace(0.0, 1.6, 1201)
    W = np.stack(np.meshgrid(w, w, indexing="ij"), axis=-1).reshape(-1, 1, 2)
    loss = ct.quadratic_loss(W, np.array([1.0, ratio]), K)
    C = metrics.capacity(W)
    exact = mono.switch_point(ratio, K)
    for factor, both in ((0.97, True), (1.03, False)):
        best = np.argmin(loss + factor * exact * np.sum(C * (1 - C), axis=-1))
        assert (min(C[best]) > 0.05) == both, (factor, C[best])
    lower, upper = mono.bistable_window(ratio, K)
    assert lower < exact < upper


def test_capacity_for_gradients_is_capacity_with_finite_gradients_as_a_feature_vanishes():
    W = jax.random.normal(jax.random.key(0), (3, 7))
    np.testing.assert_allclose(
        metrics.capacity_for_gradients(W), metrics.capacity(W), rtol=1e-5, atol=1e-6
    )

    def term(w):
        c = metrics.capacity_for_gradients(jnp.array([[1.0, w]]))
        return jnp.sum(c * (1 - c))

    for w in (1e-3, 1e-9, 1e-12, 1e-16, 0.0):
        assert np.isfinite(jax.grad(term)(jnp.float32(w)))


def test_the_term_trains_to_the_exact_penalised_optimum_from_scratch_and_as_a_fine_tune():
    K, ratio = 10.0, 0.6
    cases = [(0.0, 0), (1.0, 0), (1.0, 1000), (10.0, 1000)]  # (μ, step the term switches on)
    spec = TrainSpec(
        n_features=2,
        n_hidden=1,
        model="quadratic",
        data=data_spec("kurtosis", magnitude="sign"),
        steps=3000,
        batch_size=1024,
        snapshot_every=1000,
        eval_samples=4096,
        terms=("mono",),
    )
    f32 = lambda values: jnp.asarray(values, jnp.float32)
    hp = HParams(
        density_F=jnp.full((4, 2), 1 / K),
        importance_F=jnp.tile(jnp.array([1.0, ratio]), (4, 1)),
        lr=f32([3e-3] * 4),
        weight_decay=f32([0.0] * 4),
        terms={
            "mono": {
                "mono_penalty": f32([c[0] for c in cases]),
                "mono_start": jnp.asarray([c[1] for c in cases], jnp.uint32),
            }
        },
    )
    result = jax.device_get(train_many(spec, model_keys(0, np.arange(4)), hp))
    C1 = np.asarray(metrics.capacity(np.asarray(result.params["W"], np.float64)))[:, 0]
    for (mu, _), c in zip(cases, C1):
        assert c == pytest.approx(mono.penalised_optimum(ratio, K, mu), abs=0.03), (mu, c)


def test_bad_settings_of_the_term_name_their_key():
    with pytest.raises(ConfigError, match="train.mono_penalty"):
        compose_config(["experiment=mono_quadratic_small", "train.mono_penalty=-1"])
    with pytest.raises(ConfigError, match=r"sweep.grid.mono_start\[1\].*never be on"):
        compose_config(["experiment=mono_quadratic_small", "sweep.grid.mono_start=[0,3000]"])
    with pytest.raises(ConfigError, match=r"sweep.grid.mono_penalty\[0\]"):
        compose_config(["experiment=mono_quadratic_small", "sweep.grid.mono_penalty=[-1.0]"])
    with pytest.raises(ConfigError, match="train.mono_penalty.*finite data"):
        compose_config(["experiment=dd_cpu_small", "train.mono_penalty=1.0"])
    with pytest.raises(ConfigError, match="model.options.hidden_bias"):
        compose_config(["experiment=mono_privileged_small", "sweep.grid.hidden_bias=[abc]"])


def test_a_hidden_bias_is_a_trained_parameter_only_when_asked_for():
    kind = MODELS.get("relu_hidden")
    plain = init_params(jax.random.key(0), 4, 3, 0.5, kind)
    biased = init_params(jax.random.key(0), 4, 3, 0.5, kind, {"hidden_bias": -0.5})
    assert set(plain) == {"W", "b"} and np.all(biased["b_hidden"] == -0.5)
    np.testing.assert_array_equal(plain["W"], biased["W"])
    x = jnp.ones((4, 2))
    h = kind.forward(biased, x, DENSE)[1]
    np.testing.assert_allclose(h, jax.nn.relu(biased["W"] @ x - 0.5), rtol=1e-6)


def test_marked_points_sit_where_their_marginal_benefit_curves_say():
    for name, K, ratio in MARKED:
        curves = marginal_curves(K, ratio)
        region = ct.two_feature_region(ratio, K)
        if curves["shape"] == "increasing":  # increasing returns: a corner, monosemantic
            assert region != ct.POLY_BOTH and curves["optimum_C1"] in (0.0, 1.0), name
        if region == ct.POLY_BOTH:  # an interior optimum where the benefits are equal
            c = curves["optimum_C1"]
            assert 0 < c < 1
            assert ct.marginal_benefit(c, 1.0, K) == pytest.approx(
                ct.marginal_benefit(1 - c, ratio, K), rel=1e-6
            )
    assert {ct.two_feature_region(r, K) == ct.POLY_BOTH for _, K, r in MARKED} == {True, False}


def _synthetic_mono_table() -> pd.DataFrame:
    """n = 2, m = 1 quadratic models sitting exactly at the penalised optimum (one seed)."""
    rows = []
    for K in (10.0, 30.0):
        for mu in (0.1, 1.0, 10.0, 100.0):
            C = mono.penalised_optimum(0.6, K, mu)
            W = ct.held_capacity_weights(C, 0.6, K)
            loss = float(mono.held_loss(C, 0.6, K))
            rows.append(
                dict(
                    model="quadratic",
                    n_features=2,
                    n_hidden=1,
                    seed=0,
                    kurtosis=K,
                    density=1 / K,
                    importance_last=0.6,
                    feature_importance=[1.0, 0.6],
                    mono_penalty=mu,
                    mono_start=0,
                    W=W.tolist(),
                    b=[float(ct.optimal_bias(W, np.array([1.0, 0.6])))],
                    capacity=list(metrics.capacity(W)),
                    loss=loss,
                    snap_loss=[loss + 2 * mu * C * (1 - C)],
                )
            )
    return pd.DataFrame(rows)


def test_the_figures_draw_and_read_back_the_optimum_from_a_synthetic_sweep():
    table = _synthetic_mono_table()
    best = switch_table(table)
    np.testing.assert_allclose(best["C1"], best["theory_C1"], atol=1e-6)
    points = mono_measures.intervention_points(table, ["density", "mono_penalty"])
    assert list(points["intervention"].unique()) == ["mono_penalty"]
    assert points.groupby("kurtosis")["poly_features"].last().tolist() == [
        0.0,
        0.0,
    ]  # the largest μ: a corner
    phase = pd.DataFrame(
        [
            dict(
                model="quadratic",
                seed=0,
                kurtosis=K,
                feature_importance=[1.0, r],
                loss=0.0,
                capacity=list(ct.optimal_allocation(np.array([1.0, r]), K, 1)[0]),
            )
            for K in (1.0, 2.0, 6.0, 30.0)
            for r in (0.05, 0.3, 1.0)
        ]
    )
    for fig in (
        plot_mono_switch(table),
        plot_polysemantic_vs_loss(table, ["density", "mono_penalty"]),
        plot_capacity_phase(phase),
    ):
        fig.savefig("/dev/null", format="png", dpi=30)
        plt.close(fig)
