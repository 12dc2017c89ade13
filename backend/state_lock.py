"""One daemon per state directory: an exclusive ``flock`` on ``<state-dir>/daemon.lock``.

Two daemons on one directory would both adopt the same workloads, enforce the cap
separately and delete each other's live sessions as orphans, so the first to start holds
the lock for its life and any other exits naming it (pid from the lock file, address from
``api-url``). ``flock`` belongs to the open file, and the kernel drops it when the holder
dies, however it dies: a lock left by a ``kill -9`` never blocks a restart, and no
pid-liveness guessing is needed.

Within one process the lock is counted, not retaken: the command line takes it before it
binds a port, and the ``Backend`` it starts takes it again before opening the store (a
second ``flock`` on a new file description would conflict with our own).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from backend.errors import PodwardenError

__all__ = ["LOCK_FILE", "StateDirInUse", "StateLock", "hold_state_dir"]

LOCK_FILE = "daemon.lock"
_ADDRESS_FILE = "api-url"  # written by the daemon while it serves (backend.api.listen)


class StateDirInUse(PodwardenError):
    """Another podwarden process holds the state directory (exit code 2)."""

    def __init__(self, state_dir: Path, pid: str, url: str) -> None:
        where = f" at {url}" if url else " (no API address recorded)"
        super().__init__(
            f"state directory {state_dir} is in use by podwarden pid {pid or '?'}{where}; "
            "stop it first or use another --state-dir"
        )


_held: dict[Path, tuple[int, int]] = {}  # resolved dir -> (fd, holders)
_guard = threading.Lock()


class StateLock:
    """One holder's share of the process's lock on a state directory."""

    def __init__(self, key: Path) -> None:
        self._key: Path | None = key

    def release(self) -> None:
        """Give up this share; the lock itself goes with the last one."""
        with _guard:
            if self._key is None:
                return
            fd, holders = _held[self._key]
            if holders > 1:
                _held[self._key] = (fd, holders - 1)
            else:
                del _held[self._key]
                os.close(fd)
            self._key = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold_state_dir(state_dir: str | Path) -> StateLock:
    """Take (or share) the lock on ``state_dir``, made 0700 (it holds the token, the store
    and the sessions' files); ``StateDirInUse`` when another process holds it."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = directory.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():  # made by hand or long ago
        directory.chmod(0o700)
    key = directory.resolve()
    with _guard:
        if key in _held:
            fd, holders = _held[key]
            _held[key] = (fd, holders + 1)
            return StateLock(key)
        path = key / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirInUse(key, _read(path), _read(key / _ADDRESS_FILE)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = (fd, 1)
        return StateLock(key)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
