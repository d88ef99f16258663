"""What the kind tables say about the kinds a stored sweep names (``toymodels.models.MODELS``,
``toymodels.data.DATA``). A user's kind whose plugin file is not loaded in this process (reading
a store runs no code) has the properties its store recorded (``kinds.json``, ``remember``); a
kind of a store older than that record counts as having none of them."""

from __future__ import annotations

from toymodels.data import DATA
from toymodels.models import MODELS

_RECORDED: dict[
    tuple[str, str], dict
] = {}  # (table, name) -> the properties a loaded store recorded


def remember(record: dict | None) -> None:
    """Take the properties of the user's kinds from a store's record (``sweeps.store.reader_kinds``)."""
    for kind in (record or {}).get("kinds", []):
        _RECORDED[(kind.get("table", "model"), kind["name"])] = kind


def _property(table, name: str, prop: str) -> bool:
    kind = table.find(name)
    if kind is not None:
        return bool(getattr(kind, prop, False))
    return _RECORDED.get(("model" if table is MODELS else "data", name), {}).get(prop) is True


def privileged_model(model: str) -> bool:
    """The model's hidden layer is a privileged basis (an elementwise non-linearity)."""
    return _property(MODELS, model, "privileged")


def signed_data(data_kind: str) -> bool:
    """The data kind's features take negative values."""
    return _property(DATA, data_kind, "signed")


def set_data(data_kind: str) -> bool:
    """The data kind draws features in sets (correlated, anticorrelated)."""
    return _property(DATA, data_kind, "sets")
