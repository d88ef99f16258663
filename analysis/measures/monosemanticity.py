"""The trained side of buying monosemanticity (issue 17 item 3; the closed forms are in
``analysis.theory.monosemanticity``): the polysemantic share of features and of live neurons
against the loss, for each intervention a sweep varies (``intervention_points``), seeds ranked by
what they optimised (``objective``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures.neurons import is_signed, neuron_classes
from analysis.kind_traits import privileged_model
from analysis.stored_sweep import as_array
from analysis.theory import capacity as ct


def polysemantic_fraction(
    C_F, thresholds: ct.CapacityThresholds = ct.CapacityThresholds()
) -> float:
    """Share of features with ``ignored`` < C_i < ``mono`` (capacity classes)."""
    classes = ct.classify_capacity(C_F, thresholds.mono, thresholds.ignored)
    return float(np.mean(classes == ct.POLYSEMANTIC))


# Interventions on monosemanticity a sweep may vary, and how each one's "off" value is found.
INTERVENTIONS = {
    "mono_penalty": "μ·Σ C(1−C)",
    "l1_hidden": "L1 on h",
    "hidden_bias": "hidden-bias init",
    "n_hidden": "width m",
}


def base_value(table: pd.DataFrame, axis: str):
    """An intervention's off value in the sweep: none for the hidden bias (no hidden bias, or the
    least negative init), the smallest value otherwise (0 penalty, the narrowest layer)."""
    values = table[axis]
    if axis == "hidden_bias":
        present = values.dropna()
        return None if values.isna().any() or len(present) == 0 else float(present.max())
    return values.min()


def _at(table: pd.DataFrame, axis: str, value) -> pd.Series:
    if value is None:
        return table[axis].isna()
    return np.isclose(table[axis].astype(float), float(value))


def objective(table: pd.DataFrame) -> pd.Series:
    """What each model optimised at the end: the last snapshot interval's mean training loss
    (penalties included). Seeds are ranked by it, never by the unpenalised ``loss``, which would
    prefer the polysemantic seeds a penalty pushes away from."""
    return table["snap_loss"].map(lambda s: float(list(s)[-1]))


def _neuron_poly_fraction(row: pd.Series) -> float:
    if not privileged_model(row["model"]):
        return float("nan")
    classes = neuron_classes(as_array(row["W"]), is_signed(row))
    live = classes != "dead"
    return float(np.mean(classes[live] == "polysemantic")) if live.any() else float("nan")


def intervention_points(table: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """One row per (intervention, setting of the other swept axes, strength): the best seed by
    ``objective`` among models whose other interventions are off; its loss (penalty excluded) and
    the polysemantic share of its features (capacity) and of its live neurons (privileged models)."""
    present = [
        a for a in INTERVENTIONS if a in axes and a in table and table[a].nunique(dropna=False) > 1
    ]
    others = [
        a
        for a in axes
        if a not in INTERVENTIONS and a in table and table[a].nunique(dropna=False) > 1
    ]
    ranked = table.assign(_objective=objective(table))
    points = []
    for axis in present:
        rows = ranked
        for other in present:
            if other != axis:
                rows = rows[_at(rows, other, base_value(table, other))]
        settings = others
        if (
            axis != "mono_penalty" and "mono_start" in others
        ):  # when the term is on: moot without it
            rows, settings = (
                rows[rows["mono_start"] == rows["mono_start"].min()],
                [a for a in others if a != "mono_start"],
            )
        keys = ["model", *settings, axis]
        filled = (
            rows.assign(**{axis: rows[axis].astype(float).fillna(np.nan)})
            if axis == "hidden_bias"
            else rows
        )
        for key, group in filled.groupby(keys, dropna=False, sort=True):
            best = group.loc[group["_objective"].idxmin()]
            points.append(
                {
                    "intervention": axis,
                    **dict(zip(keys, key)),
                    "strength": best[axis],
                    "kurtosis": float(best.get("kurtosis", np.nan)),
                    "loss": float(best["loss"]),
                    "objective": float(best["_objective"]),
                    "poly_features": polysemantic_fraction(list(best["capacity"])),
                    "poly_neurons": _neuron_poly_fraction(best),
                }
            )
    return pd.DataFrame(points)
