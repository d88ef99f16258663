"""Weights & Biases tracking of a sweep: offline by default, and never at the cost of a result.

The driver logs each chunk *after* its table is in the store, from that table, outside any
compiled code and outside the workers. One sweep is one wandb group, ``<name>-<sweep.out's
name>``; in it:

* one run per chunk (``job_type="chunk"``, id ``<config hash>-<out digest>-<chunk id>``): config =
  the resolved config plus the chunk's models (grid coordinates, seed, uid); history = the chunk's
  mean/min/max training loss against ``train_step``; ``curves`` = a line chart over a table of
  every model's snapshots (model, uid, coordinates, seed, step, loss); ``models`` = a table of
  per-model final metrics (coordinates, seed, loss, norms, capacity, interference); summary =
  aggregate numbers;
* with ``wandb.per_model=true`` (sweeps of at most ``wandb.per_model_limit`` models) one run per
  model instead (``job_type="model"``, id ``...-m<uid>``), its snapshots as history;
* one ``summary`` run (id ``...-figures``) that ``toymodels-figures`` fills with the figures and
  the whole sweep's ``models`` table once they are drawn (through ``sweeps.tracking.figure_log``).

Run ids are stable and ``resume="allow"``: a chunk logged again reuses its run. After a run has
finished (offline: once wandb's service has written the run's log whole, which it does after
``run.finish()`` returns), an empty marker ``<dir>/wandb/logged/<run id>`` records it: a rerun of the sweep logs
every stored chunk that has no marker (stored, then a crash or a wandb failure before it was
logged; or stored while tracking was disabled) and never logs a chunk twice. In offline mode an
unfinished earlier attempt's ``offline-run-*-<run id>`` directory is replaced, so each run id has
one directory to ``wandb sync``.

Any exception from wandb (not installed, its service failing, a full disk, no network or no
credentials online) becomes one ``TrackingWarning`` and turns tracking off for the rest of the
command; the store was written first and is never touched here.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweeps.config import Config, ConfigError, WandbConf
from sweeps.tracking import tables as wt

PER_FEATURE_HISTORY = 20  # per-model runs log norm/i and capacity/i when n_features <= this
_OFFLINE_DIR = re.compile(r"^offline-run-\d{8}_\d{6}-(?P<id>.+)$")


OFFLINE_LOG_WAIT = 60.0  # seconds wandb's service may take to write a finished offline run's log


def offline_log_complete(path: Path) -> bool:
    """Whether the wandb transaction log at ``path`` (``run-<id>.wandb``) is on disk whole: it holds
    the run's ``exit`` record, which a finished run writes after everything ``wandb sync`` needs.
    (Not "its last record": a record the service had queued, such as a system-stats sample, can
    land after it; under load that made the wait time out, leaving the run unmarked and tracking
    off for the rest of the command.)

    The log is LevelDB's log format after a 7-byte header: 32 KiB blocks of chunks, each with a
    7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last; 0 pads a block's end).
    wandb's service keeps the log's last, unfilled block in memory until it closes the run, which
    it does only after ``run.finish()`` has returned (the finish request does not wait for it), so
    a log read too early holds the header alone or stops at a block boundary."""
    from wandb.proto import wandb_internal_pb2

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    # wandb's protobuf classes are built at import from descriptors (no .pyi): mypy cannot see them
    parsed = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
    block, pos, record = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # too little room for a chunk header: the block ends in padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        record += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            parsed.ParseFromString(record)
            if parsed.WhichOneof("record_type") == "exit":
                return True
            record = b""
    return False


def wait_for_offline_log(path: Path, timeout: float = OFFLINE_LOG_WAIT) -> None:
    """Return once a finished offline run's log is whole on disk (``offline_log_complete``), so
    that the run is marked logged only when ``wandb sync`` would find all of it; a TimeoutError
    after ``timeout`` seconds (the run is then not marked, and a rerun logs it again)."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while not offline_log_complete(path):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"wandb's service did not write the run's log {path} within {timeout:g} s"
            )
        time.sleep(pause)
        pause = min(2 * pause, 0.2)


class TrackingWarning(UserWarning):
    """wandb failed; tracking is off for the rest of the command, every result is stored."""


def check_config(config: Config, n_models: int) -> None:
    """Refuse, before any compute, a per-model sweep larger than ``wandb.per_model_limit``."""
    w = config.wandb
    if w.per_model and n_models > w.per_model_limit:
        raise ConfigError(
            "wandb.per_model",
            f"one wandb run per model is for small sweeps: this one has {n_models} models, more than "
            f"wandb.per_model_limit={w.per_model_limit}; use wandb.per_model=false (one run per chunk) "
            "or raise wandb.per_model_limit",
        )


def group_name(name: str, out) -> str:
    """The sweep's wandb group: the experiment and the output directory."""
    return f"{name}-{Path(out).name}"


def sweep_key(config_hash: str, out) -> str:
    """Prefix of every run id of one sweep: its config hash and a digest of where it is stored
    (the same config in two output directories is two sweeps, two groups, distinct runs)."""
    where = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:6]
    return f"{config_hash}-{where}"


class Tracker:
    """Logs one sweep's runs; every public method is a no-op once disabled and never raises."""

    def __init__(
        self,
        conf: WandbConf,
        *,
        name: str,
        out,
        config_hash: str,
        config: dict,
        axes: list[str],
        stream=None,
    ):
        self.conf = conf
        self.mode = conf.mode
        self.enabled = conf.mode != "disabled"
        self.out = Path(out)
        self.dir = Path(conf.dir) if conf.dir else self.out
        self.wandb_dir = self.dir / "wandb"
        self.logged_dir = self.wandb_dir / "logged"
        self.group = group_name(name, out)
        self.key = sweep_key(config_hash, out)
        self.config_hash = config_hash
        self.config = config
        self.axes = list(axes)
        self.stream = stream if stream is not None else sys.stderr
        self.runs = 0  # runs finished by this tracker
        self.seconds = 0.0  # wall time spent in tracking
        self._wandb: Any = None  # the wandb module, imported when a run first needs it
        self._run: Any = None  # the open wandb run
        self._warming: threading.Thread | None = None
        self._warm_error: BaseException | None = None
        self._data_dir_set = False

    @classmethod
    def for_sweep(cls, config: Config, out, stream=None) -> Tracker:
        from omegaconf import OmegaConf

        from sweeps.store import config_hash

        resolved: Any = OmegaConf.to_container(OmegaConf.structured(config), resolve=True)
        return cls(
            config.wandb,
            name=config.name,
            out=out,
            config_hash=config_hash(config),
            config=resolved,
            axes=list(config.sweep.grid),
            stream=stream,
        )

    # -- failure handling ---------------------------------------------------------------------

    @contextmanager
    def _guard(self, what: str):
        start = time.perf_counter()
        try:
            yield
        except Exception as error:  # wandb failing must never fail the sweep
            self._fail(what, error)
        finally:
            self.seconds += time.perf_counter() - start

    def _fail(self, what: str, error: BaseException) -> None:
        self.enabled = False
        run, self._run = self._run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:
                pass
        self._restore_env()
        warnings.warn(
            f"wandb tracking is off for the rest of this command ({what}: {type(error).__name__}: {error}); "
            f"every result is stored in {self.out}; rerun the same command to log what was missed, "
            "or set wandb.mode=disabled",
            TrackingWarning,
            stacklevel=4,
        )

    # -- runs -----------------------------------------------------------------------------------

    def prewarm(self) -> None:
        """Import wandb and start its service in the background while the first chunk trains
        (about 1.5 s that would otherwise delay the first chunk's logging)."""
        if not self.enabled or self._wandb is not None or self._warming is not None:
            return

        def warm():
            try:
                import wandb

                wandb.setup()
                for name in (
                    "wandb.apis.public",
                    "wandb.sdk.launch",
                ):  # what the first wandb.init imports
                    importlib.import_module(name)
            except BaseException as error:  # reported by the first run that needs wandb
                self._warm_error = error

        self._warming = threading.Thread(target=warm, name="wandb-prewarm", daemon=True)
        self._warming.start()

    def _marker(self, run_id: str) -> Path:
        return self.logged_dir / run_id

    def is_logged(self, run_id: str) -> bool:
        return self._marker(run_id).exists()

    def _start(self, run_id: str, name: str, job_type: str, config: dict):
        if self._wandb is None:
            if self._warming is not None:
                self._warming.join()
                if self._warm_error is not None:
                    raise self._warm_error
            import wandb

            self._wandb = wandb
        wandb = self._wandb
        self.logged_dir.mkdir(parents=True, exist_ok=True)  # also: is the directory writable?
        if (
            self.mode == "offline"
        ):  # an earlier attempt that never finished: one directory per run id
            for old in self.wandb_dir.glob("offline-run-*"):
                match = _OFFLINE_DIR.match(old.name)
                if match and match.group("id") == run_id and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        # wandb stages every logged table (as a run_table artifact) under WANDB_DATA_DIR, by default
        # in the home directory, where an offline run's staged files would pile up until synced:
        # keep them with the runs instead, unless the environment chose a place.
        if "WANDB_DATA_DIR" not in os.environ:
            os.environ["WANDB_DATA_DIR"] = str((self.wandb_dir / "data").resolve())
            self._data_dir_set = True
        self._run = wandb.init(
            project=self.conf.project,
            entity=self.conf.entity,
            dir=str(self.dir),
            id=run_id,
            name=name,
            group=self.group,
            job_type=job_type,
            config=config,
            mode=self.mode,  # type: ignore[arg-type]  # one of WANDB_MODES, validated
            resume="allow",
            reinit="create_new",  # never touches a run the caller may have open
            settings=wandb.Settings(
                console="off",
                silent=True,
                x_disable_stats=True,
                save_code=False,
                disable_job_creation=True,
                x_save_requirements=False,
            ),
        )
        return self._run

    def _finish(self, run_id: str) -> None:
        run, self._run = self._run, None
        log = run.settings.sync_file if self.mode == "offline" else None
        run.finish()
        self._restore_env()
        if log is not None:
            wait_for_offline_log(Path(log))
        self._marker(run_id).write_text(f"{self.mode}\n")
        self.runs += 1

    def _restore_env(self) -> None:
        if self._data_dir_set:
            os.environ.pop("WANDB_DATA_DIR", None)
            self._data_dir_set = False

    # -- what a sweep logs ----------------------------------------------------------------------

    def _run_config(self, **extra) -> dict:
        """What every run's config holds: the resolved config, its hash and where it is stored."""
        return dict(
            self.config, config_hash=self.config_hash, sweep_out=str(self.out.resolve()), **extra
        )

    def chunk_run_id(self, chunk_id: str) -> str:
        return f"{self.key}-{chunk_id}"

    def model_run_id(self, uid: int) -> str:
        return f"{self.key}-m{int(uid)}"

    def log_chunk(self, chunk_id: str, table: pd.DataFrame) -> None:
        """Log one stored chunk (its run(s), unless already logged)."""
        run_id = self.chunk_run_id(chunk_id)
        if not self.enabled:
            return
        with self._guard(f"logging chunk {chunk_id}"):
            if self.is_logged(run_id):
                return
            if self.conf.per_model:
                for _, row in table.iterrows():
                    self._log_model(chunk_id, row)
            else:
                self._log_chunk(chunk_id, run_id, table)
            self._marker(run_id).write_text(f"{self.mode}\n")  # the chunk is logged whole

    def log_stored(self, chunk_files: Iterable[Path]) -> None:
        """Log every stored chunk that has no marker: stored before a crash or a wandb failure, or
        while tracking was disabled."""
        if not self.enabled:
            return
        try:
            todo = [p for p in sorted(chunk_files) if not self.is_logged(self.chunk_run_id(p.stem))]
        except Exception as error:
            self._fail("looking for unlogged chunks", error)
            return
        for path in todo:
            if not self.enabled:
                return
            try:
                table = pd.read_parquet(path)
            except Exception as error:  # not ours to judge the store; just do not log it
                warnings.warn(
                    f"wandb: cannot read {path} ({error}); not logged",
                    TrackingWarning,
                    stacklevel=2,
                )
                continue
            self.log_chunk(path.stem, table)

    def _models(self, table: pd.DataFrame) -> list[dict]:
        axes = [a for a in self.axes if a in table.columns]
        return [
            dict({a: wt.plain(r[a]) for a in axes}, seed=int(r["seed"]), uid=int(r["uid"]))
            for r in table[axes + ["seed", "uid"]].to_dict("records")
        ]

    def _log_chunk(self, chunk_id: str, run_id: str, table: pd.DataFrame) -> None:
        axes = [a for a in self.axes if a in table.columns]
        config = self._run_config(
            chunk={
                "id": chunk_id,
                "n_models": len(table),
                "axes": axes,
                "models": self._models(table),
            }
        )
        run = self._start(run_id, f"chunk-{chunk_id}", "chunk", config)
        wandb = self._wandb
        n = len(table)
        labels = [
            wt.label({a: wt.plain(c) for a, c in zip(axes, coords)}, s)
            for coords, s in zip(table[axes].itertuples(index=False, name=None), table["seed"])
        ]
        coords = [
            [wt.plain(v) for v in row] for row in table[axes].itertuples(index=False, name=None)
        ]
        seeds = [int(s) for s in table["seed"]]
        uids = [int(u) for u in table["uid"]]
        losses = [float(v) for v in table["loss"]]
        summary = {
            "n_models": n,
            "loss_mean": float(np.mean(losses)),
            "loss_min": float(np.min(losses)),
            "loss_max": float(np.max(losses)),
            "chunk_seconds": float(table["train_seconds"].sum()),
            "model_steps": int(table["steps"].sum()),
            "chunk": chunk_id,
            "config_hash": self.config_hash,
        }

        if self.conf.log_curves and "snap_loss" in table.columns:
            steps = [int(s) for s in table["snap_step"].iloc[0]]
            loss_SxM = np.array([list(v) for v in table["snap_loss"]], dtype=np.float64).T
            run.define_metric("train_step")
            run.define_metric("loss/*", step_metric="train_step")
            for step, row in zip(steps, loss_SxM):
                run.log(
                    {
                        "train_step": step,
                        "loss/mean": float(np.mean(row)),
                        "loss/min": float(np.min(row)),
                        "loss/max": float(np.max(row)),
                    }
                )
            # one row per model and snapshot, thinned evenly (first and last kept) to wandb's row limit
            keep = wt.thin(len(steps), wt.MAX_TABLE_ROWS // max(n, 1))
            if keep:
                rows = [
                    [labels[m], uids[m], *coords[m], seeds[m], steps[s], float(loss_SxM[s, m])]
                    for m in range(n)
                    for s in keep
                ]
                curves = wt.table(wandb, ["model", "uid", *axes, "seed", "step", "loss"], rows)
                run.log(
                    {
                        "curves": wandb.plot_table(
                            "wandb/lineseries/v0",
                            curves,
                            {"step": "step", "lineKey": "model", "lineVal": "loss"},
                            {"title": "training loss per model", "xname": "step"},
                        )
                    }
                )
            summary["curve_points_per_model"] = len(keep)

        measured = wt.measures_of(table)
        rows = [
            [
                labels[m],
                uids[m],
                *coords[m],
                seeds[m],
                losses[m],
                *(wt.plain(table[c].iloc[m]) for c in measured),
            ]
            for m in range(min(n, wt.MAX_TABLE_ROWS))
        ]
        run.log(
            {"models": wt.table(wandb, ["model", "uid", *axes, "seed", "loss", *measured], rows)}
        )
        run.summary.update(summary)
        self._finish(run_id)

    def _log_model(self, chunk_id: str, row: pd.Series) -> None:
        run_id = self.model_run_id(row["uid"])
        if self.is_logged(run_id):
            return
        coords = {a: wt.plain(row[a]) for a in self.axes if a in row.index}
        point = dict(coords, seed=int(row["seed"]), uid=int(row["uid"]), chunk=chunk_id)
        run = self._start(
            run_id, wt.label(coords, int(row["seed"])), "model", self._run_config(grid=point)
        )
        if self.conf.log_curves and "snap_loss" in row.index:
            run.define_metric("train_step")
            for pattern in ("loss", "norm/*", "capacity/*"):
                run.define_metric(pattern, step_metric="train_step")
            per_feature = (
                int(row["n_features"]) <= PER_FEATURE_HISTORY and "snap_norms" in row.index
            )
            for i, step in enumerate(row["snap_step"]):
                metrics = {"train_step": int(step), "loss": float(row["snap_loss"][i])}
                if per_feature:
                    metrics.update(
                        {f"norm/{f}": float(v) for f, v in enumerate(row["snap_norms"][i])}
                    )
                    metrics.update(
                        {f"capacity/{f}": float(v) for f, v in enumerate(row["snap_capacity"][i])}
                    )
                run.log(metrics)
        run.summary.update(
            dict(
                point,
                loss=float(row["loss"]),
                train_seconds=float(row["train_seconds"]),
                **{c: wt.plain(row[c]) for c in wt.measures_of(row.index)},
            )
        )
        self._finish(run_id)

    def log_figures(self, paths: Iterable[Path], table: pd.DataFrame | None = None) -> None:
        """The sweep's summary run: its figures (PNG) and, given the results, every model's final
        loss in one table (the first 10,000 models)."""
        if not self.enabled:
            return
        run_id = f"{self.key}-figures"
        with self._guard("logging the figures"):
            run = self._start(run_id, "figures", "summary", self._run_config())
            wandb = self._wandb
            data = {Path(p).stem: wandb.Image(str(p)) for p in paths if Path(p).suffix == ".png"}
            if table is not None and len(table):
                axes = [a for a in self.axes if a in table.columns]
                part = table.iloc[: wt.MAX_TABLE_ROWS]
                # scalars only (the chunk runs hold the per-feature lists): one cell costs wandb ~10 µs
                rows = [
                    [
                        wt.label({a: wt.plain(r[a]) for a in axes}, int(r["seed"])),
                        int(r["uid"]),
                        *[wt.plain(r[a]) for a in axes],
                        int(r["seed"]),
                        float(r["loss"]),
                        str(r["chunk"]),
                    ]
                    for r in part[axes + ["seed", "uid", "loss", "chunk"]].to_dict("records")
                ]
                data["models"] = wt.table(
                    wandb, ["model", "uid", *axes, "seed", "loss", "chunk"], rows
                )
                run.summary.update(
                    {
                        "n_models": len(table),
                        "loss_mean": float(table["loss"].mean()),
                        "loss_min": float(table["loss"].min()),
                    }
                )
            run.log(data)
            self._finish(run_id)

    def close(self) -> None:
        """One line on where the runs are (nothing when none was logged)."""
        if not self.runs:
            return
        if self.mode == "offline":
            where = (
                f"offline in {self.wandb_dir}; upload: wandb sync {self.wandb_dir}/offline-run-*"
            )
        else:
            where = f"to project {self.conf.project}"
        try:
            print(
                f"wandb: {self.runs} run(s) of group {self.group} logged {where} ({self.seconds:.1f}s)",
                file=self.stream,
                flush=True,
            )
        except Exception:
            pass
