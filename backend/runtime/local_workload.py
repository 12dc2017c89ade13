"""One local workload: its record on disk, its exit watch and its log tail.

Split from ``local.py`` so the runtime reads as policy (start, ready, stop, recover) and
this module as mechanism (``workload.json``, pidfd, reaping, following a log file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.logs import SessionLogs
from backend.models import WorkloadHandle
from backend.runtime.base import WorkloadSpec
from backend.runtime.procs import read_proc

__all__ = ["LogTail", "Workload", "read_log_tail"]

log = logging.getLogger(__name__)

META_VERSION = 1
_MAX_LINE = 2000
"""Characters kept of one log line."""
_TRIM_AT = 16 << 20
"""Bytes of a workload's log read since the last trim after which it is trimmed."""
_TRIM_KEEP = 1 << 20
"""Bytes at the end of a log that a trim keeps on disk (for error messages)."""
_DETACHED: list[subprocess.Popen[bytes]] = []
"""Children left running when a runtime closes: kept referenced so that Python does not
warn about (or try to reap) them; a later runtime adopts and reaps them."""


@dataclass(eq=False)
class Workload:
    """What the runtime knows about one workload process group."""

    session_id: str
    user: str
    template: str
    pid: int
    pgid: int
    start_ticks: int
    host: str
    port: int
    rundir: Path
    workdir: Path
    readiness: str = "tcp"
    readiness_path: str = "/"
    keepalive_path: str = ""
    proc: subprocess.Popen[bytes] | None = None
    """Set when the workload is our child (started by this process)."""
    exit_code: int | None = None
    ready: bool = False
    stopping: bool = False
    stop_task: asyncio.Future[Any] | None = None
    tail: LogTail | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    _pidfd: int | None = None
    _poll_task: asyncio.Task[None] | None = None

    @property
    def log_path(self) -> Path:
        return self.rundir / "workload.log"

    # -- identity

    def handle(self) -> WorkloadHandle:
        return WorkloadHandle(
            runtime="local",
            ref=str(self.pid),
            host=self.host,
            port=self.port,
            extra={
                "session_id": self.session_id,
                "pgid": str(self.pgid),
                "start_ticks": str(self.start_ticks),
                "rundir": str(self.rundir),
                "workdir": str(self.workdir),
            },
        )

    def running(self) -> bool:
        """True while our process (same pid, start time and group) runs."""
        if self.exited.is_set():
            return False
        info = read_proc(self.pid)
        return (
            info is not None
            and not info.zombie
            and info.start_ticks == self.start_ticks
            and info.pgid == self.pgid
        )

    def owns_group(self) -> bool:
        """Whether signalling group ``pgid`` reaches our processes and nobody else's.

        While the leader lives it must be ours (same start time). Once it is gone, any
        process still in the group is ours: Linux does not hand out a number that is
        still some group's id.
        """
        leader = read_proc(self.pgid)
        if leader is None or not self.start_ticks:
            return True
        if leader.pid == self.pid and leader.start_ticks == self.start_ticks:
            return True
        return leader.pgid != self.pgid  # a new process took the number, not as a group

    # -- the record on disk

    def to_meta(self) -> dict[str, Any]:
        return {
            "version": META_VERSION,
            "runtime": "local",
            "session_id": self.session_id,
            "user": self.user,
            "template": self.template,
            "pid": self.pid,
            "pgid": self.pgid,
            "start_ticks": self.start_ticks,
            "host": self.host,
            "port": self.port,
            "workdir": str(self.workdir),
            "readiness": self.readiness,
            "readiness_path": self.readiness_path,
            "keepalive_path": self.keepalive_path,
            "written_at": time.time(),
        }

    def write_meta(self) -> None:
        """Write ``workload.json`` atomically (readable by the owner only)."""
        path = self.rundir / "workload.json"
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.to_meta(), f)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Workload | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                session_id=str(data["session_id"]),
                user=str(data["user"]),
                template=str(data["template"]),
                pid=int(data["pid"]),
                pgid=int(data["pgid"]),
                start_ticks=int(data["start_ticks"]),
                host=str(data["host"]),
                port=int(data["port"]),
                rundir=path.parent,
                workdir=Path(data.get("workdir") or path.parent),
                readiness=str(data.get("readiness", "tcp")),
                readiness_path=str(data.get("readiness_path", "/")),
                keepalive_path=str(data.get("keepalive_path", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def from_handle(cls, handle: WorkloadHandle, sessions_dir: Path) -> Workload:
        """A workload known only by its handle (e.g. restored from the store)."""
        extra = handle.extra
        session_id = extra.get("session_id", "")
        rundir = Path(extra.get("rundir") or sessions_dir / session_id)
        recorded = cls.load(rundir / "workload.json")
        if recorded is not None and str(recorded.pid) == handle.ref:
            return recorded
        pid = int(handle.ref)
        return cls(
            session_id=session_id,
            user=extra.get("user", ""),
            template=extra.get("template", ""),
            pid=pid,
            pgid=int(extra.get("pgid") or pid),
            start_ticks=int(extra.get("start_ticks") or 0),
            host=handle.host,
            port=handle.port,
            rundir=rundir,
            workdir=Path(extra.get("workdir") or rundir),
        )

    @classmethod
    def from_environ(
        cls, pid: int, start_ticks: int, env: dict[str, str], host: str
    ) -> Workload | None:
        """A workload found by its environment marker, with no record on disk."""
        try:
            return cls(
                session_id=env["PODWARDEN_SESSION_ID"],
                user=env.get("PODWARDEN_USER", ""),
                template=env.get("PODWARDEN_TEMPLATE", ""),
                pid=pid,
                pgid=pid,
                start_ticks=start_ticks,
                host=host,
                port=int(env["PODWARDEN_PORT"]),
                rundir=Path(env["PODWARDEN_RUNTIME_DIR"]),
                workdir=Path(env.get("PODWARDEN_WORKDIR") or env["PODWARDEN_RUNTIME_DIR"]),
            )
        except (KeyError, ValueError):
            return None

    # -- exit watch

    def watch(self, on_exit: Callable[[Workload], None]) -> None:
        """Call ``on_exit(self)`` on the loop once the main process has ended."""
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            loop.call_soon(self._ended, on_exit)
            return
        except (OSError, AttributeError):  # no pidfd (old kernel): poll /proc instead
            self._poll_task = loop.create_task(
                self._poll_exit(on_exit), name=f"exit-watch-{self.session_id}"
            )
            return
        if not self.running() and self.proc is None:
            os.close(fd)  # the pid already belongs to another process
            loop.call_soon(self._ended, on_exit)
            return
        self._pidfd = fd
        loop.add_reader(fd, self._ended, on_exit)

    async def _poll_exit(self, on_exit: Callable[[Workload], None]) -> None:
        while self.running():
            await asyncio.sleep(0.2)
        self._ended(on_exit)

    def _ended(self, on_exit: Callable[[Workload], None]) -> None:
        if self.exited.is_set():
            return
        self._close_watch()
        self.reap()
        self.exited.set()
        try:
            on_exit(self)
        except Exception:
            log.exception("session %s: exit handler failed", self.session_id)

    async def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the main process to end; True if it did."""
        if self.exited.is_set():
            return True
        if timeout <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.exited.wait(), timeout)
        return self.exited.is_set()

    def reap(self) -> None:
        """Collect the exit status if the process is our child and has ended."""
        if self.proc is not None:
            if self.proc.returncode is None:
                self.proc.poll()
            if self.proc.returncode is not None:
                self.exit_code = self.proc.returncode
            return
        if self.exit_code is not None:
            return
        info = read_proc(self.pid)
        if info is None or (self.start_ticks and info.start_ticks != self.start_ticks):
            return  # reaped already, or the pid is another process now: not ours to reap
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child: whoever is its parent now reaps it
        if pid == self.pid:
            self.exit_code = os.waitstatus_to_exitcode(status)

    def _close_watch(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._poll_task is not None:
            self._poll_task.cancel()
            self._poll_task = None

    def detach(self) -> None:
        """Stop watching and tailing; the process itself is left alone."""
        self._close_watch()
        if self.tail is not None:
            self.tail.stop()
            self.tail = None
        if self.proc is not None and self.proc.returncode is None:
            self.proc.poll()
            if self.proc.returncode is None:
                _DETACHED.append(self.proc)


def write_credentials_file(workdir: Path, relative: str, env: dict[str, str]) -> None:
    """Write the credentials held in ``env`` (the names ``PODWARDEN_CREDENTIALS`` lists)
    as a JSON object to ``workdir/relative``, mode 0600, atomically."""
    names = [n for n in env.get("PODWARDEN_CREDENTIALS", "").split(",") if n]
    path = workdir / relative
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({name: env[name] for name in names if name in env}, f)
    os.replace(tmp, path)


CLAIM_FILE = "podwarden-claim.json"
"""Who claimed a standby workload, in its working directory (the demo reads it)."""


def write_claim_file(workdir: Path, spec: WorkloadSpec) -> None:
    """Tell a claimed standby workload its session id, user and credential names."""
    names = [n for n in spec.env.get("PODWARDEN_CREDENTIALS", "").split(",") if n]
    data = {"session_id": spec.session_id, "user": spec.user, "credentials": names}
    path = workdir / CLAIM_FILE
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


class LogTail:
    """Copies complete new lines of a workload's log file into ``SessionLogs``.

    A file is followed by polling its size: every 50 ms while lines come, slowing to once
    a second when it is quiet, so a thousand idle sessions cost a thousand ``stat`` calls
    a second and no file descriptor each.
    """

    def __init__(self, path: Path, session_id: str, logs: SessionLogs, *, from_end: bool) -> None:
        self._path = path
        self.session_id = session_id
        """The session the lines are filed under (changes when a standby is claimed)."""
        self._logs = logs
        self._offset = 0
        self._trimmed = 0
        self._partial = b""
        if from_end:
            with contextlib.suppress(OSError):
                self._offset = path.stat().st_size
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"log-tail-{session_id}"
        )

    def poll(self) -> bool:
        """Read what was appended since the last call; True if there was anything."""
        try:
            size = os.stat(self._path).st_size
        except OSError:
            return False
        if size < self._offset:  # truncated or replaced: start over
            self._offset, self._trimmed, self._partial = 0, 0, b""
        if size == self._offset:
            return False
        try:
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                data = f.read(min(size - self._offset, 1 << 20))
        except OSError:
            return False
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > _MAX_LINE * 4:  # a line without end: show it in parts
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._emit(line)
        if self._offset - self._trimmed >= _TRIM_AT:
            self._trim()
        return True

    def _trim(self) -> None:
        """Keep the file's disk use bounded: free the blocks of what was read, except
        the last ``_TRIM_KEEP`` bytes, by punching a hole. Unlike copy-and-truncate
        this loses nothing and races with nothing: the file keeps its size and the
        workload keeps appending. Filesystems without hole punching keep the file."""
        end = (self._offset - _TRIM_KEEP) & ~4095
        if end <= self._trimmed:
            return
        try:
            with open(self._path, "rb+") as f:
                _punch_hole(f.fileno(), end)
        except OSError as e:
            log.info("cannot trim %s (%s); it keeps growing", self._path, e)
        self._trimmed = end

    def _emit(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        self._logs.append(self.session_id, text[:_MAX_LINE])

    async def _run(self) -> None:
        interval = 0.05
        while True:
            try:
                got = self.poll()
            except Exception:
                log.exception("log tail of %s failed; retrying", self.session_id)
                got = False
            interval = 0.05 if got else min(1.0, interval * 1.5)
            await asyncio.sleep(interval)

    def stop(self) -> None:
        """Read what is left (the last lines of a stopped workload), then stop."""
        with contextlib.suppress(Exception):
            self.poll()
            if self._partial:
                self._emit(self._partial)
                self._partial = b""
        self._task.cancel()


def read_log_tail(path: Path, count: int = 20) -> list[str]:
    """The last ``count`` lines of a log file (for error messages), each shortened."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return [line[:300] for line in lines if line.strip()][-count:]


def _punch_hole(fd: int, length: int) -> None:
    """``fallocate(PUNCH_HOLE | KEEP_SIZE)`` over the first ``length`` bytes of ``fd``."""
    import ctypes  # only here: most sessions never log enough to need it

    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = libc.fallocate
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    punch_hole_keep_size = 0x02 | 0x01
    if fallocate(fd, punch_hole_keep_size, 0, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
