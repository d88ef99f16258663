"""Where a figure draws, and how it is finished: one helper for every figure.

Each figure function takes ``target``:

- None: a new ``matplotlib.figure.Figure`` of the figure's own size;
- a Figure or SubFigure: the figure draws on it;
- an Axes: a single-panel figure draws into it; a multi-panel one takes its place, as a SubFigure
  with the Axes' extent (a sub-grid there, with its own title).

Figures are built as ``Figure`` objects, never through pyplot, so neither importing nor drawing
touches pyplot's figure list or matplotlib's backend: ``fig.savefig`` needs none, and a notebook
shows the figure it is given (or the one it made itself, with pyplot, and passed as ``target``).

Only a whole Figure is laid out (``tight_layout`` or ``subplots_adjust``); on a SubFigure the title
and the provenance stamp go on the SubFigure (make the parent with ``layout="constrained"`` for a
tidy grid); in a borrowed Axes the caller's figure keeps its own title and layout.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase, SubFigure

FULL = (0, 0, 1, 1)  # tight_layout over the whole figure


@dataclass(frozen=True)
class Canvas:
    """What a figure draws on, and how much of it is the figure's own: ``titled`` (its title and
    stamp go on ``figure``) and ``whole`` (``figure`` is a whole Figure it may lay out)."""

    figure: Figure | SubFigure
    titled: bool = True
    whole: bool = True


def region(target, figsize: tuple[float, float]) -> Canvas:
    """The Figure or SubFigure a multi-panel figure draws on (see the module docstring)."""
    if target is None:
        return Canvas(Figure(figsize=figsize))
    if isinstance(target, Figure):
        return Canvas(target)
    if isinstance(target, SubFigure):
        return Canvas(target, whole=False)
    if isinstance(target, Axes):
        spec = target.get_subplotspec()
        if spec is None:
            raise ValueError(
                "a multi-panel figure takes the place of an Axes on a grid (from subplots or "
                "add_subplot); this Axes was placed by hand (add_axes): pass its figure instead"
            )
        parent = target.figure
        target.remove()
        return Canvas(parent.add_subfigure(spec), whole=False)
    raise TypeError(
        f"target must be None, a matplotlib Figure, SubFigure or Axes, not {type(target).__name__}"
    )


def single_panel(target, figsize: tuple[float, float]) -> tuple[Canvas, Axes]:
    """A figure of one Axes: ``target`` itself when it is an Axes, else a new one on the region."""
    if isinstance(target, Axes):
        return Canvas(target.figure, titled=False, whole=False), target
    canvas = region(target, figsize)
    return canvas, canvas.figure.add_subplot()


def panel_grid(
    target,
    nrows: int,
    ncols: int,
    figsize: tuple[float, float],
    sharey: bool | Literal["all", "row", "col", "none"] = False,  # as matplotlib's subplots
    **gridspec_kw,
) -> tuple[Canvas, np.ndarray]:
    """An ``nrows``×``ncols`` grid of Axes (always a 2-D array), as ``plt.subplots`` makes it."""
    canvas = region(target, figsize)
    grid = canvas.figure.add_gridspec(nrows, ncols, **gridspec_kw).subplots(
        sharey=sharey, squeeze=False
    )
    return canvas, grid


def finish(
    canvas: Canvas,
    stamp: str,
    title: str | None = None,
    *,
    fontsize: float = 10,
    wrap: bool = False,
    layout: tuple[float, float, float, float] | dict | None = None,
) -> FigureBase:
    """The figure's tail: its title (wrapped to its width with ``wrap``), the provenance stamp, and
    on a whole Figure its layout: ``tight_layout(rect=layout)`` for a tuple,
    ``subplots_adjust(**layout)`` for a dict, none for None. Returns the figure."""
    fig = canvas.figure
    if canvas.titled:
        if title is not None:
            fig.suptitle(
                wrapped(title, width_inches(fig), fontsize) if wrap else title, fontsize=fontsize
            )
        stamp_figure(fig, stamp)
    if canvas.whole and isinstance(layout, dict):
        fig.subplots_adjust(**layout)
    elif canvas.whole and isinstance(layout, tuple) and isinstance(fig, Figure):  # whole: a Figure
        fig.tight_layout(rect=layout)
    return fig


def width_inches(fig: Figure | SubFigure) -> float:
    return fig.get_figwidth() if isinstance(fig, Figure) else fig.bbox.width / fig.dpi


def wrapped(text: str, width_in: float, fontsize: float) -> str:
    """A title wrapped to ``width_in`` inches (a long one is otherwise cut at both sides)."""
    width = max(20, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def stamp_figure(fig: FigureBase, stamp: str) -> None:
    """Write the provenance stamp (experiment · config hash · revision) in the bottom corner."""
    if stamp:
        fig.text(0.99, 0.005, stamp, ha="right", va="bottom", fontsize=6, color="0.4")
