"""``toymodels-figures DIR``: draw every figure a stored sweep supports, from the store alone."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from analysis.figures.catalog import FIGURES, check_option_values, draw, figure_names, notes
from analysis.phases import PhaseThresholds
from analysis.stored_sweep import StoredSweep
from toymodels.registry import ConfigError

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
        try:
            fig = draw(name, sweep, **options)
        except (
            ConfigError
        ) as error:  # the figure runs a kind of the sweep's own whose code is not loaded
            if "unknown" not in str(error) or error.key not in ("model.kind", "data.kind"):
                raise
            print(
                f"toymodels-figures: note: {name} not drawn: it runs the sweep's own kind, whose code is not "
                f"loaded ({str(error).split(';')[0]}); name its plug-in file with --plugins",
                file=sys.stderr,
            )
            continue
        for fmt in FORMATS:
            path = out / f"{name}.{fmt}"
            fig.savefig(path, dpi=150)
            written.append(path)
        sweep.notes.update(notes(name, sweep, **options))
    return written


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad option refused in one line (``prog: error: --option: why``), exit 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message.replace('argument ', '', 1)}", file=sys.stderr)
        sys.exit(2)


CLI_KEYS = {"feature": "--feature", "represented": "--represented", "superposed": "--superposed"}


def main(argv=None) -> None:
    parser = OneLineParser(prog="toymodels-figures", description=__doc__)
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
    parser.add_argument(
        "--plugins",
        action="append",
        default=[],
        metavar="FILE",
        help="a plug-in file of the sweep's own kinds to run (repeat for several): checked against "
        "the digest the store recorded; without it no code of the store's is run",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        sweep = StoredSweep.load(
            args.sweep_dir,
            [p for given in args.plugins for p in given.split(",") if p],
            key="--plugins",
        )
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
    if (
        not args.out and (sweep.root / "figures").is_symlink()
    ):  # a shared store must not say where we write
        print(
            f"toymodels-figures: error: --out: {sweep.root / 'figures'} is a link; pass --out DIR to write the "
            "figures elsewhere",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        check_option_values(sweep, {"feature": args.feature, "thresholds": thresholds}, CLI_KEYS)
    except ValueError as error:
        print(f"toymodels-figures: error: {error}", file=sys.stderr)
        sys.exit(2)
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
