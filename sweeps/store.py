"""The sweep store: a directory of atomically written per-chunk tables plus a consolidated table.

Layout of ``sweep.out``::

    sweep.yaml            the resolved config and its hash (a different config is refused)
    chunks/<id>.parquet   one file per finished chunk, written whole or not at all
    failed/<id>.json      chunks that failed by themselves, with their error
    results.parquet       every finished model, one row each (rebuilt from chunks/)
    figures/              what ``toymodels-figures`` draws

Each file is written under a temporary name and renamed into place, so a crash at any moment
leaves every chunk present whole or absent; rerunning trains only models with no stored row.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sweeps.config import Config, ConfigError

RESULTS = "results.parquet"


def config_yaml(config: Config) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(config))


def config_hash(config: Config) -> str:
    """Hash of everything that decides what the models are: not where they are written, how they
    are chunked, where they run or how they are tracked (``wandb``)."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.structured(config), resolve=True)
    for key in ("out", "chunk_size", "executor"):
        data["sweep"].pop(key)
    data.pop("ray")
    data.pop("wandb", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_table(path: Path, table: pd.DataFrame) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), sink)
    _atomic_write_bytes(path, sink.getvalue().to_pybytes())


class SweepStore:
    def __init__(self, out: str | os.PathLike):
        self.root = Path(out)
        self.chunks_dir = self.root / "chunks"
        self.failed_dir = self.root / "failed"

    def prepare(self, config: Config) -> None:
        """Create the layout, or check that an existing one holds this same sweep."""
        digest = config_hash(config)
        meta = self.root / "sweep.yaml"
        if meta.exists():
            stored = read_config_hash(self.root)
            if stored != digest:
                raise ConfigError(
                    "sweep.out",
                    f"{self.root} already holds a different sweep (config hash {stored}, this one {digest}); "
                    "choose another sweep.out or remove that directory",
                )
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        self.failed_dir.mkdir(exist_ok=True)
        if not meta.exists():
            _atomic_write_bytes(meta, f"# config_hash: {digest}\n{config_yaml(config)}".encode())

    def done_uids(self) -> set[int]:
        uids: set[int] = set()
        for path in sorted(self.chunks_dir.glob("*.parquet")):
            uids.update(int(u) for u in pq.read_table(path, columns=["uid"]).column("uid").to_pylist())
        return uids

    def write_chunk(self, chunk_id: str, table: pd.DataFrame) -> None:
        _atomic_write_table(self.chunks_dir / f"{chunk_id}.parquet", table)
        (self.failed_dir / f"{chunk_id}.json").unlink(missing_ok=True)

    def write_failure(self, chunk_id: str, error: BaseException, info: dict) -> None:
        record = dict(info, chunk=chunk_id, error=f"{type(error).__name__}: {error}",
                      traceback="".join(traceback.format_exception(error)))
        _atomic_write_bytes(self.failed_dir / f"{chunk_id}.json", json.dumps(record, indent=1).encode())

    def failures(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.failed_dir.glob("*.json"))]

    def consolidate(self) -> pd.DataFrame:
        """Rebuild results.parquet from the chunk files, rows in plan order (grid, then seed)."""
        parts = [pd.read_parquet(p) for p in sorted(self.chunks_dir.glob("*.parquet"))]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if len(table):
            table = table.sort_values("order", kind="stable").reset_index(drop=True)
        _atomic_write_table(self.root / RESULTS, table)
        return table


def read_config_hash(out: str | os.PathLike) -> str:
    """The config hash on the first line of ``sweep.yaml``."""
    first = (Path(out) / "sweep.yaml").read_text().splitlines()[0]
    return first.split(":", 1)[1].strip()


def read_results(out: str | os.PathLike, arrays: bool = False) -> pd.DataFrame:
    """The stored sweep as one DataFrame (plain ``pandas.read_parquet`` works too). With
    ``arrays``, every list column (W, b, norms, snapshots, …) holds one numpy array per row."""
    table = pd.read_parquet(Path(out) / RESULTS)
    return with_arrays(table) if arrays else table


def with_arrays(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each list cell as a float numpy array, a matrix stored as a list of rows
    (``W``, the snapshots) as one 2-D array; cells that are arrays already (vectors) or missing
    (``W2`` of a model without one) stay as they are."""
    out = table.copy()
    for column in table.columns:
        if table[column].dtype == object and table[column].map(_listlike).any():
            out[column] = [as_matrix([cell])[0] if _listlike(cell) else cell for cell in table[column]]
    return out


def _listlike(cell) -> bool:
    """A list, or the object array parquet reads a list of lists back as (a list of numbers comes
    back as a float array already)."""
    return isinstance(cell, list) or isinstance(cell, np.ndarray) and cell.dtype == object


def read_config(out: str | os.PathLike) -> dict:
    import yaml

    return yaml.safe_load((Path(out) / "sweep.yaml").read_text())


def as_matrix(column) -> np.ndarray:
    """A column of equal-length (nested) lists as one stacked float array."""
    return np.stack([np.asarray(list(v), dtype=np.float64) for v in column])
