"""What the kind tables say about the kinds a stored sweep names (``toymodels.models.MODELS``,
``toymodels.data.DATA``). A user's kind whose plugin file is not loaded in this process is not
known: it counts as having none of the properties below."""

from __future__ import annotations

from toymodels.data import DATA
from toymodels.models import MODELS


def privileged_model(model: str) -> bool:
    """The model's hidden layer is a privileged basis (an elementwise non-linearity)."""
    kind = MODELS.find(model)
    return bool(kind and kind.privileged)


def signed_data(data_kind: str) -> bool:
    """The data kind's features take negative values."""
    kind = DATA.find(data_kind)
    return bool(kind and kind.signed)


def set_data(data_kind: str) -> bool:
    """The data kind draws features in sets (correlated, anticorrelated)."""
    kind = DATA.find(data_kind)
    return bool(kind and kind.sets)
