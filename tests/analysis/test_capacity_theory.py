"""The quadratic capacity model (docs/science/metrics.md, docs/science/capacity.md) against Monte Carlo,
brute force and itself,
and the capacity figures on a synthetic table built from analytic optima."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.figures import capacity as cap
from analysis.figures.catalog import draw, figure_names
from analysis.stored_sweep import StoredSweep
from analysis.theory import capacity as ct
from tests.helpers import assert_draws_the_same_into_every_target
from toymodels import metrics

MAGNITUDE_KURTOSIS = {"gaussian": 3.0, "uniform": 1.8, "sign": 1.0}


def sample_inputs(rng, magnitude: str, p_F: np.ndarray, n_samples: int) -> np.ndarray:
    """x_i = s_i u_i / √p_i, P(s_i = 1) = p_i, u zero-mean unit-variance (B×F)."""
    shape = (n_samples, len(p_F))
    if magnitude == "gaussian":
        u = rng.normal(size=shape)
    elif magnitude == "uniform":
        u = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size=shape)
    else:
        u = rng.choice([-1.0, 1.0], size=shape)
    return (rng.random(shape) < p_F) * u / np.sqrt(p_F)


def monte_carlo_loss(x_BxF, W_HxF, v_F, b):
    h = x_BxF @ W_HxF.T
    err = (x_BxF**2) @ v_F - (np.sum(h * h, axis=1) + b)
    sq = err**2
    return sq.mean(), sq.std() / np.sqrt(len(sq))


@pytest.mark.parametrize("magnitude", ["gaussian", "uniform", "sign"])
@pytest.mark.parametrize("density", [1.0, 0.3])
def test_quadratic_loss_matches_monte_carlo(magnitude, density):
    rng = np.random.default_rng([list(MAGNITUDE_KURTOSIS).index(magnitude), int(density * 10)])
    W = rng.normal(size=(2, 3)) * 0.7
    v = np.array([1.0, 0.6, 0.3])
    p_F = np.full(3, density)
    x = sample_inputs(rng, magnitude, p_F, 400_000)
    K = MAGNITUDE_KURTOSIS[magnitude] / density
    b_star = float(ct.optimal_bias(W, v))
    for b in (0.4, b_star):
        mc, se = monte_carlo_loss(x, W, v, b)
        assert abs(float(ct.quadratic_loss(W, v, K, b=b)) - mc) <= 5 * se, (b, mc, se)
    assert float(ct.quadratic_loss(W, v, K)) == pytest.approx(
        float(ct.quadratic_loss(W, v, K, b=b_star))
    )
    assert float(ct.quadratic_loss(W, v, K, b=b_star + 0.3)) > float(ct.quadratic_loss(W, v, K))


def test_quadratic_loss_with_per_feature_kurtosis_matches_monte_carlo():
    rng = np.random.default_rng(5)
    W = rng.normal(size=(2, 3)) * 0.7
    v = np.array([1.0, 0.6, 0.3])
    p_F = np.array([1.0, 0.5, 0.2])
    x = sample_inputs(rng, "gaussian", p_F, 400_000)
    b = float(ct.optimal_bias(W, v))
    mc, se = monte_carlo_loss(x, W, v, b)
    assert abs(float(ct.quadratic_loss(W, v, 3.0 / p_F)) - mc) <= 5 * se


def test_loss_splits_into_per_feature_terms_through_capacity():
    """2 Σ_{j≠i} G_ij² = 2 g_i² (1 − C_i)/C_i with C_i the metrics' capacity (docs/science/metrics.md)."""
    rng = np.random.default_rng(1)
    W, v, K = rng.normal(size=(2, 4)), rng.uniform(0.2, 1.0, 4), 7.0
    g, C = np.sum(W * W, axis=0), metrics.capacity(W)
    per_feature = (K - 1) * (v - g) ** 2 + 2 * g**2 * (1 - C) / C
    assert per_feature.sum() == pytest.approx(float(ct.quadratic_loss(W, v, K)), rel=1e-12)


@pytest.mark.parametrize("K", [1.8, 3.0, 6.0, 30.0])
def test_loss_at_capacity_is_the_minimum_over_the_norm(K):
    g = np.linspace(0.0, 2.0, 200_001)
    for C in (0.1, 0.5, 0.9):
        for v in (0.3, 1.0):
            curve = (K - 1) * (v - g) ** 2 + 2 * g**2 * (1 - C) / C
            assert curve.min() == pytest.approx(float(ct.loss_at_capacity(C, v, K)), rel=1e-8)
            assert g[np.argmin(curve)] == pytest.approx(float(ct.optimal_norms(C, v, K)), abs=2e-5)
    assert float(ct.loss_at_capacity(0.0, 0.7, K)) == pytest.approx((K - 1) * 0.49)
    assert float(ct.loss_at_capacity(1.0, 0.7, K)) == 0.0


def test_marginal_benefit_is_minus_the_derivative():
    C = np.linspace(0.05, 0.95, 19)
    h = 1e-6
    for K in (1.5, 3.0, 5.0, 40.0):
        for v in (0.2, 1.0):
            numeric = -(ct.loss_at_capacity(C + h, v, K) - ct.loss_at_capacity(C - h, v, K)) / (
                2 * h
            )
            np.testing.assert_allclose(ct.marginal_benefit(C, v, K), numeric, rtol=1e-6)


@pytest.mark.parametrize(
    "K,shape",
    [
        (1.8, "increasing"),
        (2.5, "increasing"),
        (3.0, "flat"),
        (4.0, "decreasing"),
        (30.0, "decreasing"),
        (1.0, "flat"),
    ],
)
def test_curve_shape_matches_the_sampled_marginal_benefit(K, shape):
    assert ct.curve_shape(K) == shape
    diffs = np.diff(ct.marginal_benefit(np.linspace(0, 1, 50), 1.0, K))
    expected = {"increasing": diffs > 0, "decreasing": diffs < 0, "flat": np.abs(diffs) < 1e-12}[
        shape
    ]
    assert expected.all()


def loss_gradient(W, v, K):
    """∂/∂W of ``quadratic_loss`` with the optimal bias: 2 W M, M = ∂L/∂G."""
    G = np.swapaxes(W, -1, -2) @ W
    M = 4.0 * G
    idx = np.arange(G.shape[-1])
    M[..., idx, idx] = -2.0 * (K - 1.0) * (v - np.diagonal(G, axis1=-2, axis2=-1))
    return 2.0 * W @ M


def brute_force(v, K, m, restarts=8, steps=3000, seed=0):
    """Lowest loss over W (m×n) by gradient descent from random starts."""
    W = np.random.default_rng(seed).normal(size=(restarts, m, len(v))) * 0.5
    for _ in range(steps):
        W = W - 0.05 / (K * v.max()) * loss_gradient(W, v, K)
    losses = ct.quadratic_loss(W, v, K)
    return W[np.argmin(losses)], losses.min()


@pytest.mark.parametrize(
    "v,K,m",
    [
        ([1.0, 0.8, 0.5], 6.0, 1),
        ([1.0, 0.8, 0.5], 6.0, 2),
        ([1.0, 0.9, 0.7, 0.5], 10.0, 2),
        ([1.0, 0.9, 0.7, 0.5], 1.8, 2),
        ([1.0, 0.8, 0.5], 3.0, 2),
    ],
)
def test_optimal_allocation_attains_the_brute_force_minimum(v, K, m):
    """The relaxation Σ_i L_i(C_i) under Σ C_i ≤ m is a lower bound on every W's loss; its
    optimum is attained: gradient descent on W finds the same loss and capacities."""
    v = np.asarray(v)
    C, _ = ct.optimal_allocation(v, K, m)
    W, best = brute_force(v, K, m)
    assert best == pytest.approx(ct.loss_at_capacity(C, v, K).sum(), rel=1e-6)
    np.testing.assert_allclose(metrics.capacity(W), C, atol=1e-3)


def test_optimal_allocation_water_filling_properties():
    rng = np.random.default_rng(2)
    for _ in range(20):
        n, m, K = int(rng.integers(3, 9)), int(rng.integers(1, 3)), float(rng.uniform(3.5, 40))
        v = rng.uniform(0.05, 1.0, n)
        C, lam = ct.optimal_allocation(v, K, m)
        assert np.all((C >= 0) & (C <= 1)) and C.sum() <= m + 1e-9
        mb = ct.marginal_benefit(C, v, K)
        partial = (C > 0) & (C < 1)
        np.testing.assert_allclose(mb[partial], lam, rtol=1e-9)
        assert np.all(mb[C == 1] >= lam * (1 - 1e-9)) and np.all(mb[C == 0] <= lam * (1 + 1e-9))
        total = ct.loss_at_capacity(C, v, K).sum()
        for _ in range(50):  # no random feasible allocation does better
            other = rng.dirichlet(np.ones(n)) * m
            if np.all(other <= 1):
                assert ct.loss_at_capacity(other, v, K).sum() >= total - 1e-12


def test_optimal_allocation_edge_cases():
    v = np.array([0.2, 1.0, 0.5])
    C, lam = ct.optimal_allocation(v, 2.0, 2)  # K < 3: top-m by importance
    np.testing.assert_array_equal(C, [0.0, 1.0, 1.0])
    assert np.isnan(lam)
    C, lam = ct.optimal_allocation(v, 8.0, 3)  # budget does not bind
    np.testing.assert_array_equal(C, [1.0, 1.0, 1.0])
    assert lam == 0.0


def test_classify_capacity_thresholds():
    C = np.array([0.0, 0.1, 0.11, 0.5, 0.89, 0.9, 1.0])
    assert list(ct.classify_capacity(C)) == [0, 0, 1, 1, 1, 2, 2]
    assert list(ct.classify_capacity(C, mono=0.5, ignored=0.0)) == [0, 1, 1, 2, 2, 2, 2]
    assert "0.9" in ct.CapacityThresholds().describe()


def brute_force_region(ratio, K, num=401):
    """Region of the minimum of the 1×2 model's loss over a grid of (w₁², w₂²)."""
    v = np.array([1.0, ratio])
    g = np.linspace(0.0, v.max(), num)
    W = np.sqrt(np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1))[..., None, :]
    i, j = np.unravel_index(np.argmin(ct.quadratic_loss(W, v, K)), (num, num))
    return ct.POLY_BOTH if i > 0 and j > 0 else ct.MONO_FIRST if j == 0 else ct.MONO_SECOND


@pytest.mark.parametrize("K", [1.8, 3.0, 3.5, 6.0, 15.0])
def test_two_feature_region_matches_allocation_and_brute_force(K):
    lower, upper = ct.polysemantic_boundary(K)
    for ratio in np.geomspace(0.05, 20.0, 23):
        if any(abs(np.log(ratio / edge)) < np.log(1.3) for edge in (lower, upper, 1.0)):
            continue  # a boundary: the entering feature's capacity is tiny
        region = ct.two_feature_region(ratio, K)
        C, _ = ct.optimal_allocation(np.array([1.0, ratio]), K, 1)
        from_allocation = (
            ct.POLY_BOTH if np.all(C > 0) else ct.MONO_FIRST if C[0] == 1 else ct.MONO_SECOND
        )
        assert region == from_allocation == brute_force_region(ratio, K), (ratio, region)
    assert (ct.POLY_BOTH in ct.two_feature_region(np.geomspace(0.05, 20, 50), K)) == (K > 3)


def test_polysemantic_boundary_values():
    lower, upper = ct.polysemantic_boundary(np.array([2.0, 3.0, 5.0, 11.0]))
    np.testing.assert_allclose(lower, [1.0, 1.0, 0.5, 0.2])
    np.testing.assert_allclose(upper, [1.0, 1.0, 2.0, 5.0])


@pytest.mark.parametrize("K,ratio", [(1.8, 0.8), (6.0, 0.8), (6.0, 0.3), (20.0, 1.0)])
def test_held_loss_two_features_is_the_exact_constrained_minimum(K, ratio):
    v = np.array([1.0, ratio])
    S = np.linspace(0.0, 3.0, 30_001)[:, None, None]
    for C in (0.1, 0.4, 0.8):
        W = np.sqrt(S * np.array([C, 1 - C]))  # every 1×2 W with C₁ = C, up to signs
        assert ct.quadratic_loss(W, v, K).min() == pytest.approx(
            float(ct.held_loss_two_features(C, ratio, K)), rel=1e-7
        )
        W_star = ct.held_capacity_weights(C, ratio, K)
        assert float(metrics.capacity(W_star)[0]) == pytest.approx(C)
        assert float(ct.quadratic_loss(W_star, v, K)) == pytest.approx(
            float(ct.held_loss_two_features(C, ratio, K))
        )
        # the relaxation L₁(C) + L₂(1 − C) is a lower bound
        assert (
            ct.loss_at_capacity(np.array([C, 1 - C]), v, K).sum()
            <= float(ct.held_loss_two_features(C, ratio, K)) + 1e-12
        )
    C_grid = np.linspace(0, 1, 100_001)
    optimum, _ = ct.optimal_allocation(v, K, 1)
    assert ct.held_loss_two_features(C_grid, ratio, K).min() == pytest.approx(
        ct.loss_at_capacity(optimum, v, K).sum(), rel=1e-7
    )


# ---------------------------------------------------------------------------------------------
# Figures on a synthetic table of analytic optima


def _row(model, v, W, K, seed=0, loss=None, feature=-1, target=np.nan, density=1.0):
    W = np.atleast_2d(W)
    C = metrics.capacity(W)
    steps = [0, 50, 100]
    return {
        "model": model,
        "seed": seed,
        "n_features": W.shape[1],
        "n_hidden": W.shape[0],
        "kurtosis": K,
        "density": density,
        "capacity_feature": feature,
        "capacity_target": target,
        "importance_last": float(v[-1]),
        "loss": float(ct.quadratic_loss(W, v, K)) if loss is None else loss,
        "capacity": list(C),
        "norms": list(metrics.feature_norms(W)),
        "feature_importance": list(v),
        "feature_density": [density] * len(v),
        "W": [list(r) for r in W],
        "snap_step": steps,
        "snap_capacity": [list(C * s / steps[-1]) for s in steps],
    }


TARGETS = np.linspace(0.05, 0.95, 10)


def held_table(K_values=(1.8, 6.0), ratio=0.8, targets=TARGETS):
    rows = []
    v = np.array([1.0, ratio])
    for K in K_values:
        for target in targets:
            W = ct.held_capacity_weights(target, ratio, K)[0]
            rows.append(_row("quadratic", v, W, K, feature=0, target=target))
            rows.append(
                _row("quadratic", v, W * 0.9, K, seed=1, feature=0, target=target)
            )  # worse seed
    return pd.DataFrame(rows)


def free_table():
    rows = []
    for K in (1.8, 3.0, 5.0, 10.0, 30.0):
        for ratio in (0.1, 0.3, 0.7, 1.5, 4.0):
            v = np.array([1.0, ratio])
            C, _ = ct.optimal_allocation(v, K, 1)
            rows.append(
                _row("quadratic", v, np.sqrt(ct.optimal_norms(C, v, K)), K, density=1.8 / K)
            )
            top = np.eye(2)[np.argmax(v)] * np.sqrt(v.max())  # linear model: top-m features
            rows.append(_row("linear", v, top, K, loss=1.0, density=1.8 / K))
    return pd.DataFrame(rows)


def test_empirical_marginal_benefit_recovers_the_exact_held_curve():
    curves = cap.empirical_marginal_benefit(held_table(), ["model", "kurtosis"]).set_index(
        "kurtosis"
    )
    for K, shape in ((1.8, "increasing"), (6.0, "decreasing")):
        curve = curves.loc[K]
        assert curve["shape"] == shape and curve["n_points"] == 10
        C = curve["capacity"]
        np.testing.assert_allclose(C, TARGETS, atol=1e-9)  # best seeds kept
        h = 1e-6
        exact = -(
            ct.held_loss_two_features(C + h, 0.8, K) - ct.held_loss_two_features(C - h, 0.8, K)
        ) / (2 * h)
        interior = slice(1, -1)  # np.gradient is first order at the ends
        np.testing.assert_allclose(
            curve["marginal_benefit"][interior], exact[interior], atol=0.05 * np.abs(exact).max()
        )


def test_shape_of_the_exact_held_curve_follows_section_6_where_it_should():
    """Held-capacity experiments measure the whole loss, not the relaxed L_i(C). For n = 2, m = 1 the
    sampled exact curve still reads increasing for K < 3 (v₂/v₁ off 1) and decreasing inside the
    polysemantic region; outside it, at K > 3, it can read either way."""
    for K in np.geomspace(1.05, 80, 25):
        for ratio in np.geomspace(0.05, 20, 25):
            mb = -np.gradient(ct.held_loss_two_features(TARGETS, ratio, K), TARGETS)
            shape = cap.curve_shape_of(TARGETS, mb)
            if K < 3 and abs(np.log(ratio)) > np.log(1.1):
                assert shape == "increasing", (K, ratio)
            if ct.two_feature_region(ratio, K) == ct.POLY_BOTH:
                assert shape == "decreasing", (K, ratio)


def test_shared_marginal_benefit_is_equal_at_an_optimum():
    v, K = np.array([1.0, 0.9, 0.7, 0.5]), 10.0
    C, lam = ct.optimal_allocation(v, K, 1)
    row = pd.Series(_row("quadratic", v, np.sqrt(ct.optimal_norms(C, v, K)), K))
    shared = cap.shared_marginal_benefit(row)
    assert len(shared["features"]) >= 2 and shared["spread"] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(shared["marginal_benefit"], lam, rtol=1e-6)
    skewed = pd.Series(_row("quadratic", v, np.sqrt(v), K))  # g ∝ v: not the optimum
    assert cap.shared_marginal_benefit(skewed)["spread"] > 1.1


def test_the_optimum_is_realised_by_one_dimensional_weights():
    """W = (√g₁, √g₂) with the optimal norms has the optimal capacities (m = 1 attains the
    relaxation), so the synthetic phase cells sit in the analytic regions; with the default
    thresholds a polysemantic feature of small capacity reads as ignored (C = 1/13 at K = 10,
    v₂/v₁ = 0.3)."""
    quad = free_table().query("model == 'quadratic'")
    exact = {"mono": 1 - 1e-9, "ignored": 1e-9}
    misread = 0
    for _, row in quad.iterrows():
        expected = ct.SECOND_FEATURE_CLASS[
            ct.two_feature_region(row["feature_importance"][1], row["kurtosis"])
        ]
        assert int(ct.classify_capacity(row["capacity"][1], **exact)) == expected
        misread += int(ct.classify_capacity(row["capacity"][1])) != expected
    assert misread >= 1


def test_capacity_figures_draw_from_a_synthetic_sweep(tmp_path: Path):
    table = pd.concat([held_table(), free_table()], ignore_index=True)
    sweep = StoredSweep(
        tmp_path,
        table,
        {
            "name": "capacity_test",
            "sweep": {"grid": {"kurtosis": [], "importance_last": [], "capacity_target": []}},
        },
        "0" * 16,
    )
    names = [name for name in figure_names(sweep) if name.startswith("capacity_")]
    assert names == [
        "capacity_trajectories",
        "capacity_marginal_benefit",
        "capacity_phase_diagram",
        "capacity_allocation",
        "capacity_vs_sparsity",
        "capacity_over_training",
    ]
    for name in names[1:]:
        draw(name, sweep).savefig(tmp_path / "figure.png", dpi=40)
    fractions = cap.polysemantic_fraction(
        free_table(), ["model", "kurtosis", "importance_last"], "kurtosis"
    )
    assert (fractions[fractions["model"] == "linear"]["poly_fraction"] == 0).all()
    quad = fractions[fractions["model"] == "quadratic"].set_index("kurtosis")["poly_fraction"]
    assert quad[1.8] == 0 and quad[30.0] > quad[5.0] > 0  # polysemanticity rises with kurtosis
    no_penalty = StoredSweep(
        tmp_path, free_table(), {"sweep": {"grid": {"kurtosis": []}}}, "0" * 16
    )
    assert "capacity_marginal_benefit" not in figure_names(no_penalty)


@pytest.mark.parametrize(
    "name",
    [
        "capacity_marginal_benefit",
        "capacity_phase_diagram",
        "capacity_allocation",
        "capacity_vs_sparsity",
        "capacity_over_training",
    ],
)
def test_capacity_figures_draw_the_same_into_every_target(name):
    table = pd.concat([held_table(), free_table()], ignore_index=True)
    sweep = StoredSweep(
        Path("."),
        table,
        {
            "name": "capacity_test",
            "sweep": {"grid": {"kurtosis": [], "importance_last": [], "capacity_target": []}},
        },
        "0" * 16,
    )
    assert_draws_the_same_into_every_target(lambda target: draw(name, sweep, target))
