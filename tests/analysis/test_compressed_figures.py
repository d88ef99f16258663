"""The compressed-computation figures draw from a tiny real store (``cc_mixing_small`` trained in
this process), through the catalog that ``toymodels-figures`` and the notebook API use, and the
measures they read agree with the closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.api import load
from analysis.figures.catalog import draw, figure_names, notes
from analysis.measures.compressed import measure_table
from analysis.theory.compressed import naive_loss_clean
from sweeps.api import compose, run
from sweeps.config import ConfigError
from sweeps.plan import plan_sweep
from tests.helpers import compose_config, tiny


def test_cc_figures_draw_from_the_store_and_read_the_naive_loss_right(tmp_path):
    config = compose(
        "cc_mixing_small",
        [
            *tiny(tmp_path / "cc"),
            "sweep.grid.d_embed=[20]",
            "sweep.seeds=1",
            "sweep.grid.density=[0.05,0.3]",
        ],
    )
    run(config, progress=False)
    sweep = load(tmp_path / "cc")
    names = figure_names(sweep)
    assert {"cc_advantage", "cc_mixing"} <= set(names) and "circuit_economics" not in names, names
    for name in ("cc_advantage", "cc_mixing"):
        assert draw(name, sweep).axes
    found = {**notes("cc_mixing", sweep), **notes("cc_advantage", sweep)}
    assert {"cc_best_ratio", "cc_embed_min_ratio_clean_at_p0.05"} <= set(found)
    m = measure_table(sweep.table)
    assert len(m) == 4 and set(m["labels"]) == {"embed", "clean"}
    clean = m[m["labels"] == "clean"]
    np.testing.assert_allclose(
        clean["naive"], [naive_loss_clean(20, 10, p) for p in clean["density"]]
    )
    embed = m[m["labels"] == "embed"]
    assert np.all(embed["naive"] > embed["naive_clean"])  # the naive model pays the mixing too
    assert embed["mixing_size"].iloc[0] == pytest.approx(
        clean["mixing_size"].iloc[0]
    )  # placed at one size
    assert (
        np.all((embed["gain_alignment"] > 0) & (embed["gain_alignment"] < 1))
        and clean["gain_alignment"].isna().all()
    )

    # SAEs read a toy's hidden layer through its kind's forward by name: refused for cc_residual, before compute
    with pytest.raises(ConfigError, match="^sae.toy.sweep: holds cc_residual models"):
        plan_sweep(
            compose_config(["+sae=toy", "~sweep.grid.density", f"sae.toy.sweep={tmp_path / 'cc'}"])
        )
