"""How many features can be active at once (issue 16 item 5; experiments ``sae_active``,
``sae_active_small``): exactly-l worlds, TopK SAEs whose k follows l (``sae.k=active``), figure
``sae_active`` from the store, and the science: recovery that collapses as l approaches m."""

import math

import numpy as np
import pandas as pd
import pytest

from sweeps.config import ConfigError
from sweeps.jobs import make_chunks
from sweeps.plan import plan_sweep
from sweeps.store import read_results
from tests.helpers import cli, compose_config
from toymodels.sae.build import exactly_world

SMALL = ["experiment=sae_active_small", "sweep.executor=local"]


@pytest.mark.parametrize("name, n_saes", [("sae_active", 4 * 6 * 2), ("sae_active_small", 2 * 3)])
def test_every_sae_has_k_equal_to_its_worlds_l(name, n_saes):
    config = compose_config([f"experiment={name}"])
    plan = plan_sweep(config)
    saes = plan.units
    assert len(saes) == n_saes
    for group, point in saes:
        active = dict(point.coords)["active"]
        assert (
            point.value("k") == active and group.spec.k_max == active
        )  # a world of l = 1 compiles top-1 only
        assert group.spec.kind == "topk" and group.spec.dict_size == config.sae.world.n_features
        assert (
            dict(point.source)["world_kind"] == "exactly"
            and dict(point.source)["magnitude"] == "fixed"
        )
    assert (
        len(make_chunks(plan)) == n_saes // config.sweep.seeds
    )  # (m, l) are static: one chunk each


def test_an_integer_k_still_means_itself_on_an_exactly_world():
    saes = plan_sweep(compose_config(SMALL + ["sae.k=2", "sweep.grid.active=[2,4]"])).units
    assert {(p.value("k"), g.spec.k_max) for g, p in saes} == {(2, 2)}


@pytest.mark.parametrize(
    "override, key",
    [
        ("sweep.grid.active=[1,0]", r"sweep.grid.active\[1\]"),
        ("sweep.grid.active=[1,2.5]", r"sweep.grid.active\[1\]"),
        ("sweep.grid.active=[1,65]", "sae.world.active"),  # more than n = 64 features
        ("sae.k=all", "sae.k"),
        ("sae.world.kind=independent", "sae.k"),  # k=active needs an exactly world
        ("sae.dict_size=8", "sae.k"),  # k = l = 16 above the dictionary
    ],
)
def test_bad_active_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        plan_sweep(compose_config(SMALL + [override]))


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = tmp_path_factory.mktemp("saeactive") / "sweep"
    done = cli("toymodels-sweep", *SMALL, f"sweep.out={out}", "wandb.mode=disabled")
    assert done.returncode == 0, done.stderr
    assert "6/6 models stored" in done.stdout
    return out


@pytest.mark.reproduction
def test_the_small_sweep_stores_one_row_per_m_and_l(stored):
    table = read_results(stored, arrays=True)
    assert sorted(zip(table["n_hidden"], table["active"])) == [
        (m, l) for m in (8, 16) for l in (1, 4, 16)
    ]
    assert (table["k"] == table["active"]).all() and (table["world_kind"] == "exactly").all()
    assert np.allclose(table["true_l0"], table["active"])  # exactly l active, every input
    assert np.allclose(
        table["l0"], table["active"], atol=0.5
    )  # TopK fires k = l latents (unless ties at 0)
    assert all(np.asarray(W).shape == (m, 64) for W, m in zip(table["W_dec"], table["n_hidden"]))


def recovered(row) -> float:
    """The fraction of true features with a decoder column at |cos| ≥ 0.95: the row's world rebuilt
    from its parameters (``toymodels.sae.build``), independent of the stored MCC."""
    _, world = exactly_world(
        int(row.n_features), int(row.n_hidden), int(row.active), row.magnitude, int(row.world_seed)
    )
    cos_DxN = np.abs(np.asarray(row.W_dec).T @ np.asarray(world.F_HxN))
    return float((cos_DxN.max(axis=0) >= 0.95).mean())


@pytest.mark.reproduction
def test_recovery_collapses_as_l_reaches_m(stored):
    """At l = 1 a good part of the 64 features is found (those with a latent of their own: TopK with
    d = n leaves about 1/e of its latents dead from the start, see docs/results/saes.md), well above a random
    dictionary's MCC; at l = 16 ≥ m almost none is, and MCC is at a random dictionary's."""
    from analysis.figures.sae_active import chance_mcc

    table = read_results(stored, arrays=True)
    for row in table.itertuples():
        chance = chance_mcc(64, int(row.n_hidden), 64)
        if row.active == 1:
            assert recovered(row) >= 0.3, row
        if row.active == 16:
            assert recovered(row) <= 0.05 and abs(row.mcc - chance) <= 0.05, row
    m16 = table[table["n_hidden"] == 16].set_index("active")
    assert m16.loc[1, "mcc"] - chance_mcc(64, 16, 64) >= 0.1
    assert m16.loc[1, "f1"] > m16.loc[16, "f1"] + 0.15


@pytest.mark.reproduction
def test_the_figure_is_drawn_from_the_store_with_its_note(stored):
    done = cli("toymodels-figures", str(stored))
    assert done.returncode == 0, done.stderr
    assert (stored / "figures" / "sae_active.png").is_file()
    assert "largest l with MCC ≥ 0.9 (n=64, m=16):" in done.stdout


def test_the_largest_l_served_and_the_reference_scales():
    from analysis.figures.sae_active import largest_served, plot_sae_active, seed_means

    rows = [
        dict(
            n_features=256,
            n_hidden=m,
            active=l,
            seed=s,
            dict_size=256,
            f1=0.5,
            mcc=(0.95 if l <= m // 4 else 0.5) + 0.01 * s,
        )
        for m in (8, 32)
        for l in (1, 2, 4, 8, 16)
        for s in range(2)
    ]
    table = pd.DataFrame(rows)
    served = largest_served(seed_means(table), 0.9)
    assert served["largest_l"].tolist() == [2.0, 8.0]
    assert served["log_scale"].tolist() == pytest.approx(
        [8 / (8 * math.log(256)), 32 / (8 * math.log(256))]
    )
    assert largest_served(seed_means(table), 0.99)["largest_l"].isna().all()
    fig = plot_sae_active(table)
    scaling = fig.axes[2]
    assert [line.get_label() for line in scaling.lines] == [
        "largest l with MCC ≥ 0.9",
        "m/(8 ln n)",
        "m",
    ]
    assert scaling.lines[0].get_ydata().tolist() == [2.0, 8.0]
    assert "SAELens" in fig._suptitle.get_text()
