"""``toymodels-sweep``: compose a Hydra config, validate it, and run the sweep.

toymodels-sweep experiment=tms_intro sweep.seeds=5 train.steps=5000
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import sys
import typing
from pathlib import Path
from typing import Any

from sweeps.config import CONF_DIR, Config, ConfigError, quote_grid_generators, register_schema

GROUPS = ("model", "data", "train", "sweep", "ray", "wandb", "experiment")


def check_override_keys(overrides: list[str], schema=Config) -> None:
    """Refuse an unknown key before Hydra runs, listing the keys that are allowed there."""
    for item in overrides:
        if item.startswith("-") or "=" not in item:
            continue
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra") or key in GROUPS:
            continue
        node: Any = schema
        path: list[str] = []
        for part in key.split("."):
            fields = {f.name: f for f in dataclasses.fields(node)}
            if part not in fields:
                where = f" under {'.'.join(path)}" if path else ""
                raise ConfigError(key, f"unknown key; allowed{where}: {', '.join(fields)}")
            path.append(part)
            hints = typing.get_type_hints(node)
            node = hints[part]
            if typing.get_origin(node) is typing.Union:  # Optional[SaeConf]: the section's own keys
                node = next((a for a in typing.get_args(node) if dataclasses.is_dataclass(a)), node)
            if not dataclasses.is_dataclass(node):
                break  # a leaf or a free-form dict (sweep.grid.<axis>): values are validated later


def prepare_overrides(overrides: list[str]) -> list[str]:
    """The command line's overrides as Hydra will compose them: grid generators quoted
    (``sweep.grid.density=geomspace(0.01, 1, 40)`` as documented), unknown keys refused."""
    overrides = quote_grid_generators(overrides)
    check_override_keys(overrides)
    return overrides


_ADVICE: dict[int | None, str] = {
    errno.ENOSPC: "free some space or choose another sweep.out",
    errno.EDQUOT: "free some of your quota or choose another sweep.out",
    errno.EFBIG: "the file size limit (ulimit -f) is too small for it",
    errno.EACCES: "choose a directory you may write (sweep.out=DIR)",
    errno.EPERM: "choose a directory you may write (sweep.out=DIR)",
    errno.EROFS: "the filesystem is read-only: choose another sweep.out",
    errno.ENOTDIR: "a file stands where a directory is needed: choose another sweep.out",
}


def io_error_line(
    error: OSError, default: str = "check that path, or choose another sweep.out"
) -> str:
    """An OSError as one line: the path, what happened, what to do."""
    return f"{error.filename or '(no path)'}: {error.strerror or error}; {_ADVICE.get(error.errno, default)}"


def check_output(overrides: list[str]) -> None:
    """Before Hydra runs (it creates sweep.out first, with a traceback when it cannot): compose
    the config once, refuse a bad value, and make sure ``sweep.out`` can be written."""
    from hydra import compose, initialize_config_dir

    from sweeps.config import to_config

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose(config_name="config", overrides=overrides)
    except Exception:  # noqa: BLE001 - a Hydra error (an unknown experiment, say): Hydra reports it below, as always
        return
    out = Path(to_config(cfg).sweep.out)
    probe = out / f".write-test.{os.getpid()}.tmp"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        error.filename = str(out)  # not the probe's name
        raise ConfigError(
            "sweep.out", f"cannot write {io_error_line(error, 'choose another sweep.out')}"
        ) from None


class _CtrlC:
    """The first Ctrl-C stops the sweep (KeyboardInterrupt); later ones only say that it is
    stopping, so that storing what finished and shutting down Ray are never cut short."""

    def __init__(self):
        self.presses = 0

    def __call__(self, signum, frame):
        self.presses += 1
        if self.presses == 1:
            raise KeyboardInterrupt
        if self.presses == 2:
            print(
                "\nstill stopping: storing what finished and shutting down Ray, a moment",
                file=sys.stderr,
                flush=True,
            )


def _task(cfg) -> None:
    import logging

    from sweeps.config import to_config
    from sweeps.runner import run_sweep

    logging.getLogger("jax").setLevel(logging.WARNING)  # not the "no TPU found" notice
    signal.signal(signal.SIGINT, _CtrlC())
    try:
        report = run_sweep(to_config(cfg))
    except ConfigError as error:  # a bad value, or an output directory holding another sweep
        print(f"toymodels-sweep: error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # a full disk, a directory that cannot be written
        print(
            f"toymodels-sweep: error: {io_error_line(error)}; every chunk stored so far is kept, rerun the "
            "same command to resume",
            file=sys.stderr,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        # Ignored, not default, from here: Python restores a handler of its own to the default on
        # its way out, and a press landing then would kill the process instead of exiting 130.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(
            "\ninterrupted: every finished chunk is stored; rerun the same command to resume",
            file=sys.stderr,
        )
        sys.exit(130)
    print(report.summary())
    if not report.ok:
        sys.exit(1)


def main() -> None:
    import hydra

    if not (CONF_DIR / "config.yaml").exists():
        print(
            f"toymodels-sweep: error: no config at {CONF_DIR}: install from the repository with "
            "'pip install -e .' (scripts/setup does) or point TOYMODELS_CONF at its conf/",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
        register_schema()
        check_output(sys.argv[1:])
    except ConfigError as error:
        print(f"toymodels-sweep: error: {error}", file=sys.stderr)
        sys.exit(2)
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)(_task)()


if __name__ == "__main__":
    main()
