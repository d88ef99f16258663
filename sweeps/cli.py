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
DEFAULT_EXPERIMENT = "tms_intro"  # conf/config.yaml's defaults list


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


def check_group_options(overrides: list[str]) -> None:
    """Refuse ``experiment=no_such`` (any config group's unknown option) in one line, with the
    closest names, before Hydra prints its list of every option."""
    import difflib

    for item in overrides:
        if "=" not in item or item.startswith("~"):
            continue
        key, value = item.split("=", 1)
        group = key.lstrip("+")
        folder = CONF_DIR / group
        if "." in group or not folder.is_dir() or value in ("null", ""):
            continue
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        if value not in names and not (folder / f"{value}.yaml").is_file():
            close = sorted(names, key=lambda n: -difflib.SequenceMatcher(None, value, n).ratio())[
                :3
            ]
            raise ConfigError(
                group,
                f"no {group} {value!r} ({folder / value}.yaml does not exist); closest: "
                f"{', '.join(close)} ({len(names)} in all, one file each)",
            )


def expand_option_keys(overrides: list[str]) -> list[str]:
    """``model.options.NAME=v`` and ``data.options.NAME=v`` as the docs write them: added or
    replaced (``++``), since a kind's options are keys the schema cannot list."""
    out = []
    for item in overrides:
        key = item.split("=", 1)[0]
        if (
            "=" in item
            and key.split(".")[:2] in (["model", "options"], ["data", "options"])
            and key.count(".") >= 2
        ):
            item = "++" + item
        out.append(item)
    return out


def prepare_overrides(overrides: list[str]) -> list[str]:
    """The command line's overrides as Hydra will compose them: grid generators quoted
    (``sweep.grid.density=geomspace(0.01, 1, 40)`` as documented), kind options added or replaced,
    unknown keys and unknown group options (``experiment=no_such``) refused."""
    overrides = expand_option_keys(quote_grid_generators(overrides))
    check_override_keys(overrides)
    check_group_options(overrides)
    return overrides


def names_experiment(overrides: list[str]) -> bool:
    """Whether the command line chooses the experiment (``experiment=X``, or ``~experiment``: none)."""
    return any(item.split("=", 1)[0].lstrip("+~") == "experiment" for item in overrides)


def composition_error(error: Exception) -> ConfigError:
    """Hydra's composition error (a value of the wrong type, an override it cannot parse) as one
    line naming the override."""
    lines = [
        line.strip()
        for line in str(error).splitlines()
        if line.strip() and not line.startswith("See https")
    ]
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    text = "; ".join(dict.fromkeys(lines)) or type(error).__name__
    import re

    match = re.search(r"override '?([\w.+~]+)=", text) or re.search(r"at '([\w.]+)'", text)
    return ConfigError(match[1].lstrip("+~") if match else "override", text)


# Looked up by OSError.errno, which is None for an error raised without one.
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
    """Before Hydra runs: compose the config once, refuse a bad value (one line), and make sure
    ``sweep.out`` can be written, creating nothing (a refused run leaves nothing behind)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sweeps.config import to_config

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise composition_error(error) from None
    check_writable(Path(to_config(cfg).sweep.out))


def check_writable(out: Path) -> None:
    """``out``, or the directory it would be created in, takes a file: a probe is written there
    and removed at once; no directory is created."""
    where = out
    while not where.exists() and where != where.parent:
        if where.is_symlink():  # a dangling link: mkdir would fail on it
            break
        where = where.parent
    probe = where / f".write-test.{os.getpid()}.tmp"
    try:
        if not where.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(where))
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        error.filename = str(out)  # not the probe's name
        raise ConfigError(
            "sweep.out", f"cannot write {io_error_line(error, 'choose another sweep.out')}"
        ) from None


def write_command_record(root: Path, cfg) -> None:
    """``sweep.out/.hydra/``: the composed config and the command line's overrides, as Hydra
    wrote them, once the store has accepted this run (a refused run writes nothing)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from sweeps.store import atomic_write

    record = root / ".hydra"
    if record.is_symlink() or (
        record.exists() and not record.is_dir()
    ):  # never written through a link
        print(
            f"warning: {record} is not a directory of this store: the command's record is not written",
            file=sys.stderr,
        )
        return
    record.mkdir(exist_ok=True)
    hydra = HydraConfig.get()
    atomic_write(record / "config.yaml", OmegaConf.to_yaml(cfg).encode())
    atomic_write(record / "overrides.yaml", OmegaConf.to_yaml(hydra.overrides.task).encode())
    atomic_write(
        record / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra})).encode()
    )


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
        report = run_sweep(to_config(cfg), on_prepared=lambda root: write_command_record(root, cfg))
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
    # An SAE or SPD sweep on a stored toy sweep (+sae=toy, +spd=toy) trains nothing of the default
    # experiment's models: the note would only mislead there.
    on_stored = any(a.startswith(("+sae=", "+spd=")) for a in sys.argv[1:])
    if not (
        names_experiment(sys.argv[1:]) or on_stored or any(a.startswith("-") for a in sys.argv[1:])
    ):
        print(
            f"toymodels-sweep: note: no experiment= given: running the default, experiment={DEFAULT_EXPERIMENT} "
            "(conf/config.yaml); name one with experiment=NAME (conf/experiment/)",
            file=sys.stderr,
            flush=True,
        )
    try:
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
        register_schema()
        if not any(
            a.startswith("-") for a in sys.argv[1:]
        ):  # Hydra's own flags (--help, --cfg job): Hydra's
            check_output(sys.argv[1:])
    except ConfigError as error:
        print(f"toymodels-sweep: error: {error}", file=sys.stderr)
        sys.exit(2)
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)(_task)()


if __name__ == "__main__":
    main()
