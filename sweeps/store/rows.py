"""What a stored chunk's rows must be, checked before a chunk counts as done or is read as a result
(issue 22 item 4; docs/security.md, "Damaged files").

A chunk file that is valid parquet with the right config hash can still be damaged: a column
dropped, numbers stored as text, a matrix flattened or ragged, a model id turned float. Every
chunk this sweep reads is checked against the schema its rows must have; one that fails is set
aside in ``chunks/corrupt/`` and its models are trained again, as a truncated chunk is.

Every chunk of every job kind: ``uid``, ``order``, ``seed`` integers and ``chunk`` text, no
missing values; a column for each grid axis; every list column holds numbers (at any fixed
depth), never text. Beyond these, each job kind declares its own columns (``JobKind.columns``,
``sweeps.jobs.kind``): the driver hands them to the store (``RowSchema.of_job``), which records
them in ``rows.json`` so that a reader checks a store's rows as the sweep that wrote them did.
A column's type is ``text``, ``integer``, ``finite`` (a finite floating-point number) or
``matrix R×C`` (per row, an R×C matrix of finite numbers, R and C named integer columns). Stores
written before ``rows.json`` are checked by ``LEGACY_COLUMNS`` (toy models, SAEs).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class DamagedRows(ValueError):
    """A chunk's rows are not what a stored model's rows must be."""


ROWS = "rows.json"  # the job kind's columns, as the sweep that wrote the store declared them
_MATRIX = re.compile(r"matrix (\w+)×(\w+)$")
TOY_COLUMNS = {
    "model": "text",
    "n_features": "integer",
    "n_hidden": "integer",
    "loss": "finite",
    "W": "matrix n_hidden×n_features",
}
SAE_COLUMNS = {
    "kind": "text",
    "dict_size": "integer",
    "n_hidden": "integer",
    "W_dec": "matrix n_hidden×dict_size",
}
# The columns of stores written before rows.json: the job kinds there were (toy models, SAEs).
LEGACY_COLUMNS = {"toy": TOY_COLUMNS, "sae": SAE_COLUMNS}


def _known_type(text) -> bool:
    return isinstance(text, str) and (
        text in ("text", "integer", "finite") or bool(_MATRIX.match(text))
    )


@dataclass(frozen=True)
class RowSchema:
    columns: tuple[tuple[str, str], ...] = ()  # (name, type) a job kind's rows must have
    axes: tuple[str, ...] = ()

    @classmethod
    def of_job(cls, columns, grid) -> RowSchema:
        """A job kind's declared ``columns`` (``JobKind.columns``) and the sweep's grid axes."""
        bad = [f"{k}: {v}" for k, v in columns.items() if not _known_type(v)]
        if bad:
            raise ValueError(
                f"a job kind's column type is not text, integer, finite or matrix R×C: {bad[0]}"
            )
        return cls(tuple(columns.items()), tuple(grid))

    @classmethod
    def of_stored(cls, stored: dict, root: Path | None = None) -> RowSchema:
        """What the rows of a stored sweep must be: as its ``rows.json`` records them, else (a
        store written before it, or a damaged one) as ``LEGACY_COLUMNS`` has them."""
        grid = (stored.get("sweep") or {}).get("grid") or {}
        axes = tuple(grid) if isinstance(grid, dict) else ()
        recorded = read_recorded(root) if root is not None else None
        if recorded is not None:
            return cls(tuple(recorded.items()), axes)
        return cls(tuple(LEGACY_COLUMNS["sae" if stored.get("sae") else "toy"].items()), axes)

    def record(self) -> bytes:
        return json.dumps({"columns": dict(self.columns)}, indent=1, sort_keys=True).encode()


def read_recorded(root: Path) -> dict | None:
    """``rows.json``'s columns (None: absent, or not a record of known column types)."""
    from sweeps.store.meta import read_regular

    try:
        record = json.loads(read_regular(Path(root) / ROWS, 2**20))
    except (OSError, ValueError, RecursionError):
        return None
    columns = record.get("columns") if isinstance(record, dict) else None
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and _known_type(v) for k, v in columns.items()
    ):
        return None
    return columns


_INTEGERS = ("uid", "order", "seed")
# List columns of numbers whatever the kind (a user kind's option may be a list of text).
NUMERIC_LISTS = (
    "W",
    "W2",
    "W_in",
    "b_in",
    "W_out",
    "b",
    "b_hidden",
    "norms",
    "capacity",
    "interference",
    "feature_density",
    "feature_importance",
    "snap_step",
    "snap_loss",
    "snap_norms",
    "snap_capacity",
    "layer_norms",
    "layer_capacity",
    "snap_layer_norms",
    "snap_layer_capacity",
    "W_dec",
    "b_dec",
    "max_cos",
)


def _text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _bytes(t: pa.DataType) -> bool:
    """An SAE's parameters as safetensors bytes (``params``): read only by a safetensors loader."""
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _leaf(t: pa.DataType) -> tuple[pa.DataType, int]:
    depth = 0
    while _list(t):
        t, depth = t.value_type, depth + 1
    return t, depth


def _number(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    )


def _check_type(name: str, t: pa.DataType, want: str) -> None:
    leaf, depth = _leaf(t)
    want = "matrix" if want.startswith("matrix") else want
    ok = {
        "text": _text(t),
        "integer": pa.types.is_integer(t),
        "finite": pa.types.is_floating(t),
        "matrix": depth == 2 and pa.types.is_floating(leaf),
    }[want]
    if not ok:
        what = {
            "text": "text",
            "integer": "integers",
            "finite": "floating-point numbers",
            "matrix": "a matrix (a list of rows) of floating-point numbers",
        }[want]
        raise DamagedRows(f"column {name!r} holds {t}, not {what}")


def check_rows(table: pa.Table, schema: RowSchema | None) -> None:
    """Raise ``DamagedRows`` naming what is wrong with ``table`` (a chunk as read from its file)."""
    names = set(table.column_names)
    required = dict.fromkeys(_INTEGERS, "integer") | {"chunk": "text"}
    if schema is not None:
        required |= dict(schema.columns)
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
        if not depth and not (_number(field.type) or _text(field.type) or _bytes(field.type)):
            raise DamagedRows(
                f"column {field.name!r} holds {field.type}, not numbers, text or bytes"
            )
    for name in required:
        if table.column(name).null_count:
            raise DamagedRows(f"column {name!r} has missing values")
    for name, want in required.items():
        if want == "finite":
            values = table.column(name).to_numpy(zero_copy_only=False)
            if not np.isfinite(values).all():
                raise DamagedRows(f"column {name!r} holds a value that is not finite")
        elif want.startswith("matrix"):
            matrix = _MATRIX.match(want)
            assert matrix is not None  # a schema's types passed _known_type
            rows_of, columns_of = matrix.groups()
            for size in (rows_of, columns_of):
                if size not in names:
                    raise DamagedRows(f"no column {size!r}")
                _check_type(size, table.schema.field(size).type, "integer")
                if table.column(size).null_count:
                    raise DamagedRows(f"column {size!r} has missing values")
            _check_matrix(table, name, rows_of, columns_of)


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
        raise DamagedRows(
            f"column {name!r} of row {i} is not a {rows_of} × {columns_of} matrix "
            f"({int(rows[i])} × {int(columns[i])})"
        )
    if not np.isfinite(leaves.to_numpy(zero_copy_only=False)).all():
        raise DamagedRows(f"column {name!r} holds a value that is not finite")
