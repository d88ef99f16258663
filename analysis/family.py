"""Which model-family figures a stored sweep supports (SCIENCE.md §7), decided from its table and
config alone, for ``toymodels-figures``."""

from __future__ import annotations

from analysis.backdoor import backdoor_figures
from analysis.circuits_figures import circuit_figures
from analysis.correlated import plot_correlated
from analysis.kinds import has_sets, is_privileged
from analysis.monosemanticity_figures import monosemanticity_figures
from analysis.neurons import plot_l1_cost, plot_neurons
from analysis.noise import plot_noise
from analysis.perturb import class_losses, crossing_ratio, perturb_table, plot_perturb
from analysis.sweep import StoredSweep
from analysis.target_noise import target_noise_figures


def is_noise_setting(config: dict) -> bool:
    """The noise-features setting: a target-only loss or rescaled non-target features."""
    data = config.get("data", {})
    return (data.get("importance", {}).get("kind") == "target_only"
            or float(data.get("rest_scale", 1.0)) != 1.0)


def family_figures(sweep: StoredSweep) -> dict:
    """By name: ``neurons`` for privileged-basis models (relu_hidden, abs), ``l1_cost`` when the
    L1 coefficient on hidden activations is swept, ``correlated`` for correlated or
    anticorrelated feature sets, ``perturb`` when the last feature's density is swept, ``noise``
    for the noise-features setting. Adds the density ratio at which the perturbed polygon and
    digon losses cross to ``sweep.notes``."""
    table, axes, stamp, config = sweep.table, sweep.axes, sweep.stamp(), sweep.config
    figures = {}
    privileged = table["model"].map(is_privileged).astype(bool)
    if privileged.any():
        figures["neurons"] = plot_neurons(table[privileged], axes, stamp)
    if "l1_hidden" in axes and table["l1_hidden"].nunique() > 1:
        figures["l1_cost"] = plot_l1_cost(table, axes, stamp)
    if "data_kind" in table and table["data_kind"].map(has_sets).any():
        set_size = int(config.get("data", {}).get("set_size", 2))
        figures["correlated"] = plot_correlated(table, axes, set_size, stamp)
    if "density_last" in axes:
        figures["perturb"] = plot_perturb(table, axes, stamp)
        sweep.notes["polygon_digons_crossing_ratio"] = round(crossing_ratio(class_losses(perturb_table(table))), 3)
    if is_noise_setting(config):
        figures["noise"] = plot_noise(table, axes, stamp)
    figures.update(target_noise_figures(sweep))  # a new target every sample (random_target)
    figures.update(monosemanticity_figures(sweep))  # μ·Σ C(1−C) against other interventions
    figures.update(circuit_figures(sweep))  # capacity across layers (kinds with read_matrices)
    figures.update(backdoor_figures(sweep))  # when toymodels-backdoor has scored the sweep
    return figures
