"""Detecting a backdoor feature in superposition (issue 17 item 1): the Mahalanobis-vs-‖h‖ identity
on a tight frame, the pursuit oracle, the metrics, and toymodels-backdoor on a stored sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.figures.backdoor import represented_fraction
from analysis.figures.catalog import draw, figure_names, notes
from analysis.stored_sweep import StoredSweep
from sweeps.backdoor import detect
from sweeps.backdoor.cli import main as backdoor_main
from sweeps.backdoor.evaluate import benign, evaluate
from sweeps.plan import plan_sweep
from tests.helpers import compose_config
from toymodels.registry import ConfigError


def _polygon(n: int, start: float = 0.0) -> np.ndarray:
    """2×n unit vectors at angles start + 2πi/n."""
    a = start + 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)])


def _population_moments(W_b: np.ndarray, p: float) -> dict:
    """D's exact moments for i.i.d. benign features (active w.p. p, U[0, 1])."""
    mean_x, var_x = p / 2, p / 3 - (p / 2) ** 2
    mean = W_b @ np.full(W_b.shape[1], mean_x)
    cov = var_x * W_b @ W_b.T
    return {"mean": mean, "cov": cov, "second": cov + np.outer(mean, mean)}


def _ranks(v):
    return np.argsort(np.argsort(v, kind="stable"), kind="stable")


def test_on_a_tight_frame_mahalanobis_ranks_exactly_as_the_distance_to_the_mean():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(2000, 2))
    # A regular hexagon is a tight frame that sums to zero: every Mahalanobis ranks as ‖h‖.
    hexagon = _population_moments(_polygon(6), 0.05)
    for centred in (True, False):
        np.testing.assert_array_equal(
            _ranks(detect.mahalanobis(H, hexagon, centred)), _ranks(detect.norm(H))
        )
    # Three lines at 60° are a tight frame too (doubled angles sum to zero) but the vectors do not
    # sum to zero: centred Mahalanobis then ranks as ‖h − μ‖, not as ‖h‖.
    W = np.stack([np.cos(np.radians([0, 60, 120])), np.sin(np.radians([0, 60, 120]))])
    lines = _population_moments(W, 0.3)
    assert np.allclose(lines["cov"] / lines["cov"][0, 0], np.eye(2))
    np.testing.assert_array_equal(
        _ranks(detect.mahalanobis(H, lines)), _ranks(detect.norm(H - lines["mean"]))
    )
    assert not np.array_equal(_ranks(detect.mahalanobis(H, lines)), _ranks(detect.norm(H)))
    # Fitted on a trusted sample instead of the population, the hexagon's ranking is the same up to noise.
    trusted = benign(rng, 6, 0.05, 100_000) @ _polygon(6).T
    fitted = detect.mahalanobis(H, detect.moments(trusted))
    assert np.corrcoef(_ranks(fitted), _ranks(detect.norm(H)))[0, 1] > 0.999


def test_pursuit_explains_what_lies_in_a_cone_of_k_atoms_and_nothing_else():
    atoms = np.eye(4)[:, :3]  # three orthonormal atoms in 4-D
    coef = np.array([[0.5, 0.0, 0.2], [0.0, 0.3, 0.0]])
    H = coef @ atoms.T
    np.testing.assert_allclose(detect.pursuit_residual(H, atoms, 2), 0.0, atol=1e-12)
    assert detect.pursuit_residual(np.array([[0.0, 0, 0, 1.0]]), atoms, 3)[0] == pytest.approx(1.0)
    assert detect.pursuit_residual(np.array([[-1.0, 0, 0, 0]]), atoms, 3)[0] == pytest.approx(
        1.0
    )  # non-negative
    found, _ = detect.pursuit(H, atoms, 2)
    np.testing.assert_allclose(found, coef, atol=1e-9)


def test_auroc_and_tpr_match_their_definitions():
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1, 1, 300).round(1), rng.normal(0, 1, 400).round(1)  # rounded: ties
    brute = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert detect.auroc(pos, neg) == pytest.approx(brute, abs=1e-12)
    assert detect.tpr_at_fpr(pos, neg, 0.01) == np.mean(pos > np.quantile(neg, 0.99))


def test_only_a_detector_that_knows_the_benign_directions_tells_the_backdoor_from_benign_inputs():
    # Benign features a hexagon in the plane of the first two dimensions, the backdoor along the
    # third: the oracle (k = 2 atoms) explains every benign h and none of the backdoor's.
    W = np.concatenate(
        [np.vstack([_polygon(6), np.zeros((1, 6))]), np.array([[0.0], [0.0], [1.0]])], axis=1
    )
    rows = pd.DataFrame(evaluate(W, 0.05, np.random.default_rng(2), 20_000, 2000))
    get = lambda det, neg: rows.query(
        "detector == @det and positive == 'alone' and negative == @neg"
    )["auroc"].item()
    assert get("oracle", "fresh") == pytest.approx(1.0, abs=1e-6) and get("oracle", "dense") > 0.99
    assert (
        get("mahalanobis", "fresh") > 0.99
    )  # the backdoor leaves D's span: Mahalanobis sees it too
    assert get("norm", "dense") < get("oracle", "dense") - 0.2


def _synthetic_store(tmp_path):
    """A stored sweep of two relu models (n_b = 6, m = 3): backdoor represented or not."""
    W_on = np.concatenate(
        [np.vstack([_polygon(6), np.zeros((1, 6))]), np.array([[0.0], [0.0], [1.0]])], axis=1
    )
    W_off = W_on.copy()
    W_off[:, -1] = 0.01
    rows = [
        dict(
            model="relu",
            data_kind="sparse",
            n_features=7,
            n_hidden=3,
            uid=10 + i,
            seed=0,
            loss=0.1,
            importance_last=imp,
            W=W.tolist(),
            feature_density=[0.05] * 7,
        )
        for i, (imp, W) in enumerate(((100.0, W_on), (1.0, W_off)))
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "results.parquet")
    (tmp_path / "sweep.yaml").write_text(
        "# config_hash: 0\n"
        + yaml.safe_dump(
            {"name": "backdoor_test", "sweep": {"grid": {"importance_last": [1.0, 100.0]}}}
        )
    )


def test_toymodels_backdoor_scores_a_store_and_the_figure_reads_it(tmp_path):
    _synthetic_store(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        backdoor_main([str(tmp_path), "--sae-l1", "-1"])
    assert exit_info.value.code == 2
    backdoor_main([str(tmp_path), "--trusted", "5000", "--test", "500", "--sae-steps", "30"])
    table = pd.read_parquet(tmp_path / "backdoor.parquet")
    assert set(table["detector"]) >= {"norm", "mahalanobis", "oracle", "sae_error", "sae_pursuit"}
    assert represented_fraction(table) == 0.5 and table["sae_mmcs"].notna().all()
    sweep = StoredSweep(
        tmp_path, pd.read_parquet(tmp_path / "results.parquet"), {"name": "t"}, "0" * 16
    )
    assert [n for n in figure_names(sweep) if n.startswith("backdoor")] == ["backdoor"]
    draw("backdoor", sweep)
    assert notes("backdoor", sweep)["backdoor_auroc_alone_vs_fresh"]["oracle"] > 0.99


def test_the_backdoor_density_ratio_scales_the_last_feature_and_is_checked():
    config = compose_config(["experiment=backdoor_small"])
    densities = {
        (p.coords[0][1], dict(p.coords)["density_last_ratio"]): p.density_F
        for _, p in plan_sweep(config).units
    }
    assert all(
        d[-1] == pytest.approx(d[0] * ratio) and d[0] == d[-2]
        for (_, ratio), d in densities.items()
    )
    with pytest.raises(ConfigError, match=r"sweep.grid.density_last_ratio\[0\].*above 1"):
        compose_config(["experiment=backdoor_small", "sweep.grid.density_last_ratio=[10.0]"])
    with pytest.raises(ConfigError, match=r"sweep.grid.density_last_ratio\[0\].*> 0"):
        compose_config(["experiment=backdoor_small", "sweep.grid.density_last_ratio=[0.0]"])
