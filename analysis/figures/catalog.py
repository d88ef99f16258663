"""Every figure of a stored sweep in one table: its name, when the sweep supports it (decided from
the sweep's table and config alone), and how it is drawn. ``toymodels-figures`` and the notebook
API (``analysis.api``) both read this table, so they cannot drift apart.

A figure's options are its plot function's parameters with a default, other than ``stamp`` and
``target``; ``notes`` are the numbers ``toymodels-figures`` prints beside the figure.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.figures import capacity, circuits, sae_sweep
from analysis.figures import compressed as cc
from analysis.figures import double_descent as dd
from analysis.figures.backdoor import (
    backdoor_inputs,
    backdoor_notes,
    has_backdoor,
    plot_backdoor,
    plot_backdoor_finite,
)
from analysis.figures.correlated import correlated_inputs, has_sets, plot_correlated
from analysis.figures.curves import plot_loss_curves
from analysis.figures.dimensionality import plot_dimensionality
from analysis.figures.geometry import plot_geometry_panels
from analysis.figures.heatmaps import plot_wtw
from analysis.figures.monosemanticity import (
    has_mono_penalty,
    is_two_feature_quadratic,
    plot_mono_switch,
    plot_polysemantic_vs_loss,
)
from analysis.figures.neurons import plot_l1_cost, plot_neurons, privileged
from analysis.figures.noise import is_noise_setting, plot_noise
from analysis.figures.perturb import crossing_note, plot_perturb
from analysis.figures.phase_diagram import (
    DIAGRAM_AXES,
    agreement_note,
    diagram_axes,
    draw_phase_diagram,
)
from analysis.figures.sae import SAE_TABLE, plot_sae_recovery, sae_inputs
from analysis.figures.sae_active import active_note, is_active_sweep, plot_sae_active
from analysis.figures.spd import is_spd_sweep, plot_spd_recovery, recovery_notes
from analysis.figures.target_noise import (
    has_random_target,
    plot_target_noise,
    target_noise_inputs,
    target_noise_notes,
)
from analysis.figures.trajectories import plot_capacity_trajectories
from analysis.stored_sweep import StoredSweep


def grid_inputs(sweep: StoredSweep) -> tuple:
    return sweep.table, sweep.axes, sweep.stamp()


def table_inputs(sweep: StoredSweep) -> tuple:
    return sweep.table, sweep.stamp()


def sweep_inputs(sweep: StoredSweep) -> tuple:
    return (sweep,)


@dataclass(frozen=True)
class FigureSpec:
    when: str  # the condition in words, as docs/figures.md's generated table gives it
    applies: Callable[[StoredSweep], bool]
    plot: Callable  # plot(*inputs(sweep), **options, target=target) -> the figure
    inputs: Callable[[StoredSweep], tuple] = grid_inputs
    notes: Callable[..., dict] | None = None  # notes(sweep, **options) -> {name: number}

    def options(self) -> tuple[str, ...]:
        return tuple(
            name
            for name, p in inspect.signature(self.plot).parameters.items()
            if p.default is not inspect.Parameter.empty and name not in ("stamp", "target")
        )


def finite_data(sweep: StoredSweep) -> bool:
    """A finite-data sweep (memorisation, double descent): its own figures, and loss curves."""
    return "n_train" in sweep.table.columns


def job_sweep(sweep: StoredSweep) -> bool:
    """A sweep of SAEs or of decompositions, not of toy models."""
    return sae_sweep.is_sae_sweep(sweep) or is_spd_sweep(sweep)


def fresh(applies: Callable[[StoredSweep], object]) -> Callable[[StoredSweep], bool]:
    """``applies`` among the toy-model sweeps that sample fresh data (not finite-data, not SAE sweeps)."""
    return lambda sweep: not finite_data(sweep) and not job_sweep(sweep) and bool(applies(sweep))


def capacity_figure(applies: Callable[[StoredSweep], object]) -> Callable[[StoredSweep], bool]:
    """``applies`` among the capacity sweeps (``capacity.is_capacity_sweep``)."""
    return fresh(lambda sweep: capacity.is_capacity_sweep(sweep) and applies(sweep))


def dd_curves(sweep: StoredSweep) -> bool:
    """A finite-data sweep over several training-set sizes T: curves against T."""
    return finite_data(sweep) and sweep.table["n_train"].nunique() > 1


FIGURES: dict[str, FigureSpec] = {
    "loss_curves": FigureSpec("a toy-model sweep", lambda s: not job_sweep(s), plot_loss_curves),
    "capacity_trajectories": FigureSpec(
        "always", fresh(lambda s: True), plot_capacity_trajectories
    ),
    "geometry_2d": FigureSpec(
        "m = 2", fresh(lambda s: (s.table["n_hidden"] == 2).all()), plot_geometry_panels
    ),
    "wtw": FigureSpec("n > 2", fresh(lambda s: s.table["n_features"].max() > 2), plot_wtw),
    "dimensionality": FigureSpec(
        "a density axis with more than two values",
        fresh(lambda s: "density" in s.axes and s.table["density"].nunique() > 2),
        plot_dimensionality,
    ),
    "phase_diagram": FigureSpec(
        "two varying axes among " + ", ".join(DIAGRAM_AXES) + ", one n",
        fresh(diagram_axes),
        draw_phase_diagram,
        sweep_inputs,
        agreement_note,
    ),
    "capacity_marginal_benefit": FigureSpec(
        "a held capacity with at least three targets",
        capacity_figure(capacity.has_marginal_benefit),
        capacity.draw_marginal_benefit,
        sweep_inputs,
    ),
    "capacity_phase_diagram": FigureSpec(
        "two-feature models over a varying kurtosis or density and importance ratio",
        capacity_figure(capacity.has_phase_diagram),
        capacity.draw_phase_diagram,
        sweep_inputs,
    ),
    "capacity_allocation": FigureSpec(
        "unpenalised models",
        capacity_figure(lambda s: len(capacity.parts(s).free)),
        capacity.draw_allocation,
        sweep_inputs,
    ),
    "capacity_vs_sparsity": FigureSpec(
        "a varying kurtosis or density",
        capacity_figure(lambda s: capacity.parts(s).x),
        capacity.draw_vs_sparsity,
        sweep_inputs,
    ),
    "capacity_over_training": FigureSpec(
        "snapshots of C_i",
        capacity_figure(
            lambda s: (
                {"snap_capacity", "snap_step"} <= set(s.table)
                and len(capacity.parts(s).held) + len(capacity.parts(s).free)
            )
        ),
        capacity.draw_over_training,
        sweep_inputs,
    ),
    "neurons": FigureSpec(
        "a privileged-basis model", fresh(lambda s: privileged(s.table).any()), plot_neurons
    ),
    "l1_cost": FigureSpec(
        "an l1_hidden axis with more than one value",
        fresh(lambda s: "l1_hidden" in s.axes and s.table["l1_hidden"].nunique() > 1),
        plot_l1_cost,
    ),
    "correlated": FigureSpec(
        "correlated or anticorrelated feature sets",
        fresh(lambda s: has_sets(s.table)),
        plot_correlated,
        correlated_inputs,
    ),
    "perturb": FigureSpec(
        "a density_last axis",
        fresh(lambda s: "density_last" in s.axes),
        plot_perturb,
        notes=crossing_note,
    ),
    "noise": FigureSpec(
        "a target-only loss or rest_scale ≠ 1",
        fresh(lambda s: is_noise_setting(s.config)),
        plot_noise,
    ),
    "target_noise": FigureSpec(
        "the random_target data kind",
        fresh(has_random_target),
        plot_target_noise,
        target_noise_inputs,
        target_noise_notes,
    ),
    "mono_vs_loss": FigureSpec(
        "a train.mono_penalty axis", fresh(has_mono_penalty), plot_polysemantic_vs_loss
    ),
    "mono_switch": FigureSpec(
        "a train.mono_penalty axis on the two-feature quadratic model",
        fresh(lambda s: has_mono_penalty(s) and is_two_feature_quadratic(s.table)),
        plot_mono_switch,
        table_inputs,
    ),
    "circuit_heatmaps": FigureSpec(
        "per-layer capacity snapshots (residual kinds)",
        fresh(circuits.has_layers),
        circuits.plot_heatmaps,
        circuits.circuit_inputs,
    ),
    "circuit_capacity": FigureSpec(
        "per-layer capacity snapshots (residual kinds)",
        fresh(circuits.has_layers),
        circuits.plot_stacked,
        circuits.circuit_inputs,
    ),
    "circuit_economics": FigureSpec(
        "per-layer capacity snapshots (residual kinds)",
        fresh(circuits.has_layers),
        circuits.plot_economics,
        circuits.circuit_inputs,
        circuits.circuit_notes,
    ),
    "cc_advantage": FigureSpec(
        "a cc_residual sweep",
        fresh(cc.is_cc_sweep),
        cc.plot_cc_advantage,
        cc.cc_inputs,
        cc.advantage_notes,
    ),
    "cc_mixing": FigureSpec(
        "a cc_residual sweep over labels or d_embed",
        fresh(cc.has_mixing_axis),
        cc.plot_cc_mixing,
        cc.cc_inputs,
        cc.mixing_notes,
    ),
    "dd_losses": FigureSpec(
        "several training-set sizes", dd_curves, dd.plot_losses, table_inputs, dd.bump_note
    ),
    "dd_norms": FigureSpec("several training-set sizes", dd_curves, dd.plot_norms, table_inputs),
    "dd_dimensionality": FigureSpec(
        "several training-set sizes", dd_curves, dd.plot_dimensionality, table_inputs
    ),
    "dd_geometry": FigureSpec(
        "m = 2",
        lambda s: finite_data(s) and (s.table["n_hidden"] == 2).all(),
        dd.plot_geometry,
        table_inputs,
    ),
    "dd_memorisation": FigureSpec(
        "repeated points",
        lambda s: finite_data(s) and (s.table["n_repeated"] > 0).any(),
        dd.plot_memorisation,
        table_inputs,
    ),
    "backdoor": FigureSpec(
        "backdoor.parquet beside the sweep (toymodels-backdoor)",
        lambda s: has_backdoor(s, finite=False),
        plot_backdoor,
        backdoor_inputs,
        backdoor_notes,
    ),
    "backdoor_finite": FigureSpec(
        "backdoor.parquet of a finite-data sweep (toymodels-backdoor)",
        lambda s: has_backdoor(s, finite=True),
        plot_backdoor_finite,
        backdoor_inputs,
    ),
    "sae_recovery": FigureSpec(
        f"{SAE_TABLE} beside the sweep (toymodels-sae), or an SAE sweep on toy models",
        lambda s: (
            (s.root / SAE_TABLE).is_file()
            or sae_sweep.is_sae_sweep(s)
            and (s.config["sae"] or {}).get("source") == "toy"
        ),
        plot_sae_recovery,
        sae_inputs,
    ),
    "sae_pareto": FigureSpec(
        "an SAE sweep over λ or k",
        sae_sweep.has_fronts,
        sae_sweep.plot_sae_pareto,
        sae_sweep.sae_grid_inputs,
    ),
    "sae_shrinkage": FigureSpec(
        "an SAE sweep over magnitude and λ, of plain, gated or rescaled SAEs",
        sae_sweep.has_shrinkage,
        sae_sweep.plot_sae_shrinkage,
        sae_sweep.sae_sweep_inputs,
        sae_sweep.shrinkage_note,
    ),
    "sae_composition": FigureSpec(
        "an SAE sweep over together (c)",
        lambda s: sae_sweep.varies(s, "together"),
        sae_sweep.plot_sae_composition,
        sae_sweep.sae_sweep_inputs,
    ),
    "sae_orthogonality": FigureSpec(
        "an SAE sweep over ortho (λ_o)",
        lambda s: sae_sweep.varies(s, "ortho"),
        sae_sweep.plot_sae_orthogonality,
        sae_sweep.sae_sweep_inputs,
    ),
    "sae_active": FigureSpec(
        "an SAE sweep over active (l) on an exactly world",
        is_active_sweep,
        plot_sae_active,
        sae_sweep.sae_sweep_inputs,
        active_note,
    ),
    "spd_recovery": FigureSpec(
        "an SPD sweep (+spd=toy)",
        is_spd_sweep,
        plot_spd_recovery,
        table_inputs,
        lambda sweep: recovery_notes(sweep),
    ),
}


def figure_names(sweep: StoredSweep) -> list[str]:
    """The figures the sweep supports, in the order ``toymodels-figures`` draws them."""
    return [name for name, spec in FIGURES.items() if spec.applies(sweep)]


OPTION_KEYS = {
    "feature": "feature",
    "represented": "thresholds.represented",
    "superposed": "thresholds.superposed",
}


def check_option_values(sweep: StoredSweep, options: dict, keys: dict = OPTION_KEYS) -> None:
    """Refuse, like a config key (``ConfigError`` naming it, one line), a figure option's value the
    sweep cannot take: a feature index outside 0..n-1, a phase threshold that is not a finite
    number in its range. ``keys`` names them (the command line's ``--feature``…)."""
    import math

    from toymodels.registry import ConfigError

    feature = options.get("feature")
    if feature is not None:
        n = (
            int(sweep.table["n_features"].min())
            if "n_features" in sweep.table and len(sweep.table)
            else None
        )
        ok = isinstance(feature, (int, np.integer)) and not isinstance(feature, bool)
        if not ok or (n is not None and not 0 <= feature < n):
            where = f" in 0..{n - 1} (this sweep's n_features={n})" if n is not None else ""
            raise ConfigError(keys["feature"], f"must be a feature index{where}, got {feature!r}")
    thresholds = options.get("thresholds")
    if thresholds is not None:
        for name, low, low_open in (("represented", 0.0, True), ("superposed", 0.0, False)):
            value = getattr(thresholds, name)
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
            if not ok or value < low or (low_open and value == low):
                raise ConfigError(
                    keys[name],
                    f"must be a finite number {'>' if low_open else '>='} {low:g}, got {value!r}",
                )


def spec_for(name: str, sweep: StoredSweep, options: dict) -> FigureSpec:
    """The figure ``name`` after checking, before any drawing, that it exists, that the sweep
    supports it and that it takes ``options``."""
    if name not in FIGURES:
        raise ValueError(f"no figure {name!r}; the figures are: {', '.join(FIGURES)}")
    spec = FIGURES[name]
    if not spec.applies(sweep):
        raise ValueError(
            f"figure {name!r} needs {spec.when}; this sweep ({sweep.name}) supports: "
            f"{', '.join(figure_names(sweep))}"
        )
    unknown = sorted(set(options) - set(spec.options()))
    if unknown:
        raise ValueError(f"figure {name!r} takes the options {list(spec.options())}, not {unknown}")
    check_option_values(sweep, options)
    return spec


def draw(name: str, sweep: StoredSweep, target=None, **options):
    """Figure ``name`` of the sweep, drawn into ``target`` (``analysis.figures.canvas``)."""
    spec = spec_for(name, sweep, options)
    return spec.plot(*spec.inputs(sweep), **options, target=target)


def notes(name: str, sweep: StoredSweep, **options) -> dict:
    """The numbers ``toymodels-figures`` prints beside figure ``name`` (none for most)."""
    spec = spec_for(name, sweep, options)
    return spec.notes(sweep, **options) if spec.notes else {}
