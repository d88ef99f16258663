"""The sweep store: a directory of atomically written per-chunk tables plus a consolidated table.

Layout of ``sweep.out`` (docs/store.md)::

    sweep.yaml            the resolved config, its hash and model count (a different config is refused)
    chunks/<id>.parquet   one file per finished chunk, written whole or not at all, tagged with
                          the config hash it was trained under
    chunks/corrupt/       chunk files found damaged, set aside (their models are trained again)
    failed/<id>.json      chunks that failed by themselves, with their error
    kinds.json, rows.json the user's plug-ins and kinds; the columns every chunk is checked against
    claims/, .lock        which driver trains which models (sweeps.store.locks)
    results.parquet       every finished model, one row each (rebuilt from chunks/)
    figures/              what ``toymodels-figures`` draws

Each file is written under a temporary name (``.<name>.<pid>-<token>.tmp``, never matching
``*.parquet``) and renamed into place, so a crash at any moment leaves every chunk present whole
or absent; rerunning trains only models with no stored row under this config's hash.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
import time
import traceback
from contextlib import suppress
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sweeps.config import Config, ConfigError
from sweeps.store.locks import Claim, StoreLock, claims_of_others
from sweeps.store.meta import (  # noqa: F401
    META,
    config_hash,
    config_yaml,
    describe_differences,
    differences,
    moved_plugins_only,
    read_config,
    read_config_hash,
    read_meta,
    read_regular,
    verified_config_hash,
)
from sweeps.store.rows import ROWS, DamagedRows, RowSchema, check_rows
from sweeps.store.trust import (  # noqa: F401
    reader_kinds,
    record_kinds,
    require_kinds,
    trust_plugins,
    verify_plugins,
)

RESULTS = "results.parquet"
HASH_KEY = b"toymodels.config_hash"  # parquet metadata: the config hash the rows were trained under
TEMPORARY = (".*.tmp", ".tmp-*")  # ours; and the ".tmp-<pid>-<name>" of earlier versions
TEMPORARY_AGE = 300  # seconds: a temporary this old is no write in flight
CHUNK_GLOB = "[!.]*.parquet"  # a chunk is "<id>.parquet"; hidden files are never chunks


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")


def atomic_write(path: Path, data: bytes, exclusive: bool = False) -> bool:
    """Write ``path`` whole or not at all. ``exclusive``: only if it does not exist yet (False
    when another process created it first; a hard link is atomic on network filesystems too).
    A failed write removes its temporary file and raises its own OSError, naming ``path``."""
    tmp = _temporary(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            with suppress(OSError):
                os.close(fd)
            raise
        os.close(fd)
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (the caller holds the store lock): check, then rename
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    except OSError as error:  # name the file being written, not its temporary (os.write names none)
        error.filename, error.filename2 = str(path), None
        raise
    finally:
        with suppress(OSError):
            tmp.unlink()


def _arrow(table: pd.DataFrame | pa.Table, digest: str | None) -> bytes:
    # an Arrow table as it is (a Ray worker's rows, converted there by sweeps.jobs.rows_as_arrow
    # exactly as here: tests/sweeps/store/test_rows_travel.py checks the files are the same bytes)
    arrow = (
        table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)
    )
    if digest:
        arrow = arrow.replace_schema_metadata(
            {**(arrow.schema.metadata or {}), HASH_KEY: digest.encode()}
        )
    sink = pa.BufferOutputStream()
    pq.write_table(arrow, sink)
    return sink.getvalue().to_pybytes()


def write_table(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """``table`` as one parquet file at ``path``, whole or not at all (``atomic_write``): the one
    way a table is written beside a sweep's store (``toymodels-backdoor``'s, say)."""
    atomic_write(Path(path), _arrow(table, None))


def read_regular_or_none(path: Path, limit: int = 2**20) -> bytes | None:
    try:
        return read_regular(path, limit)
    except (OSError, ValueError):
        return None


def _warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class SweepStore:
    """One sweep's directory. ``prepare`` binds it to a config; ``read_only`` stores (the figures'
    reader) never move or write a file."""

    def __init__(self, out: str | os.PathLike, log=_warning, read_only: bool = False):
        self.root = Path(out)
        self.chunks_dir = self.root / "chunks"
        self.failed_dir = self.root / "failed"
        self.corrupt_dir = self.chunks_dir / "corrupt"
        self.claims_dir = self.root / "claims"
        self.log = log
        self.read_only = read_only
        self.digest: str | None = None  # the config hash whose rows this store reads and writes
        self.trust_untagged = False  # chunks written before they carried a hash: sweep.yaml vouches
        self._chunks: dict[str, tuple[str | None, frozenset[int]]] = {}  # file name -> (hash, uids)
        self.rows: RowSchema | None = None  # what this sweep's rows must be (sweeps.store.rows)
        self._checked: set[str] = (
            set()
        )  # chunk files whose rows were checked (a file never changes)
        self._foreign_noted: set[str] = set()

    def locked(self) -> StoreLock:
        return StoreLock(self.root)

    def claim(self) -> Claim:
        """A new claim of this driver (call with the store lock held)."""
        return Claim(self.claims_dir)

    def others_claims(self, own: Claim | None = None) -> dict[str, frozenset[int]] | None:
        """Models other live drivers hold (None: this filesystem cannot tell)."""
        return claims_of_others(self.claims_dir, own)

    def prepare(self, config: Config, n_models: int, rows: RowSchema | None = None) -> None:
        """Create the layout, or check that an existing one holds this same sweep; one exclusive step.
        ``rows``: what the job kind's rows must be (``RowSchema.of_job``; the driver's plan knows
        its kind), recorded in rows.json for readers; None: as the store records it."""
        digest = config_hash(config)
        self.root.mkdir(parents=True, exist_ok=True)
        with self.locked():
            self._bind(config, digest, n_models)
            record_kinds(
                self.root, config
            )  # the user's kinds: refused if their code changed, else recorded
            if rows is None:
                rows = RowSchema.of_stored(read_config(self.root), self.root)
            elif read_regular_or_none(self.root / ROWS) != rows.record():
                atomic_write(self.root / ROWS, rows.record())
            self.rows = rows
            for folder in (self.chunks_dir, self.failed_dir, self.claims_dir):
                folder.mkdir(exist_ok=True)
            if (
                self.others_claims() == {}
            ):  # no other driver is writing: what is left is a dead one's
                self._remove_temporaries()

    def _bind(self, config: Config, digest: str, n_models: int) -> None:
        meta = self.root / META
        for _ in range(2):
            if meta.exists():
                stored = verified_config_hash(self.root)
                if stored != digest:
                    changed = differences(self.root, config)
                    if not moved_plugins_only(changed):
                        raise ConfigError(
                            "sweep.out",
                            f"{self.root} already holds a different sweep (config hash "
                            f"{stored}, this one {digest}): {describe_differences(changed)}",
                        )
                    self.log(
                        f"{self.root}: its plug-in files are named from elsewhere now ({', '.join(config.plugins)}); "
                        "their contents are those its models were trained with: resuming"
                    )
                self.digest, self.trust_untagged = stored, True
                return
            chunks = self._scan()
            others = sorted(
                {
                    h or "none: written before chunks carried one"
                    for h, _ in chunks.values()
                    if h != digest
                }
            )
            if others:
                raise ConfigError(
                    "sweep.out",
                    f"{self.root} has no {META}, and chunks/ holds models trained under another "
                    f"config (hash {', '.join(others)}); they are never used for this one: choose another "
                    f"sweep.out, remove {self.root}, or restore its {META}",
                )
            text = f"# config_hash: {digest}\n# models: {n_models}\n{config_yaml(config)}"
            if atomic_write(meta, text.encode(), exclusive=True):
                if chunks:
                    self.log(
                        f"{meta} was missing: written again from this config, the one its {len(chunks)} "
                        "stored chunk file(s) were trained under"
                    )
                self.digest = digest
                return
        raise ConfigError(
            "sweep.out",
            f"{meta} keeps changing under this run: is another toymodels-sweep writing it?",
        )

    def _remove_temporaries(self) -> None:
        """Temporaries older than a write could take: a killed process's (the age guards a write
        in flight where flock is local to one machine, as on some network filesystems)."""
        old = time.time() - TEMPORARY_AGE
        for folder in (self.root, self.chunks_dir, self.failed_dir):
            for pattern in TEMPORARY:
                for path in folder.glob(pattern):
                    with suppress(FileNotFoundError):
                        if path.stat().st_mtime < old:
                            path.unlink()

    def _scan(self) -> dict[str, tuple[str | None, frozenset[int]]]:
        """Each chunk file's config hash and model ids (a file, once in place, never changes)."""
        present = (
            {p.name: p for p in sorted(self.chunks_dir.glob(CHUNK_GLOB))}
            if self.chunks_dir.is_dir()
            else {}
        )
        for name in set(self._chunks) - set(present):
            del self._chunks[name]
        for name, path in present.items():
            if name in self._chunks:
                continue
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe would never end a read
                    raise ValueError("not a regular file")
                table = pq.read_table(path, columns=["uid"])
            except FileNotFoundError:  # set aside by another driver a moment ago
                continue
            except (pa.ArrowException, OSError, ValueError, KeyError) as error:
                if isinstance(error, PermissionError):
                    raise
                self._set_aside(path, error)
                continue
            tag = (table.schema.metadata or {}).get(HASH_KEY)
            self._chunks[name] = (
                tag.decode() if tag else None,
                frozenset(table.column("uid").to_pylist()),
            )
        return self._chunks

    def _ours(self, name: str, tag: str | None) -> bool:
        if tag == self.digest or (tag is None and self.trust_untagged):
            return True
        if name not in self._foreign_noted:
            self._foreign_noted.add(name)
            self.log(
                f"{self.chunks_dir / name} was trained under another config (hash {tag or 'none'}, this sweep's "
                f"is {self.digest}): never used here; move it out of chunks/ to silence this"
            )
        return False

    def _set_aside(self, path: Path, error: BaseException) -> None:
        text = (str(error).splitlines() or [""])[0].replace(
            f"Could not open Parquet input source '{path}': ", ""
        )
        why = f"{type(error).__name__}: {text[:160]}"
        if self.read_only:
            self.log(
                f"{path} is damaged ({why}): skipped; rerun the sweep's command to set it aside and "
                "train its models again"
            )
            return
        self.corrupt_dir.mkdir(exist_ok=True)
        target = self.corrupt_dir / path.name
        while target.exists():
            target = target.with_name(f"{target.stem}.{secrets.token_hex(2)}.parquet")
        os.replace(path, target)
        self._chunks.pop(path.name, None)
        self.log(f"{path} is damaged ({why}): moved to {target}; its models are trained again")

    def _checked_rows(self, name: str) -> bool:
        """Whether chunk ``name``'s rows are what this sweep's rows must be (``sweeps.store.rows``);
        a chunk that is not is set aside (or, read-only, skipped) with one line."""
        if name in self._checked:
            return True
        path = self.chunks_dir / name
        try:
            check_rows(pq.read_table(path), self.rows)
        except FileNotFoundError:  # set aside by another driver a moment ago
            self._chunks.pop(name, None)
            return False
        except (pa.ArrowException, OSError, ValueError, KeyError) as error:  # DamagedRows too
            if isinstance(error, PermissionError):
                raise
            self._set_aside(path, error)
            self._chunks.pop(name, None)
            return False
        self._checked.add(name)
        return True

    def _our_chunks(self) -> list[tuple[str, frozenset[int]]]:
        """This sweep's chunk files whose rows check out, by name, with their model ids."""
        return [
            (name, ids)
            for name, (tag, ids) in sorted(self._scan().items())
            if self._ours(name, tag) and self._checked_rows(name)
        ]

    def done_uids(self) -> set[int]:
        """Models stored under this sweep's config hash, in chunks whose rows check out."""
        uids: set[int] = set()
        for _, ids in self._our_chunks():
            uids |= ids
        return uids

    def chunk_files(self, exclude: set[int] | frozenset[int] = frozenset()) -> list[Path]:
        """This sweep's chunk files, leaving out those holding any model of ``exclude``."""
        return [self.chunks_dir / name for name, ids in self._our_chunks() if not ids & exclude]

    def write_chunk(self, chunk_id: str, table: pd.DataFrame | pa.Table) -> None:
        """Store a finished chunk whole; its rows must be what a stored model's rows are (a
        ``DamagedRows`` error instead: never written, so never set aside on the next run).
        ``table``: the rows as a DataFrame, or as the Arrow table ``sweeps.jobs.rows_as_arrow`` makes."""
        path = self.chunks_dir / f"{chunk_id}.parquet"
        data = _arrow(table, self.digest)
        stored = pq.read_table(pa.BufferReader(data))
        check_rows(stored, self.rows)
        atomic_write(path, data)
        self._chunks[path.name] = (self.digest, frozenset(stored.column("uid").to_pylist()))
        self._checked.add(path.name)
        (self.failed_dir / f"{chunk_id}.json").unlink(missing_ok=True)

    def write_failure(self, chunk_id: str, error: BaseException, info: dict) -> None:
        record = dict(
            info,
            chunk=chunk_id,
            error=f"{type(error).__name__}: {error}",
            traceback="".join(traceback.format_exception(error)),
        )
        atomic_write(self.failed_dir / f"{chunk_id}.json", json.dumps(record, indent=1).encode())

    def failures(self) -> list[dict]:
        """The failure records (a damaged one is skipped: it is a note, never a result)."""
        records = []
        for path in sorted(self.failed_dir.glob("*.json")):
            try:
                record = json.loads(read_regular(path, 16 * 2**20))
            except (OSError, ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                records.append(dict(record, file=path.name))
        return records

    def clear_failures(self, stored: set[int]) -> None:
        """Remove the failure record of every chunk whose models are all stored now (trained again
        in other chunks, say); a chunk stored under its own id clears its record as it is written."""
        for record in self.failures():
            uids = record.get("uids")
            if (
                isinstance(uids, list)
                and uids
                and all(isinstance(u, int) for u in uids)
                and set(uids) <= stored
            ):
                (self.failed_dir / record["file"]).unlink(missing_ok=True)

    def table(self) -> pd.DataFrame:
        """Every model stored under this sweep's hash, once each, in plan order (grid, then seed)."""
        parts = []
        for path in self.chunk_files():
            try:
                parts.append(pd.read_parquet(path))
            except FileNotFoundError:  # set aside by a driver while a reader looked
                continue
            except (pa.ArrowException, OSError, ValueError) as error:  # damaged past its footer
                if isinstance(error, PermissionError):
                    raise
                self._set_aside(path, error)
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if len(table):
            table = (
                table.drop_duplicates("uid")
                .sort_values("order", kind="stable")
                .reset_index(drop=True)
            )
        return table

    def consolidate(self) -> pd.DataFrame:
        """Rebuild results.parquet from this sweep's chunk files."""
        table = self.table()
        atomic_write(self.root / RESULTS, _arrow(table, self.digest))
        return table


def read_stored(out: str | os.PathLike, log=_warning) -> tuple[pd.DataFrame, str]:
    """Every model a sweep's directory holds, and a line saying why the table is not simply a
    finished sweep's ``results.parquet`` ("" when it is). A sweep still running, killed, or with
    a damaged ``results.parquet`` is read from its finished chunks instead; nothing is written."""
    root = Path(out)
    if not (root / META).exists():
        raise FileNotFoundError(
            f"{root} holds no {META} or {RESULTS}: is it a sweep's output directory (sweep.out)?"
        )
    digest = verified_config_hash(root)  # an edited or damaged sweep.yaml is refused, naming it
    _, planned, _ = read_meta(root)
    store = SweepStore(root, log=log, read_only=True)
    store.digest, store.trust_untagged = digest, True
    store.rows = RowSchema.of_stored(read_config(root), root)
    of_planned = f" of {planned}" if planned else ""
    why, table = "", None
    try:
        if (root / RESULTS).exists() and not stat.S_ISREG(os.stat(root / RESULTS).st_mode):
            raise ValueError("not a regular file")
        table = pq.read_table(root / RESULTS)
        tag = (table.schema.metadata or {}).get(HASH_KEY)
        if tag and tag.decode() != digest:
            why, table = (
                f"its {RESULTS} was written under another config (hash {tag.decode()})",
                None,
            )
        else:
            check_rows(table, store.rows)
            table = table.to_pandas()
    except FileNotFoundError:
        why = f"it has no {RESULTS} yet (running, or stopped before the end)"
    except (pa.ArrowException, OSError, ValueError) as error:
        if isinstance(error, PermissionError):
            raise
        why = f"its {RESULTS} is damaged ({type(error).__name__}{': ' + str(error) if isinstance(error, DamagedRows) else ''})"
    in_chunks = store.done_uids()
    if table is not None and not in_chunks - set(table.get("uid", ())):
        short = planned is not None and len(table) < planned
        return table, (
            f"{root} is unfinished: it holds {len(table)}{of_planned} models; rerun the sweep's "
            "command to train the rest"
            if short
            else ""
        )
    if table is not None:
        why = f"its {RESULTS} is older than its chunks (running, or stopped before the end)"
    table = store.table()
    if table.empty:
        raise FileNotFoundError(f"{root}: {why}, and chunks/ holds no finished model yet")
    todo = "finish it" if planned is None or len(table) < planned else f"rebuild its {RESULTS}"
    return table, (
        f"{root}: {why}: drawing the {len(table)}{of_planned} models its finished chunks hold; "
        f"rerun the sweep's command to {todo}"
    )


def read_results(out: str | os.PathLike, arrays: bool = False) -> pd.DataFrame:
    """The stored sweep as one DataFrame (plain ``pandas.read_parquet`` works too). With
    ``arrays``, every list column (W, b, norms, snapshots, …) holds one numpy array per row."""
    table = pd.read_parquet(Path(out) / RESULTS)
    return with_arrays(table) if arrays else table


def with_arrays(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each list cell as a float numpy array of its full shape (a matrix stored as
    a list of rows, such as ``W``, as one 2-D array; a stack of matrices as a 3-D one); cells that are arrays already (vectors) or missing
    (``W2`` of a model without one) stay as they are."""
    out = table.copy()
    for column in table.columns:
        if table[column].dtype == object and table[column].map(_listlike).any():
            out[column] = [
                nested_array(cell) if _listlike(cell) else cell for cell in table[column]
            ]
    return out


def nested_array(cell) -> np.ndarray:
    """A stored cell of any depth (a vector, a matrix as rows, a stack of matrices such as a
    residual model's ``W_in`` or ``snap_layer_capacity``; nested lists, or the object arrays of
    arrays parquet gives back) as one float array of its full shape."""
    if (
        isinstance(cell, (list, tuple, np.ndarray))
        and len(cell)
        and isinstance(cell[0], (list, tuple, np.ndarray))
    ):
        return np.stack([nested_array(v) for v in cell])
    return np.asarray(cell, dtype=np.float64)


def _listlike(cell) -> bool:
    """A list, or the object array parquet reads a list of lists back as (a list of numbers comes
    back as a float array already)."""
    return isinstance(cell, list) or isinstance(cell, np.ndarray) and cell.dtype == object


def as_matrix(column) -> np.ndarray:
    """A column of equal-length (nested) lists as one stacked float array."""
    return np.stack([nested_array(v) for v in column])
