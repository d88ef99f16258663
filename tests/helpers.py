"""Shared test helpers: compose the real Hydra configs the way the CLI does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from sweeps.config import CONF_DIR, Config, quote_grid_generators, register_schema, to_config

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def compose_config(overrides: Sequence[str] = ()) -> Config:
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=quote_grid_generators(list(overrides)))
    return to_config(cfg)


def tiny(out, *extra) -> list[str]:
    """Overrides for a seconds-long sweep, untracked (tests/sweeps/test_tracking.py passes wandb.mode=offline)."""
    return [
        "train.steps=30",
        "train.batch_size=32",
        "train.eval_samples=256",
        "train.snapshot_every=10",
        f"sweep.out={out}",
        "sweep.executor=local",
        "wandb.mode=disabled",
        *extra,
    ]


def memory_analysis(lowered):
    """XLA's memory analysis of a lowered program, compiled at backend optimisation level 0: the
    bytes come from buffer assignment, which the backend's level does not change (the same bytes
    at either level for tests/sweeps/test_resources.py's programs), and it compiles about twice
    as fast. Only for analysis: the program is never run."""
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0}).memory_analysis()


def cli(command: str, *args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name(command)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("WANDB_SERVICE", None)  # its own wandb service, not this process's (tests/conftest.py)
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def drawing(fig, skip=()) -> list:
    """What a figure shows, Axes by Axes (those in ``skip`` left out), in data coordinates: titles,
    labels, scales, limits, and the data of every line, collection, patch, image and text. Equal
    for two figures that draw the same panels and numbers, whatever their size or place."""

    def collection(c):
        array = c.get_array()
        return (
            [p.vertices.round(9).tolist() for p in c.get_paths()],
            c.get_offsets().tolist(),
            None if array is None else array.tolist(),
        )

    def patch(p):
        return p.get_patch_transform().transform(p.get_path().vertices).round(9).tolist()

    shown = []
    for ax in fig.axes:
        if any(ax is other for other in skip):
            continue
        legend = ax.get_legend()
        shown.append(
            {
                "labels": (
                    ax.get_title(),
                    ax.get_xlabel(),
                    ax.get_ylabel(),
                    ax.get_xscale(),
                    ax.get_yscale(),
                ),
                "limits": np.round([ax.get_xlim(), ax.get_ylim()], 9).tolist(),
                "lines": [(line.get_label(), line.get_xydata().tolist()) for line in ax.lines],
                "collections": [collection(c) for c in ax.collections],
                "patches": [patch(p) for p in ax.patches],
                "images": [image.get_array().tolist() for image in ax.images],
                "texts": [(t.get_text(), t.get_position()) for t in ax.texts],
                "legend": None if legend is None else [t.get_text() for t in legend.get_texts()],
            }
        )
    return shown


def assert_draws_the_same_into_every_target(draw) -> None:
    """``draw(target)`` draws the same panels and numbers on a new Figure (target None), on a given
    Figure, on a SubFigure and in the place of one Axes of a 2×2 grid, leaving the grid's other
    Axes alone; a multi-panel figure there becomes a SubFigure with exactly that Axes' extent."""
    from matplotlib.figure import Figure, SubFigure

    alone = draw(None)
    assert (
        isinstance(alone, Figure) and alone.canvas.manager is None
    )  # never registered with pyplot
    expected = drawing(alone)
    given = Figure(figsize=(16, 6))
    assert draw(given) is given and drawing(given) == expected
    sub = Figure().subfigures(1, 2)[1]  # type: ignore[index]  # an array of two
    assert draw(sub) is sub and drawing(sub) == expected
    host = Figure(figsize=(12, 8))
    axes = host.subplots(2, 2)
    others, place = [axes[0, 0], axes[1, 0], axes[1, 1]], axes[0, 1]
    drawn = draw(place)
    if len(expected) == 1 and drawn is host:  # a single-panel figure: into the Axes itself
        assert drawing(host, skip=others) == expected and place in host.axes
    else:
        assert isinstance(drawn, SubFigure) and place not in host.axes
        assert drawn.bbox_relative.bounds == (
            0.5,
            0.5,
            0.5,
            0.5,
        )  # the top-right cell of the 2×2 grid
        assert drawing(drawn) == expected
    assert all(ax in host.axes and not ax.lines and not ax.collections for ax in others)
