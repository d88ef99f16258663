"""Closed-form n=2, m=1 theory (docs/science/n2m1.md) against Monte Carlo and against itself."""

import numpy as np
import pytest

from analysis.theory import n2m1 as theory
from analysis.theory import n2m1_exact, n2m1_relaxed

N_MC = 2_000_000
# Points of the (p, r) diagram: dense and sparse, both sides of r = 1, and the triple point.
POINTS = [(1.0, 0.3), (1.0, 3.0), (0.1, 0.3), (0.1, 3.0), (0.5, 1.0), (4 / 7, 1.0), (0.3, 0.7)]
ALL_SOLUTIONS = theory.SOLUTIONS + theory.EXTRA_SOLUTIONS


def _params(name, p):
    W, b = theory.solution_params(name, p)
    return W, b


@pytest.mark.parametrize("p,r", POINTS)
def test_closed_forms_match_monte_carlo(p, r):
    closed = theory.solution_losses(p, r, include_extra=True)
    for k, name in enumerate(ALL_SOLUTIONS):
        W, b = _params(name, p)
        mc, se = n2m1_exact.monte_carlo_loss(W, b, p, r, n_samples=N_MC, seed=k, return_stderr=True)
        assert abs(float(closed[name]) - mc) <= 5 * se + 1e-12, (name, float(closed[name]), mc, se)


@pytest.mark.parametrize("p,r", POINTS)
def test_exact_expected_loss_reproduces_closed_forms(p, r):
    closed = theory.solution_losses(p, r, include_extra=True)
    for name in ALL_SOLUTIONS:
        W, b = _params(name, p)
        np.testing.assert_allclose(
            n2m1_exact.expected_loss(W, b, p, r), closed[name], rtol=1e-12, atol=1e-15
        )


def test_exact_expected_loss_matches_monte_carlo_for_arbitrary_models():
    rng = np.random.default_rng(3)
    for k in range(8):
        W = rng.normal(size=(1, 2)) * [1.0, 0.8]
        b = rng.normal(size=2) * 0.4
        p, r = rng.uniform(0.05, 1.0), rng.uniform(0.2, 5.0)
        exact = float(n2m1_exact.expected_loss(W, b, p, r))
        mc, se = n2m1_exact.monte_carlo_loss(
            W, b, p, r, n_samples=500_000, seed=100 + k, return_stderr=True
        )
        assert abs(exact - mc) <= 5 * se, (W, b, p, r, exact, mc, se)


@pytest.mark.parametrize("name", ["not_learned", "dedicated", "confused"])
@pytest.mark.parametrize("p,r", [(1.0, 0.3), (0.1, 3.0), (0.5, 1.0), (0.3, 2.0)])
def test_stated_biases_are_optimal_for_their_weights(name, p, r):
    W, b = _params(name, p)
    seed = 11  # common random numbers: every perturbation sees the same samples
    base = n2m1_exact.monte_carlo_loss(W, b, p, r, n_samples=400_000, seed=seed)
    exact_base = float(n2m1_exact.expected_loss(W, b, p, r))
    for i in range(2):
        for delta in (0.05, -0.05):
            b2 = b.copy()
            b2[i] += delta
            assert n2m1_exact.monte_carlo_loss(W, b2, p, r, n_samples=400_000, seed=seed) >= base
            assert float(n2m1_exact.expected_loss(W, b2, p, r)) > exact_base
    # And the numerical optimiser finds the stated bias.
    best_b, _ = n2m1_exact.optimal_bias(W, p)
    np.testing.assert_allclose(best_b, b, atol=1e-4)


def test_antipodal_zero_bias_is_not_optimal():
    """docs/science/n2m1.md's antipodal solution keeps b = 0; the exact loss says a positive bias helps."""
    for p in (0.1, 0.5, 1.0):
        W, b = _params("superposition", p)
        h = 1e-7
        f0 = n2m1_exact.expected_feature_losses(W, b, p)[0]
        slope = (n2m1_exact.expected_feature_losses(W, b + [h, 0.0], p)[0] - f0) / h
        np.testing.assert_allclose(slope, -p * p / 3, rtol=1e-4)
        best_b, best_f = n2m1_exact.optimal_bias(W, p)
        assert np.all(best_b > 0) and np.all(best_f < f0)


def test_reduction_mean_is_sum_over_two():
    p = np.array([0.05, 0.3, 0.9])
    r = np.array([0.5, 1.0, 4.0])
    s = theory.solution_losses(p, r, reduction="sum", include_extra=True)
    m = theory.solution_losses(p, r, reduction="mean", include_extra=True)
    for name in ALL_SOLUTIONS:
        np.testing.assert_allclose(m[name], s[name] / 2, rtol=1e-15)
    W, b = np.array([[0.8, -0.6]]), np.array([0.1, 0.05])
    np.testing.assert_allclose(
        n2m1_exact.expected_loss(W, b, p, r, reduction="mean"),
        n2m1_exact.expected_loss(W, b, p, r, reduction="sum") / 2,
        rtol=1e-15,
    )
    mc_sum = n2m1_exact.monte_carlo_loss(W, b, 0.3, 1.0, n_samples=10_000, seed=1, reduction="sum")
    mc_mean = n2m1_exact.monte_carlo_loss(
        W, b, 0.3, 1.0, n_samples=10_000, seed=1, reduction="mean"
    )
    assert mc_mean == pytest.approx(mc_sum / 2, rel=1e-12)
    with pytest.raises(ValueError):
        theory.solution_losses(0.5, 1.0, reduction="median")


def test_mean_reduction_matches_training_loss_convention():
    """weighted_mse averages over features: with I = (1, r), the batch mean of
    mean_i(I_i (x_i − x̂_i)²) is the "mean" reduction."""
    p, r = 0.4, 2.0
    W, b = _params("superposition", p)
    rng = np.random.default_rng(0)
    x = np.where(rng.random((400_000, 2)) < p, rng.random((400_000, 2)), 0.0)
    xhat = np.maximum(x @ W[0][:, None] @ W[0][None, :] + b, 0.0)
    per_sample = np.mean(np.array([1.0, r]) * (x - xhat) ** 2, axis=1)
    se = per_sample.std() / np.sqrt(len(per_sample))
    closed = float(theory.solution_losses(p, r, reduction="mean")["superposition"])
    assert abs(per_sample.mean() - closed) <= 5 * se


@pytest.mark.parametrize("r", [0.1, 0.3, 0.5, 0.9, 1.2, 2.0, 3.0, 10.0])
def test_phase_flips_at_superposition_boundary(r):
    pb = float(theory.superposition_boundary(r))
    other = theory.NOT_LEARNED if r < 1 else theory.DEDICATED
    assert theory.predicted_phase(pb * (1 - 1e-6), r) == theory.SUPERPOSITION
    assert theory.predicted_phase(pb * (1 + 1e-6), r) == other
    losses = theory.solution_losses(pb, r)
    np.testing.assert_allclose(losses["superposition"], losses[theory.SOLUTIONS[other]], rtol=1e-12)


def test_boundary_formula_and_triple_point():
    r = np.geomspace(0.1, 10, 101)
    pb = theory.superposition_boundary(r)
    np.testing.assert_allclose(pb[r <= 1], 4 * r[r <= 1] / (2 + 5 * r[r <= 1]))
    np.testing.assert_allclose(pb[r >= 1], 4 / (5 + 2 * r[r >= 1]))
    # Symmetric under swapping the features (r → 1/r), continuous, peaked at the triple point.
    np.testing.assert_allclose(theory.superposition_boundary(1 / r), pb, rtol=1e-12)
    r_tp, p_tp = theory.TRIPLE_POINT
    assert (r_tp, p_tp) == (1.0, pytest.approx(4 / 7))
    assert float(theory.superposition_boundary(r_tp)) == pytest.approx(p_tp)
    assert pb.max() <= p_tp + 1e-12
    losses = theory.solution_losses(p_tp, r_tp)
    values = [float(losses[name]) for name in theory.SOLUTIONS]
    np.testing.assert_allclose(values, values[0], rtol=1e-12)
    # Monte Carlo agrees at the triple point too (all three within noise of each other).
    for k, name in enumerate(theory.SOLUTIONS):
        mc, se = n2m1_exact.monte_carlo_loss(
            *_params(name, p_tp), p_tp, r_tp, n_samples=N_MC, seed=50 + k, return_stderr=True
        )
        assert abs(mc - values[0]) <= 5 * se


def test_dedicated_boundary_is_r_equal_one_above_triple_point():
    for p in (0.6, 0.8, 1.0):
        assert theory.predicted_phase(p, 0.99) == theory.NOT_LEARNED
        assert theory.predicted_phase(p, 1.01) == theory.DEDICATED
    assert theory.dedicated_boundary(0.8) == 1.0
    assert np.isnan(theory.dedicated_boundary(0.3))
    # Below the triple point superposition wins on both sides of r = 1.
    assert (
        theory.predicted_phase(0.5, 0.99)
        == theory.predicted_phase(0.5, 1.01)
        == theory.SUPERPOSITION
    )


def test_vectorised_grids_give_grids():
    r, p = np.meshgrid(np.geomspace(0.1, 10, 7), np.geomspace(0.01, 1, 5))
    assert p.shape == (5, 7)
    for name, values in theory.solution_losses(p, r, include_extra=True).items():
        assert values.shape == p.shape, name
    phase = theory.predicted_phase(p, r)
    assert phase.shape == p.shape and set(np.unique(phase)) <= {0, 1, 2}
    assert theory.superposition_boundary(r).shape == r.shape
    assert theory.dedicated_boundary(p).shape == p.shape
    # Models broadcast too: one W and b against the whole grid, and a grid of models.
    W, b = _params("superposition", p)
    assert W.shape == (5, 7, 1, 2) and b.shape == (5, 7, 2)
    grid = n2m1_exact.expected_loss(W, b, p, r)
    assert grid.shape == p.shape
    np.testing.assert_allclose(grid, theory.solution_losses(p, r)["superposition"], rtol=1e-12)
    assert n2m1_exact.expected_loss(W[0, 0], b[0, 0], p, r).shape == p.shape
    best_b, best_f = n2m1_exact.optimal_bias(W, p)
    assert best_b.shape == best_f.shape == (5, 7, 2)
    phase_relaxed, loss_relaxed = n2m1_relaxed.relaxed_phase(p[::2, ::3], r[::2, ::3])
    assert phase_relaxed.shape == loss_relaxed.shape == (3, 3)


def test_boundary_curves_and_loss_crossover():
    curves = theory.boundary_curves(0.1, 10.0, num=50)
    assert curves["r"].shape == curves["p_superposition"].shape == (50,)
    np.testing.assert_allclose(
        curves["p_superposition"], theory.superposition_boundary(curves["r"])
    )
    np.testing.assert_allclose(curves["r_dedicated"], [1.0, 1.0])
    np.testing.assert_allclose(curves["p_dedicated"], [4 / 7, 1.0])
    assert theory.boundary_curves(2.0, 10.0)["r_dedicated"].size == 0

    line = theory.loss_crossover(r=0.5, num=400)
    pb = float(theory.superposition_boundary(0.5))
    np.testing.assert_allclose(line["crossings"], [pb])
    below, above = line["p"] < pb, line["p"] > pb
    assert np.all(line["phase"][below] == theory.SUPERPOSITION)
    assert np.all(line["phase"][above] == theory.NOT_LEARNED)
    # First order: the two branches cross with different slopes at the boundary.
    h = 1e-6
    d_sup = (
        theory.solution_losses(pb + h, 0.5)["superposition"]
        - theory.solution_losses(pb - h, 0.5)["superposition"]
    )
    d_nl = (
        theory.solution_losses(pb + h, 0.5)["not_learned"]
        - theory.solution_losses(pb - h, 0.5)["not_learned"]
    )
    assert abs(d_sup - d_nl) / (2 * h) > 0.05

    across = theory.loss_crossover(p=0.3, num=400)
    assert len(across["crossings"]) == 2
    for c in across["crossings"]:
        np.testing.assert_allclose(theory.superposition_boundary(c), 0.3)
    assert list(np.unique(across["phase"])) == [0, 1, 2]
    np.testing.assert_allclose(theory.loss_crossover(p=0.8)["crossings"], [1.0])
    with pytest.raises(ValueError):
        theory.loss_crossover()


def test_relaxed_solutions():
    """Letting weights and biases relax: ignore/dedicate stay put in their own phase, the antipodal
    pair drops below its closed form, most near the triple point, and Monte Carlo agrees."""
    p = np.array([0.1, 0.3, 4 / 7, 0.9])
    r = np.array([1.0, 0.5, 1.0, 0.3])
    sols = n2m1_relaxed.relaxed_solutions(p, r, names=("not_learned", "superposition"))
    closed = theory.solution_losses(p, r)
    nl = sols["not_learned"]
    np.testing.assert_allclose(nl["loss"][3], closed["not_learned"][3], rtol=1e-9)
    np.testing.assert_allclose(nl["b"][3], [0.0, 0.45], atol=1e-5)
    sup = sols["superposition"]
    assert np.all(sup["loss"][:3] < closed["superposition"][:3])
    assert sup["loss"][2] < 0.9 * closed["superposition"][2]
    assert np.all(sup["phase"][:3] == theory.SUPERPOSITION)
    W, b = sup["W"][2], sup["b"][2]
    mc, se = n2m1_exact.monte_carlo_loss(
        W, b, p[2], r[2], n_samples=N_MC, seed=7, return_stderr=True
    )
    assert abs(mc - sup["loss"][2]) <= 5 * se
    # A point the analytic diagram calls "not learned" is superposition once relaxed.
    assert theory.predicted_phase(0.46, 0.5) == theory.NOT_LEARNED
    assert n2m1_relaxed.relaxed_phase(0.46, 0.5)[0] == theory.SUPERPOSITION


def test_not_learned_becomes_a_saddle_above_threshold():
    """At p = 0.5 the ignore-feature-2 solution is a saddle for r ≳ 0.55 (documented in
    relaxed_solutions): a small opposite-sign w2 with a raised b2 lowers the exact loss."""
    p, h = 0.5, 1e-3
    W = np.array([[1 + 0.127 * h, -h]])
    b = np.array([0.081 * h, p / 2 + p * h / 2])
    for r, lower in ((0.6, True), (0.45, False)):
        change = float(
            n2m1_exact.expected_loss(W, b, p, r) - theory.solution_losses(p, r)["not_learned"]
        )
        assert (change < 0) == lower, (r, change)


def test_relaxed_superposition_loss_is_at_most_the_closed_form():
    p, r = np.array([0.1, 0.3, 0.5]), np.array([0.5, 0.5, 0.8])
    relaxed = n2m1_relaxed.relaxed_superposition_loss(p, r, reduction="mean")
    closed = theory.solution_losses(p, r, reduction="mean")["superposition"]
    assert np.all(relaxed <= closed + 1e-12)
    assert relaxed[-1] < 0.95 * closed[-1]  # near the triple point relaxing gains several percent
