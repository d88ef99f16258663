"""``toymodels-figures DIR``: draw every figure a stored sweep supports, from the store alone."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from analysis.backdoor import backdoor_figures
from analysis.capacity import capacity_figures
from analysis.curves import plot_loss_curves
from analysis.double_descent import double_descent_figures
from analysis.dimensionality import plot_dimensionality
from analysis.family import family_figures
from analysis.geometry import plot_geometry_panels
from analysis.heatmaps import plot_wtw
from analysis.phase_diagram import agreement_with_theory, is_n2m1_diagram, plot_phase_diagram
from analysis.phases import PhaseThresholds
from analysis.seeds import summarize
from analysis.sweep import StoredSweep
from analysis.trajectories import plot_capacity_trajectories

FORMATS = ("png", "pdf")
DIAGRAM_AXES = ("importance_decay", "importance_last", "density", "lr", "weight_decay")


def figures_for(sweep: StoredSweep, thresholds: PhaseThresholds, feature: int | None = None) -> dict:
    """Every figure the sweep's shape supports, by name."""
    table, axes, stamp = sweep.table, sweep.axes, sweep.stamp()
    if "n_train" in table.columns:  # finite datasets: memorisation and double descent
        return {"loss_curves": plot_loss_curves(table, axes, stamp), **double_descent_figures(sweep),
                **backdoor_figures(sweep)}
    n = int(table["n_features"].max())
    figures = {
        "loss_curves": plot_loss_curves(table, axes, stamp),
        "capacity_trajectories": plot_capacity_trajectories(table, axes, stamp),
    }
    if (table["n_hidden"] == 2).all():
        figures["geometry_2d"] = plot_geometry_panels(table, axes, stamp)
    if n > 2:
        figures["wtw"] = plot_wtw(table, axes, stamp)
    if "density" in axes and table["density"].nunique() > 2:
        figures["dimensionality"] = plot_dimensionality(table, axes, stamp)
    diagram_axes = [a for a in axes if a in DIAGRAM_AXES and table[a].nunique() > 1]
    if len(diagram_axes) >= 2 and table["n_features"].nunique() == 1:
        x, y = diagram_axes[:2]
        feature = n - 1 if feature is None else feature
        summary = summarize(table, [x, y], feature, thresholds)
        figures["phase_diagram"] = plot_phase_diagram(table, summary, x, y, feature, thresholds, stamp)
        if is_n2m1_diagram(table, x, y):
            sweep.notes["agreement_with_theory"] = agreement_with_theory(summary)
    kurtosis_data = "data_kind" in table and (table["data_kind"] == "kurtosis").any()
    if (table["model"] == "quadratic").any() or "capacity_target" in axes or kurtosis_data:
        figures.update(capacity_figures(sweep))
    figures.update(family_figures(sweep))  # neurons, l1_cost, correlated, perturb, noise
    return figures


def draw_all(sweep: StoredSweep, out: Path, thresholds: PhaseThresholds = PhaseThresholds(),
             feature: int | None = None) -> list[Path]:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures_for(sweep, thresholds, feature).items():
        for fmt in FORMATS:
            path = out / f"{name}.{fmt}"
            fig.savefig(path, dpi=150)
            written.append(path)
        plt.close(fig)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="toymodels-figures", description=__doc__)
    parser.add_argument("sweep_dir", help="a sweep's output directory (sweep.out)")
    parser.add_argument("--out", help="where to write figures (default: SWEEP_DIR/figures)")
    parser.add_argument("--feature", type=int, help="feature (0-based) of the phase diagram (default: the last)")
    parser.add_argument("--represented", type=float, default=PhaseThresholds.represented,
                        help="‖W_i‖ at or above which a feature counts as learned (default %(default)s)")
    parser.add_argument("--superposed", type=float, default=PhaseThresholds.superposed,
                        help="interference at or above which a learned feature counts as superposed (default %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        sweep = StoredSweep.load(args.sweep_dir)
    except FileNotFoundError as error:
        print(f"toymodels-figures: error: {error}", file=sys.stderr)
        sys.exit(2)
    if sweep.table.empty:
        print(f"toymodels-figures: error: {args.sweep_dir} holds no finished model yet", file=sys.stderr)
        sys.exit(2)
    thresholds = PhaseThresholds(represented=args.represented, superposed=args.superposed)
    written = draw_all(sweep, Path(args.out) if args.out else sweep.root / "figures", thresholds, args.feature)
    for path in written:
        print(path)
    for key, value in sweep.notes.items():
        print(f"{key}: {value}")
    print(f"{len(written)} files in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    try:  # the sweep's wandb summary run (a failure is a warning, never a failed command)
        from sweeps.tracking import log_figures

        log_figures(sweep.root, written, sweep.table)
    except Exception as error:
        print(f"toymodels-figures: warning: wandb: {type(error).__name__}: {error}", file=sys.stderr)


if __name__ == "__main__":
    main()
