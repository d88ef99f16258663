"""Metric identities on constructed geometries (docs/science/metrics.md), for numpy and JAX inputs."""

import jax.numpy as jnp
import numpy as np
import pytest

from toymodels import metrics


def polygon(k: int) -> np.ndarray:
    angles = 2 * np.pi * np.arange(k) / k
    return np.stack([np.cos(angles), np.sin(angles)])  # 2×k


def tetrahedron() -> np.ndarray:
    v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float).T
    return v / np.sqrt(3)


CASES = [
    ("orthogonal", np.eye(3), [1, 1, 1]),
    ("antipodal pair", np.array([[1.0, -1.0]]), [0.5, 0.5]),
    ("triangle", polygon(3), [2 / 3] * 3),
    ("pentagon", polygon(5), [2 / 5] * 5),
    ("heptagon", polygon(7), [2 / 7] * 7),
    ("tetrahedron", tetrahedron(), [3 / 4] * 4),
    ("4 identical", np.ones((2, 4)) / np.sqrt(2), [1 / 4] * 4),
    ("zero vector", np.array([[1.0, 0.0], [0.0, 0.0]]), [1.0, 0.0]),
]


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
@pytest.mark.parametrize("name,W,expected", CASES, ids=[c[0] for c in CASES])
def test_capacity_exact_values(xp, name, W, expected):
    C = np.asarray(metrics.capacity(xp.asarray(W)))
    np.testing.assert_allclose(C, expected, atol=1e-6)


def test_capacity_is_feature_dimensionality_and_budget_bounded_by_rank():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(50, 3, 8))  # 50 random models, m=3, n=8
    C = metrics.capacity(W)
    norms = metrics.feature_norms(W)
    # D_i = ||W_i||^2 / sum_j (What_i . W_j)^2, computed the long way
    for k in range(5):
        for i in range(8):
            hat = W[k, :, i] / norms[k, i]
            D = norms[k, i] ** 2 / np.sum((hat @ W[k]) ** 2)
            assert C[k, i] == pytest.approx(D, rel=1e-10)
    assert np.all(C.sum(-1) <= 3 + 1e-9)
    assert np.all((C >= 0) & (C <= 1 + 1e-12))


def test_tight_frames_fill_the_budget():
    for W in (polygon(5), tetrahedron(), np.eye(4)):
        assert metrics.capacity(W).sum() == pytest.approx(np.linalg.matrix_rank(W))


def test_interference_and_polysemanticity_match_definition():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(2, 6))
    norms = metrics.feature_norms(W)
    for i in range(6):
        hat = W[:, i] / norms[i]
        expected = sum((hat @ W[:, j]) ** 2 for j in range(6) if j != i)
        assert metrics.interference(W)[i] == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(metrics.polysemanticity(W) ** 2, metrics.interference(W))
    # orthogonal features do not interfere; antipodal ones fully do
    np.testing.assert_allclose(metrics.interference(np.eye(3)), 0.0)
    np.testing.assert_allclose(metrics.interference(np.array([[1.0, -1.0]])), [1.0, 1.0])


def test_dimensions_per_feature():
    assert metrics.dimensions_per_feature(np.eye(2, 4)) == pytest.approx(1.0)  # 2 dedicated of 4
    assert metrics.dimensions_per_feature(polygon(4)) == pytest.approx(0.5)  # two antipodal pairs
    batch = np.stack([np.eye(2, 4), polygon(4)])
    np.testing.assert_allclose(metrics.dimensions_per_feature(batch), [1.0, 0.5])


def test_datapoint_dimensionality_of_a_polygon_of_points():
    # identity W: the hidden vectors are the points themselves; a T-gon in m=2 gives m/T each
    for T in (3, 5, 8):
        np.testing.assert_allclose(
            metrics.datapoint_dimensionality(np.eye(2), polygon(T)), 2 / T, atol=1e-12
        )
    # points on orthogonal directions each own a dimension
    np.testing.assert_allclose(metrics.datapoint_dimensionality(np.eye(3), 2 * np.eye(3)), 1.0)
