"""What a stored chunk's rows must be, checked before a chunk counts as done or is read as a result
(issue 22 item 4; docs/security.md, "Damaged files").

A chunk file that is valid parquet with the right config hash can still be damaged: a column
dropped, numbers stored as text, a matrix flattened or ragged, a model id turned float. Every
chunk this sweep reads is checked against the schema its rows must have; one that fails is set
aside in ``chunks/corrupt/`` and its models are trained again, as a truncated chunk is.

Every chunk: ``uid``, ``order``, ``seed`` integers and ``chunk`` text, no missing values; a column
for each grid axis; every list column holds numbers (at any fixed depth), never text. A toy-model
chunk: ``model`` text, ``n_features`` and ``n_hidden`` integers, ``loss`` a finite number, ``W`` an
m×n matrix of finite numbers per row (m = ``n_hidden``, n = ``n_features``). An SAE chunk: ``kind``
text, ``dict_size`` and ``n_hidden`` integers, ``W_dec`` a finite m×d matrix per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class DamagedRows(ValueError):
    """A chunk's rows are not what a stored model's rows must be."""


@dataclass(frozen=True)
class RowSchema:
    kind: str  # "toy": toy models; "sae": sparse autoencoders
    axes: tuple[str, ...] = ()

    @classmethod
    def of_config(cls, config) -> "RowSchema":
        return cls("sae" if config.sae is not None else "toy", tuple(config.sweep.grid))

    @classmethod
    def of_stored(cls, stored: dict) -> "RowSchema":
        grid = (stored.get("sweep") or {}).get("grid") or {}
        return cls("sae" if stored.get("sae") else "toy", tuple(grid) if isinstance(grid, dict) else ())


_INTEGERS = ("uid", "order", "seed")
# List columns of numbers whatever the kind (a user kind's option may be a list of text).
NUMERIC_LISTS = ("W", "W2", "W_in", "b_in", "W_out", "b", "b_hidden", "norms", "capacity", "interference",
                 "feature_density", "feature_importance", "snap_step", "snap_loss", "snap_norms", "snap_capacity",
                 "layer_norms", "layer_capacity", "snap_layer_norms", "snap_layer_capacity", "W_dec", "b_dec",
                 "max_cos")
_KIND_COLUMNS = {
    "toy": {"model": "text", "n_features": "integer", "n_hidden": "integer", "loss": "float", "W": "matrix"},
    "sae": {"kind": "text", "dict_size": "integer", "n_hidden": "integer", "W_dec": "matrix"},
}


def _text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _leaf(t: pa.DataType) -> tuple[pa.DataType, int]:
    depth = 0
    while _list(t):
        t, depth = t.value_type, depth + 1
    return t, depth


def _number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t)


def _check_type(name: str, t: pa.DataType, want: str) -> None:
    leaf, depth = _leaf(t)
    ok = {"text": _text(t), "integer": pa.types.is_integer(t), "float": pa.types.is_floating(t),
          "matrix": depth == 2 and pa.types.is_floating(leaf)}[want]
    if not ok:
        what = {"text": "text", "integer": "integers", "float": "floating-point numbers",
                "matrix": "a matrix (a list of rows) of floating-point numbers"}[want]
        raise DamagedRows(f"column {name!r} holds {t}, not {what}")


def check_rows(table: pa.Table, schema: RowSchema | None) -> None:
    """Raise ``DamagedRows`` naming what is wrong with ``table`` (a chunk as read from its file)."""
    names = set(table.column_names)
    required = dict.fromkeys(_INTEGERS, "integer") | {"chunk": "text"}
    if schema is not None:
        required |= _KIND_COLUMNS[schema.kind]
        missing_axes = [a for a in schema.axes if a not in names]
        if missing_axes:
            raise DamagedRows(f"no column for the grid axis {missing_axes[0]!r}")
    for name, want in required.items():
        if name not in names:
            raise DamagedRows(f"no column {name!r}")
        _check_type(name, table.schema.field(name).type, want)
    for field in table.schema:
        leaf, depth = _leaf(field.type)
        if depth and not _number(leaf) and (field.name in NUMERIC_LISTS or not _text(leaf)):
            raise DamagedRows(f"column {field.name!r} holds lists of {leaf}, not numbers")
        if not depth and not (_number(field.type) or _text(field.type)):
            raise DamagedRows(f"column {field.name!r} holds {field.type}, not numbers or text")
    for name in required:
        if table.column(name).null_count:
            raise DamagedRows(f"column {name!r} has missing values")
    if schema is None:
        return
    if schema.kind == "toy":
        loss = table.column("loss").to_numpy(zero_copy_only=False)
        if not np.isfinite(loss).all():
            raise DamagedRows("column 'loss' holds a value that is not finite")
        _check_matrix(table, "W", "n_hidden", "n_features")
    else:
        _check_matrix(table, "W_dec", "n_hidden", "dict_size")


def _check_matrix(table: pa.Table, name: str, rows_of: str, columns_of: str) -> None:
    """Each row's ``name`` is a ``rows_of`` × ``columns_of`` matrix of finite numbers."""
    column = table.column(name).combine_chunks()
    rows = table.column(rows_of).to_numpy(zero_copy_only=False)
    columns = table.column(columns_of).to_numpy(zero_copy_only=False)
    inner = pc.list_flatten(column)
    leaves = pc.list_flatten(inner)
    if inner.null_count or leaves.null_count:
        raise DamagedRows(f"column {name!r} has missing values")
    if (rows < 0).any() or (columns < 0).any():
        raise DamagedRows(f"column {rows_of!r} or {columns_of!r} holds a negative size")
    outer_lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    inner_lengths = pc.list_value_length(inner).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(outer_lengths != rows)
    if not len(bad):
        entry_row = np.repeat(np.arange(len(rows)), rows)
        bad = np.unique(entry_row[inner_lengths != np.repeat(columns, rows)])
    if len(bad):
        i = int(bad[0])
        raise DamagedRows(f"column {name!r} of row {i} is not a {rows_of} × {columns_of} matrix "
                          f"({int(rows[i])} × {int(columns[i])})")
    if not np.isfinite(leaves.to_numpy(zero_copy_only=False)).all():
        raise DamagedRows(f"column {name!r} holds a value that is not finite")
