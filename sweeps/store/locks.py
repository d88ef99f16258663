"""Who may touch a sweep's store: an exclusive lock for short steps, and each driver's claim.

Both are ``flock(2)`` locks on files in ``sweep.out``, so the OS releases them when the process
holding them ends, however it ends (kill -9 included): a dead driver never blocks a live one.

* ``StoreLock`` (``sweep.out/.lock``) is held for a moment around each step that reads and then
  writes the store's shared state: checking and writing ``sweep.yaml``, choosing which models to
  train and claiming them, consolidating.
* A ``Claim`` (``sweep.out/claims/<host>-<pid>-<token>.json``) lists the models one driver is
  training and stays locked while that driver lives. Another driver on the same store leaves
  those models alone; a claim file whose lock it can take belongs to a dead driver and is removed.

On a filesystem where flock is refused (some network filesystems), one warning is printed and
the store goes on without locks; docs/store.md says what still holds then.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Self

try:
    import fcntl
except ImportError:  # no flock (Windows): no locking, as on a filesystem that refuses it
    fcntl = None  # type: ignore[assignment]

_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_warned: set[str] = set()


def _warn_unsupported(path: Path, error: OSError | None) -> None:
    where = str(path.parent)
    if where not in _warned:
        _warned.add(where)
        why = f"{error.strerror}" if error else "no flock on this system"
        print(
            f"warning: cannot lock files in {where} ({why}): two toymodels-sweep runs on this sweep.out at "
            "once are not kept apart (docs/store.md)",
            file=sys.stderr,
        )


def _try_lock(fd: int, path: Path, block: bool) -> bool | None:
    """True: locked; False: another process holds it; None: this filesystem has no flock."""
    if fcntl is None:
        _warn_unsupported(path, None)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in _UNSUPPORTED:
            _warn_unsupported(path, error)
            return None
        raise
    return True


class StoreLock:
    """``with StoreLock(root):`` waits for, then holds, the store's exclusive lock."""

    def __init__(self, root: Path):
        self.path = Path(root) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> Self:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _try_lock(self._fd, self.path, block=True)
        except BaseException:
            os.close(self._fd)
            raise
        return self

    def __exit__(self, *exc) -> None:
        assert self._fd is not None  # set by __enter__
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None


class Claim:
    """This driver's claim on the models it trains; locked from creation until ``release``."""

    def __init__(self, claims_dir: Path):
        claims_dir.mkdir(exist_ok=True)
        host = socket.gethostname().split(".")[0] or "host"
        self.path = claims_dir / f"{host}-{os.getpid()}-{secrets.token_hex(3)}.json"
        self._file = open(self.path, "w+")  # noqa: SIM115 - held open (and locked) until release
        _try_lock(self._file.fileno(), self.path, block=False)
        self.uids: frozenset[int] = frozenset()
        self.hold(())

    def hold(self, uids) -> None:
        """Claim exactly ``uids`` (call with the store lock held, so readers see it whole)."""
        self.uids = frozenset(int(u) for u in uids)
        self._file.seek(0)
        self._file.truncate()
        json.dump(
            {"pid": os.getpid(), "host": socket.gethostname(), "uids": sorted(self.uids)},
            self._file,
        )
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            self.path.unlink(missing_ok=True)
            self._file.close()


def claims_of_others(
    claims_dir: Path, own: Claim | None = None
) -> dict[str, frozenset[int]] | None:
    """The models claimed by other live drivers, by claim file name; removes dead drivers' claims.
    None where flock is refused (no claim can be told live from dead). Call with the store lock held."""
    live: dict[str, frozenset[int]] = {}
    for path in sorted(claims_dir.glob("*.json")) if claims_dir.is_dir() else []:
        if own is not None and path == own.path:
            continue
        try:
            if (
                not path.is_file()
            ):  # only a regular file is a claim (a pipe would block this driver)
                continue
            handle = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            continue
        with handle:
            state = _try_lock(handle.fileno(), path, block=False)
            if state is None:
                return None
            if state:  # we could take its lock: the driver that wrote it is gone
                path.unlink(missing_ok=True)
                continue
            try:
                live[path.name] = frozenset(json.loads(handle.read() or b"{}").get("uids", ()))
            except ValueError:
                live[path.name] = (
                    frozenset()
                )  # being created right now (its holder writes under the store lock)
    return live
