"""``toymodels-figures DIR``: draw every figure a stored sweep supports, from the store alone."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from analysis.curves import plot_loss_curves
from analysis.geometry import plot_geometry_panels
from analysis.sweep import StoredSweep

FORMATS = ("png", "pdf")


def draw_all(sweep: StoredSweep, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    figures = {"loss_curves": plot_loss_curves(sweep.table, sweep.axes, sweep.stamp())}
    if (sweep.table["n_hidden"] == 2).all():
        figures["geometry_2d"] = plot_geometry_panels(sweep.table, sweep.axes, sweep.stamp())
    written = []
    for name, fig in figures.items():
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
    written = draw_all(sweep, Path(args.out) if args.out else sweep.root / "figures")
    for path in written:
        print(path)
    print(f"{len(written)} files in {time.perf_counter() - start:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
