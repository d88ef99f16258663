"""The issue-17 studies end to end at a tiny size: each experiment's config trains in this process,
the figure catalog names the study's figures from the store alone, and every one of them draws
(through the same ``draw`` and ``notes`` that ``toymodels-figures`` and the notebook API use)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.api import load
from analysis.figures.catalog import draw, figure_names, notes
from sweeps.api import compose, run
from tests.helpers import tiny

STUDIES = {
    # experiment, overrides that keep it to seconds, figures the store must support, notes
    "circuits": (
        "circuits_small",
        ["sweep.grid.layers=[1,2]", "sweep.grid.density=[1.0]", "sweep.seeds=1", "train.steps=60"],
        {"circuit_heatmaps", "circuit_capacity", "circuit_economics"},
        {"circuit_dropped_features"},
    ),
    "target_noise": (
        "target_noise_small",
        ["sweep.grid.n_features=[3,5]", "sweep.grid.density=[0.0,0.5]", "sweep.seeds=1"],
        {"target_noise"},
        {"target_noise_linear_max_rel_error"},
    ),
    "mono_quadratic": (
        "mono_quadratic_small",
        [
            "sweep.grid.density=[0.1]",
            "sweep.grid.mono_start=[0,10]",
            "sweep.grid.mono_penalty=[0.1,10.0]",
            "sweep.seeds=1",
        ],
        {"mono_vs_loss", "mono_switch"},
        set(),
    ),
}


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_the_study_trains_and_draws_its_figures_from_the_store(tmp_path, study):
    experiment, overrides, expected, expected_notes = STUDIES[study]
    config = compose(experiment, [*tiny(tmp_path / study), *overrides])
    run(config, progress=False)
    sweep = load(tmp_path / study)
    names = figure_names(sweep)
    assert expected <= set(names), names
    for name in names:
        fig = draw(name, sweep)
        assert fig.axes, name
    found = {}
    for name in expected:
        found.update(notes(name, sweep))
    assert expected_notes <= set(found) and all(np.isfinite(found[k]) for k in expected_notes), (
        found
    )
