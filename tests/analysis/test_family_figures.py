"""The model-family figures and their measures (docs/science/index.md): exact values on constructed weight
matrices, the dispatch from a stored sweep's shape, and one tiny end-to-end sweep."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.figures.catalog import figure_names, notes
from analysis.figures.correlated import member_pairs, plot_correlated, within_set_angles
from analysis.figures.neurons import (
    neuron_classes,
    neuron_counts,
    neuron_table,
    plot_l1_cost,
    plot_neurons,
    top_share,
)
from analysis.figures.noise import noise_measures, plot_noise
from analysis.figures.perturb import (
    DIGONS,
    OTHER,
    POLYGON,
    class_losses,
    classify_solution,
    crossing_ratio,
    perturb_table,
    plot_perturb,
)
from analysis.stored_sweep import StoredSweep
from tests.helpers import assert_draws_the_same_into_every_target, compose_config, tiny


def polygon(k: int, radius: float = 1.0, phase: float = 0.3) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(k) / k
    return radius * np.stack([np.cos(angles), np.sin(angles)])


def rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


# -- correlated and anticorrelated sets -------------------------------------------------------


def test_member_pairs_cover_each_set():
    assert member_pairs(4, 2) == [(0, 1), (2, 3)]
    assert member_pairs(6, 3) == [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]


def test_within_set_angles_on_constructed_geometries():
    R = rotation(0.7)  # the measure does not depend on the frame
    orthogonal_pairs = R @ np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    np.testing.assert_allclose(within_set_angles(orthogonal_pairs, 2), [90.0, 90.0], atol=1e-9)
    antipodal_pairs = R @ np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    np.testing.assert_allclose(within_set_angles(antipodal_pairs, 2), [180.0, 180.0], atol=1e-6)
    collapsed = R @ np.array(
        [[0.7, 0.7, 0.0, 0.0], [0.0, 0.0, 0.7, 0.7]]
    )  # a pair on its principal component
    np.testing.assert_allclose(within_set_angles(collapsed, 2), [0.0, 0.0], atol=1e-6)
    triangle = polygon(3)  # one set of three at 120°
    np.testing.assert_allclose(within_set_angles(triangle, 3), [120.0, 120.0, 120.0], atol=1e-9)


def test_a_dropped_member_has_no_angle():
    W = np.array([[1.0, 0.1, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    angles = within_set_angles(W, 2)
    assert np.isnan(angles[0]) and angles[1] == pytest.approx(90.0)
    assert not np.isnan(within_set_angles(W, 2, represented=0.05)[0])


# -- neurons of a privileged basis -------------------------------------------------------------


def test_neuron_classes_on_a_constructed_basis():
    W = np.zeros((5, 10))
    W[np.arange(5), np.arange(5)] = 1.0  # a monosemantic basis for the five most important features
    assert neuron_counts(W) == {"monosemantic": 5, "polysemantic": 0, "dead": 0}
    W[1, 6] = 1.0  # neuron 1 now reads two features equally
    W[4] = 0.0  # neuron 4 reads nothing
    assert list(neuron_classes(W)) == [
        "monosemantic",
        "polysemantic",
        "monosemantic",
        "monosemantic",
        "dead",
    ]
    assert top_share(W)[1] == pytest.approx(0.5)


def test_monosemantic_threshold_is_inclusive_and_configurable():
    W = np.array([[3.0, 1.0], [2.9, 1.0]])  # top shares 0.9 and 0.8937
    assert list(neuron_classes(W)) == ["monosemantic", "polysemantic"]
    assert list(neuron_classes(W, mono_share=0.8)) == ["monosemantic", "monosemantic"]


def test_negative_weights_count_only_for_signed_inputs():
    # x ≥ 0 into a ReLU: a negative weight can only inhibit, so it neither makes a neuron
    # polysemantic nor keeps it alive; with signed inputs it fires for x < 0.
    W = np.array([[1.0, -1.0], [-1.0, -1.0]])
    assert list(neuron_classes(W, signed=False)) == ["monosemantic", "dead"]
    assert list(neuron_classes(W, signed=True)) == ["polysemantic", "polysemantic"]


def neuron_rows(model="relu_hidden", data_kind="sparse", axis="density"):
    """Three grid points × two seeds: a monosemantic basis, one polysemantic neuron, two."""
    rows = []
    for point, value in enumerate([1.0, 0.1, 0.01]):
        for seed in range(2):
            W = np.zeros((4, 8))
            W[np.arange(4), np.arange(4)] = 1.0
            W[:point, 4 : 4 + point] = 0.9 * np.eye(point)[:, :point] if point else 0.0
            rows.append(
                {
                    "l1_hidden": 0.0,
                    axis: value,
                    "seed": seed,
                    "model": model,
                    "data_kind": data_kind,
                    "n_features": 8,
                    "n_hidden": 4,
                    "loss": 0.01 * (point + 1) + 0.001 * seed,
                    "W": W.tolist(),
                    "feature_importance": list(0.75 ** np.arange(8)),
                    "feature_density": [0.1] * 8,
                }
            )
    return pd.DataFrame(rows)


def test_neuron_table_counts_per_model():
    counted = neuron_table(neuron_rows())
    assert list(counted.groupby("density")["polysemantic"].first().sort_index(ascending=False)) == [
        0,
        1,
        2,
    ]
    assert list(counted.groupby("density")["represented"].first().sort_index(ascending=False)) == [
        4,
        5,
        6,
    ]


def test_neuron_figures_draw_from_a_constructed_table():
    fig = plot_neurons(neuron_rows(), ["density"])
    titles = [ax.get_title() for ax in fig.axes]
    assert any("4 mono / 0 poly / 0 dead" in t for t in titles)
    assert any("2 mono / 2 poly / 0 dead" in t for t in titles)
    assert len(fig.axes) == 4  # three panels and the counts plot
    fig = plot_l1_cost(neuron_rows(axis="l1_hidden"), ["l1_hidden"])
    assert len(fig.axes) == 2  # loss and counts against λ
    monosemantic = next(
        line for line in fig.axes[1].lines if line.get_label() == "monosemantic neurons"
    )
    np.testing.assert_array_equal(monosemantic.get_ydata(), [2, 3, 4])  # λ = 0.01, 0.1, 1


# -- one feature's density perturbed ----------------------------------------------------------


def test_solution_classes_on_constructed_geometries():
    assert classify_solution(polygon(5)) == POLYGON
    digons = np.concatenate(
        [np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]), np.zeros((2, 1))], axis=1
    )
    assert classify_solution(rotation(1.1) @ digons) == DIGONS
    assert (
        classify_solution(digons[:, [4, 1, 2, 3, 0]]) == OTHER
    )  # digons that drop another feature
    crowded = polygon(5)
    crowded[:, 4] = rotation(0.05) @ crowded[:, 0]  # all five represented, two of them 3° apart
    assert classify_solution(crowded) == OTHER


def perturb_rows():
    """Ratios 0.1 and 1: digons win at 0.1 (loss 1 vs 2), the pentagon at 1 (1 vs 2)."""
    digons = np.concatenate(
        [np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]), np.zeros((2, 1))], axis=1
    )
    rows = []
    for ratio, (pentagon_loss, digon_loss) in [(0.1, (2.0, 1.0)), (1.0, (1.0, 2.0))]:
        for seed, (W, loss) in enumerate([(polygon(5), pentagon_loss), (digons, digon_loss)]):
            rows.append(
                {
                    "density_last": 0.05 * ratio,
                    "seed": seed,
                    "model": "relu",
                    "n_features": 5,
                    "n_hidden": 2,
                    "loss": loss,
                    "W": W.tolist(),
                    "feature_importance": [1.0] * 5,
                    "feature_density": [0.05] * 4 + [0.05 * ratio],
                }
            )
    return pd.DataFrame(rows)


def test_class_losses_and_their_crossing():
    classified = perturb_table(perturb_rows())
    np.testing.assert_allclose(sorted(classified["ratio"].unique()), [0.1, 1.0])
    losses = class_losses(classified).set_index("ratio")
    assert list(losses["best"]) == [DIGONS, POLYGON]
    assert list(losses[f"{POLYGON}_mean"]) == [2.0, 1.0] and list(losses[f"{DIGONS}_mean"]) == [
        1.0,
        2.0,
    ]
    # Log-linear interpolation: the differences +1 and -1 cross halfway in log ratio, at √0.1.
    assert crossing_ratio(losses.reset_index()) == pytest.approx(np.sqrt(0.1))
    assert np.isnan(crossing_ratio(losses.reset_index().iloc[:1]))


def test_perturb_figure_draws_from_a_constructed_table():
    fig = plot_perturb(perturb_rows(), ["density_last"])
    assert len(fig.axes) == 4  # two geometry panels, the loss plot and the class-share plot
    assert any("crossing" in text.get_text() for ax in fig.axes for text in ax.texts)


# -- noise features ----------------------------------------------------------------------------


def test_noise_measures_on_constructed_models():
    null_direction = np.array([[1.0, 0.0, 0.0], [0.0, 0.7, -0.2]])  # noise orthogonal to the target
    measures = noise_measures(null_direction)
    assert measures == {
        "target_norm": 1.0,
        "noise_present": 1,
        "noise_interfering": 0,
        "noise_norm_mean": pytest.approx(0.45),
        "noise_leak_max": 0.0,
    }
    leaking = np.array([[2.0, 0.3, 0.0], [0.0, 0.0, 1.0]])
    measures = noise_measures(leaking)
    assert measures["noise_interfering"] == 1 and measures["noise_leak_max"] == pytest.approx(0.3)


def test_noise_figure_draws_from_a_constructed_table():
    rows = [
        {
            "n_features": n,
            "seed": s,
            "model": "relu",
            "n_hidden": 2,
            "loss": 1e-6,
            "W": np.concatenate(
                [[[1.0], [0.0]], [[0.0] * (n - 1), [0.5] * (n - 1)]], axis=1
            ).tolist(),
            "feature_density": [1.0] * n,
            "feature_importance": [1.0] + [0.0] * (n - 1),
        }
        for n in (2, 4)
        for s in range(2)
    ]
    fig = plot_noise(pd.DataFrame(rows), ["n_features"])
    assert len(fig.axes) == 4


def test_correlated_figure_draws_from_a_constructed_table():
    orthogonal = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    collapsed = np.array([[0.7, 0.7, 0.0, 0.0], [0.0, 0.0, 0.7, 0.7]])
    rows = [
        {
            "density": p,
            "seed": 0,
            "model": "relu",
            "data_kind": "correlated",
            "n_features": 4,
            "n_hidden": 2,
            "loss": 0.1,
            "W": W.tolist(),
            "feature_importance": [1.0] * 4,
        }
        for p, W in [(0.5, collapsed), (0.01, orthogonal)]
    ]
    fig = plot_correlated(pd.DataFrame(rows), ["density"], set_size=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("angles 90°, 90°" in t for t in titles) and any("angles 0°, 0°" in t for t in titles)


# -- dispatch and end to end -------------------------------------------------------------------


def stored(table: pd.DataFrame, grid: dict, data: dict | None = None) -> StoredSweep:
    config = {"name": "t", "sweep": {"grid": grid}, "data": data or {}}
    return StoredSweep(Path("."), table, config, "0")


FAMILY = {"neurons", "l1_cost", "correlated", "perturb", "noise"}


def family_figures(sweep: StoredSweep) -> set:
    return FAMILY & set(figure_names(sweep))


def test_family_figures_follow_the_sweep_shape():
    assert family_figures(stored(neuron_rows(), {"density": [1.0, 0.1, 0.01]})) == {"neurons"}
    plain = neuron_rows(model="relu")
    assert family_figures(stored(plain, {"density": [1.0, 0.1, 0.01]})) == set()
    assert family_figures(
        stored(neuron_rows(axis="l1_hidden"), {"l1_hidden": [0.01, 0.1, 1.0]})
    ) == {"neurons", "l1_cost"}
    perturb = stored(perturb_rows(), {"density_last": [0.005, 0.05]})
    assert family_figures(perturb) == {"perturb"}
    assert notes("perturb", perturb)["polygon_digons_crossing_ratio"] == pytest.approx(
        np.sqrt(0.1), abs=1e-3
    )
    noise = stored(
        plain,
        {"density": [1.0, 0.1, 0.01]},
        {"importance": {"kind": "target_only"}, "rest_scale": 0.1},
    )
    assert family_figures(noise) == {"noise"}
    correlated = stored(
        neuron_rows(model="relu", data_kind="anticorrelated"), {"density": [1.0, 0.1, 0.01]}
    )
    assert family_figures(correlated) == {"correlated"}


def test_neurons_draw_only_privileged_models():
    mixed = pd.concat(
        [neuron_rows(), neuron_rows(model="relu").assign(loss=0.0)], ignore_index=True
    )
    fig = plot_neurons(mixed, ["density"])  # the relu rows have the lower losses, yet are not drawn
    assert "relu_hidden model" in fig.get_suptitle() and "relu/" not in fig.get_suptitle()


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_family_figures_draw_the_same_into_every_target(name):
    from analysis.figures.catalog import draw

    sweep = {
        "neurons": stored(neuron_rows(), {"density": [1.0, 0.1, 0.01]}),
        "l1_cost": stored(neuron_rows(axis="l1_hidden"), {"l1_hidden": [0.01, 0.1, 1.0]}),
        "correlated": stored(neuron_rows(model="relu", data_kind="correlated"), {"density": []}),
        "perturb": stored(perturb_rows(), {"density_last": []}),
        "noise": stored(neuron_rows(model="relu"), {"density": []}, {"rest_scale": 0.1}),
    }[name]
    assert_draws_the_same_into_every_target(lambda target: draw(name, sweep, target))


NEW_EXPERIMENTS = {  # name: (model kind, data kind, n, m)
    "tms_correlated": ("relu", "correlated", 4, 2),
    "tms_anticorrelated": ("relu", "anticorrelated", 4, 2),
    "tms_correlated_pairs": ("relu", "correlated", 6, 2),
    "tms_privileged": ("relu_hidden", "sparse", 10, 5),
    "tms_abs": ("abs", "signed", 3, 6),
    "tms_abs_superposition": ("abs", "signed", 100, 40),
    "tms_perturb": ("relu", "sparse", 5, 2),
    "tms_noise": ("relu", "sparse", 5, 2),
    "tms_l1": ("relu_hidden", "sparse", 10, 5),
}


@pytest.mark.parametrize("name", sorted(NEW_EXPERIMENTS))
def test_new_experiments_and_their_small_variants_pin_the_setting(name):
    model, data, n, m = NEW_EXPERIMENTS[name]
    for variant in (name, f"{name}_small"):
        config = compose_config([f"experiment={variant}"])
        assert config.name == variant
        assert (config.model.kind, config.data.kind) == (model, data)
        if variant == name:
            assert (config.model.n_features, config.model.n_hidden) == (n, m)
        assert config.sweep.grid, "every family experiment sweeps something"


def test_end_to_end_tiny_correlated_sweep_draws_the_correlated_figure(tmp_path):
    from analysis.cli import draw_all
    from sweeps.runner import run_sweep

    config = compose_config(
        [
            "experiment=tms_correlated_small",
            *tiny(tmp_path / "s"),
            "sweep.grid.density=[0.3,0.03]",
            "sweep.seeds=2",
        ]
    )
    run_sweep(config, progress=False)
    sweep = StoredSweep.load(tmp_path / "s")
    assert set(sweep.table["data_kind"]) == {"correlated"}
    written = draw_all(sweep, tmp_path / "figures")
    names = {path.stem for path in written}
    assert {"correlated", "geometry_2d", "loss_curves"} <= names, names
    assert all(path.stat().st_size > 5000 for path in written)
