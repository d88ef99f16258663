"""Stored sweeps and their figures from Python, e.g. a notebook::

    from analysis import api

    sweep = api.load("runs/tms_intro")          # table (weights as arrays), axes, config
    api.figure_names(sweep)                     # what toymodels-figures would draw
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5), layout="constrained")
    api.draw("loss_curves", sweep, left)        # into an Axes, a Figure, a SubFigure, or None
    api.draw("geometry_2d", sweep, right)       # a multi-panel figure takes the Axes' place
    model = api.model(sweep, 0)                 # row 0 as a model: model["loss"], model(x) on a B×n batch

The figures and when each applies come from one table (``analysis.figures.catalog``), the one
``toymodels-figures`` reads. Importing this module imports nothing of Hydra, Ray or wandb and
leaves matplotlib's backend as it is.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd

from analysis.figures import catalog
from analysis.figures.catalog import FIGURES, figure_names
from analysis.measures.model_rows import StoredModel
from analysis.stored_sweep import StoredSweep
from sweeps.store import with_arrays

__all__ = ["FIGURES", "StoredModel", "draw", "figure_names", "load", "model", "with_arrays"]


def load(out: str | os.PathLike) -> StoredSweep:
    """The stored sweep in ``out`` (a sweep's ``sweep.out``): ``table`` (one row per trained
    model, every matrix cell such as ``W`` a 2-D numpy array: ``np.stack(table["W"])`` is
    models×m×n), ``axes`` (the swept axes, in grid order), ``config`` (the resolved config) and
    ``stamp()`` (the provenance every figure carries)."""
    sweep = StoredSweep.load(out)
    return replace(sweep, table=with_arrays(sweep.table))


def draw(name: str, sweep: StoredSweep | str | os.PathLike, target=None, **options):
    """Figure ``name`` of a sweep (a loaded one, or its directory), drawn into ``target``: None (a
    new ``matplotlib.figure.Figure``), a Figure or SubFigure, or an Axes (a multi-panel figure
    replaces it by a sub-grid at its place). ``options`` are the figure's own
    (``FIGURES[name].options()``, e.g. ``max_panels``). Returns the Figure or SubFigure drawn on.
    A name the sweep does not support, or an unknown option, is a ValueError before any drawing."""
    if not isinstance(sweep, StoredSweep):
        sweep = load(sweep)
    return catalog.draw(name, sweep, target, **options)


def model(sweep: StoredSweep | str | os.PathLike, which=0) -> StoredModel:
    """A trained model of a sweep (a loaded one, or its directory), callable on a batch:
    ``which`` is a position in ``sweep.table`` (``0``: its first row) or a row of it
    (``sweep.table.iloc[i]``, a row picked with ``.loc``/``.query``). ``model(x)`` runs the model
    kind's forward pass on ``x`` (B×n, batch first) with the row's stored parameters and returns
    B×O outputs; ``model.hidden(x)`` the B×m hidden activations; ``model["loss"]`` (any column)
    and ``model.row`` the table row. The kind must be built in or registered in this session."""
    if not isinstance(sweep, StoredSweep):
        sweep = load(sweep)
    row = which if isinstance(which, pd.Series) else sweep.table.iloc[int(which)]
    return StoredModel(row)
