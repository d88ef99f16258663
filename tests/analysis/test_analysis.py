"""Phases and seed aggregation on hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from analysis.phases import DEDICATED, NOT_LEARNED, SUPERPOSED, PhaseThresholds, feature_phase
from analysis.seeds import best_of_seeds, summarize


def test_feature_phase_on_constructed_models():
    assert list(feature_phase(np.array([[1.0, 0.0]]))) == [DEDICATED, NOT_LEARNED]
    assert list(feature_phase(np.array([[1.0, -1.0]]))) == [SUPERPOSED, SUPERPOSED]
    assert list(feature_phase(np.array([[0.0, 1.0]]))) == [NOT_LEARNED, DEDICATED]
    assert list(feature_phase(np.eye(2))) == [DEDICATED, DEDICATED]
    # thresholds are honoured
    W = np.array([[1.0, 0.3]])
    assert list(feature_phase(W, PhaseThresholds(represented=0.5))) == [DEDICATED, NOT_LEARNED]
    assert list(feature_phase(W, PhaseThresholds(represented=0.2, superposed=0.05))) == [
        SUPERPOSED,
        SUPERPOSED,
    ]


def table():
    rows = []
    # grid point r=0.5: seeds 0,1 learn feature 2 antipodally, seed 2 ignores it (and has the best loss)
    for seed, (W, loss) in enumerate(
        [([[1.0, -1.0]], 0.2), ([[1.0, -0.9]], 0.25), ([[1.0, 0.0]], 0.1)]
    ):
        rows.append(dict(r=0.5, seed=seed, W=W, loss=loss))
    for seed, (W, loss) in enumerate([([[0.0, 1.0]], 0.3), ([[0.0, 1.0]], 0.31)]):
        rows.append(dict(r=2.0, seed=seed, W=W, loss=loss))
    return pd.DataFrame(rows)


def test_best_of_seeds_picks_lowest_loss():
    best = best_of_seeds(table(), ["r"])
    assert list(best["seed"]) == [2, 0]
    assert list(best["loss"]) == [0.1, 0.3]


def test_summarize_fractions_mean_and_spread():
    s = summarize(table(), ["r"], feature=1).set_index("r")
    assert s.loc[0.5, "phase_best"] == NOT_LEARNED
    assert s.loc[0.5, "frac_superposed"] == pytest.approx(2 / 3)
    assert s.loc[0.5, "frac_not_learned"] == pytest.approx(1 / 3)
    assert s.loc[0.5, "loss_mean"] == pytest.approx(np.mean([0.2, 0.25, 0.1]))
    assert s.loc[0.5, "loss_std"] == pytest.approx(np.std([0.2, 0.25, 0.1]))
    assert s.loc[2.0, "phase_best"] == DEDICATED and s.loc[2.0, "frac_dedicated"] == 1.0
    assert s.loc[2.0, "n_seeds"] == 2


def test_agreement_with_theory_on_hand_made_summary():
    from analysis.figures.phase_diagram import agreement_with_theory
    from analysis.theory.n2m1 import predicted_phase

    r = np.array([0.2, 0.2, 5.0, 5.0, 1.0])
    p = np.array([0.02, 0.9, 0.02, 0.9, 0.57])  # the last sits on the triple point: excluded
    summary = pd.DataFrame(
        {"importance_decay": r, "density": p, "phase_best": predicted_phase(p, r)}
    )
    summary.loc[0, "phase_best"] = NOT_LEARNED  # one wrong cell, away from the boundary
    result = agreement_with_theory(summary)
    assert result == {"cells": 4, "agree": 3, "fraction": 0.75, "all_cells": 5, "agree_all": 4}


@pytest.mark.parametrize(
    "experiment,expected",
    [
        (
            "tms_phase_2d_small",
            {"phase_diagram", "loss_curves", "capacity_trajectories", "dimensionality"},
        ),
        ("tms_phase_3_2_small", {"phase_diagram", "geometry_2d", "wtw", "dimensionality"}),
        ("tms_geometry_small", {"wtw", "dimensionality", "loss_curves"}),
    ],
)
def test_every_figure_renders_from_a_tiny_stored_sweep(tmp_path, experiment, expected):
    from analysis.cli import draw_all
    from analysis.figures.catalog import figure_names
    from analysis.stored_sweep import StoredSweep
    from sweeps.runner import run_sweep
    from tests.helpers import compose_config, tiny

    axes = ["sweep.grid.density=[1.0,0.3,0.05]"]
    if "phase" in experiment:
        axis = "importance_decay" if "2d" in experiment else "importance_last"
        axes.append(f"sweep.grid.{axis}=[0.3,3.0]")
    config = compose_config(
        [f"experiment={experiment}", *tiny(tmp_path / "s"), *axes, "sweep.seeds=2"]
    )
    run_sweep(config, progress=False)
    sweep = StoredSweep.load(tmp_path / "s")
    written = draw_all(sweep, tmp_path / "figures")
    names = {path.stem for path in written}
    assert expected <= names, names
    assert [path.stem for path in written[::2]] == figure_names(
        sweep
    )  # the CLI draws what the API lists
    assert all(path.stat().st_size > 5000 for path in written)
    if experiment == "tms_phase_2d_small":
        assert set(sweep.notes["agreement_with_theory"]) >= {"cells", "agree", "fraction"}
