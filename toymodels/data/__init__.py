"""Data kinds (docs/science/models.md): the explicit table, the sampler every kind shares, and importance
profiles. Each kind is one ``DataKind`` object (``toymodels.data.base``) in one file:

| kind | file | inputs |
|---|---|---|
| ``sparse``, ``signed``, ``kurtosis`` | ``elementwise.py`` | each feature from its own uniform |
| ``correlated``, ``anticorrelated`` | ``sets.py`` | consecutive sets of ``set_size`` features |
| ``random_target`` | ``target.py`` | a new target feature every sample among weak background features |

A user's kind: build a ``DataKind`` in your own file and ``DATA.register`` it (docs/kinds.md).
"""

from __future__ import annotations

import numpy as np

from toymodels.data import elementwise, sets, target
from toymodels.data.base import DataKind, DataSpec, spec_for
from toymodels.data.elementwise import MAGNITUDE_KURTOSIS, MAGNITUDES
from toymodels.data.importance import IMPORTANCE_KINDS, importance_profile
from toymodels.data.sample import (
    Block,
    draw,
    draw_shared,
    from_uniforms,
    sample_batch,
    sample_features,
    sample_weighted_batch,
    uniform_rows,
    weights_from_uniforms,
)
from toymodels.registry import Registry

DATA: Registry[DataKind] = Registry(
    "data kind",
    "data.kind",
    [
        elementwise.SPARSE,
        elementwise.SIGNED,
        sets.CORRELATED,
        sets.ANTICORRELATED,
        elementwise.KURTOSIS,
        target.RANDOM_TARGET,
    ],
)

__all__ = [
    "DATA",
    "IMPORTANCE_KINDS",
    "MAGNITUDES",
    "MAGNITUDE_KURTOSIS",
    "Block",
    "DataKind",
    "DataSpec",
    "data_spec",
    "draw",
    "draw_shared",
    "feature_kurtosis",
    "from_uniforms",
    "importance_profile",
    "register_data",
    "sample_batch",
    "sample_features",
    "sample_weighted_batch",
    "uniform_rows",
    "weights_from_uniforms",
]


def register_data(kind: DataKind, origin: str | None = None) -> DataKind:
    """Make ``kind`` drawable by name (``data.kind=<kind.name>``)."""
    return DATA.register(kind, origin)


def data_spec(kind: str = "sparse", rest_scale: float = 1.0, **options) -> DataSpec:
    """The DataSpec of the kind named ``kind`` with ``options`` over its defaults, e.g.
    ``data_spec("correlated", set_size=3)``."""
    return spec_for(DATA.get(kind), rest_scale, **options)


def feature_kurtosis(spec: DataSpec, density_F) -> np.ndarray:
    """E[x⁴] / E[x²]² of each feature (K_u / p for the ``kurtosis`` data); NaN where the kind has
    no closed form."""
    kind = DATA.get(spec.kind)
    if kind.kurtosis is None:
        return np.full(np.shape(density_F), np.nan)
    return kind.kurtosis(spec, density_F)
