"""``toymodels-figures DIR``: draw every figure a stored sweep supports, from the store alone."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from analysis.figures.catalog import FIGURES, draw, figure_names, notes
from analysis.phases import PhaseThresholds
from analysis.stored_sweep import StoredSweep

FORMATS = ("png", "pdf")


def draw_all(
    sweep: StoredSweep,
    out: Path,
    thresholds: PhaseThresholds = PhaseThresholds(),
    feature: int | None = None,
) -> list[Path]:
    """Every figure the sweep supports (``analysis.figures.catalog``), as PNG and PDF under
    ``out``; the numbers worth printing go to ``sweep.notes``. ``thresholds`` and ``feature`` go
    to the figures that take them (the phase diagram)."""
    given = {"thresholds": thresholds, "feature": feature}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in figure_names(sweep):
        options = {key: value for key, value in given.items() if key in FIGURES[name].options()}
        fig = draw(name, sweep, **options)
        for fmt in FORMATS:
            path = out / f"{name}.{fmt}"
            fig.savefig(path, dpi=150)
            written.append(path)
        sweep.notes.update(notes(name, sweep, **options))
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="toymodels-figures", description=__doc__)
    parser.add_argument("sweep_dir", help="a sweep's output directory (sweep.out)")
    parser.add_argument("--out", help="where to write figures (default: SWEEP_DIR/figures)")
    parser.add_argument(
        "--feature", type=int, help="feature (0-based) of the phase diagram (default: the last)"
    )
    parser.add_argument(
        "--represented",
        type=float,
        default=PhaseThresholds.represented,
        help="‖W_i‖ at or above which a feature counts as learned (default %(default)s)",
    )
    parser.add_argument(
        "--superposed",
        type=float,
        default=PhaseThresholds.superposed,
        help="interference at or above which a learned feature counts as superposed (default %(default)s)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        sweep = StoredSweep.load(args.sweep_dir)
    except (
        FileNotFoundError,
        ValueError,
    ) as error:  # not a sweep, nothing finished, a damaged sweep.yaml
        print(f"toymodels-figures: error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        print(
            f"toymodels-figures: error: cannot read {error.filename}: {error.strerror}",
            file=sys.stderr,
        )
        sys.exit(1)
    if sweep.status:
        print(f"toymodels-figures: note: {sweep.status}", file=sys.stderr)
    if sweep.table.empty:
        print(
            f"toymodels-figures: error: {args.sweep_dir} holds no finished model yet",
            file=sys.stderr,
        )
        sys.exit(2)
    thresholds = PhaseThresholds(represented=args.represented, superposed=args.superposed)
    try:
        written = draw_all(
            sweep, Path(args.out) if args.out else sweep.root / "figures", thresholds, args.feature
        )
    except OSError as error:  # figures/ not writable, a full disk
        print(
            f"toymodels-figures: error: cannot write {error.filename}: {error.strerror}; pass --out DIR to "
            "write the figures elsewhere",
            file=sys.stderr,
        )
        sys.exit(1)
    for path in written:
        print(path)
    for key, value in sweep.notes.items():
        print(f"{key}: {value}")
    print(f"{len(written)} files in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    try:  # the sweep's wandb summary run (a failure is a warning, never a failed command)
        from sweeps.tracking.figure_log import log_figures

        log_figures(sweep.root, written, sweep.table)
    except Exception as error:  # noqa: BLE001 - wandb failing is a warning, whatever the error
        print(
            f"toymodels-figures: warning: wandb: {type(error).__name__}: {error}", file=sys.stderr
        )


if __name__ == "__main__":
    main()
