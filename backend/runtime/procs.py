"""Processes and process groups as Linux's ``/proc`` shows them.

The local runtime must tell *its* workload from whatever process later got the same pid,
and must know when a whole process group is gone, also for processes that are not its
children (after a restart they were re-parented). ``/proc/<pid>/stat`` gives both: the
start time in clock ticks since boot (a pid reused later has a later start time) and the
process group. A zombie counts as gone: it runs nothing and holds no port or file, and
when it is not our child we cannot reap it (an init that does not reap leaves zombies of
re-parented grandchildren forever). Only a zombie *process* counts: a main thread that
exited while other threads still run shows "Z" too, and is told apart by the thread
count.

Every workload also carries a marker in its environment (``PODWARDEN_RUNTIME_DIR``), which
its descendants inherit; ``find_marked`` finds processes that left the group (a
``setsid`` daemon such as Chromium's crash handler) and workloads started just before a
crash had a chance to record them.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

__all__ = [
    "ProcInfo",
    "find_marked",
    "group_members",
    "group_running",
    "read_environ",
    "read_proc",
    "signal_group",
]


@dataclass(frozen=True)
class ProcInfo:
    """The fields of ``/proc/<pid>/stat`` the runtime needs."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    start_ticks: int
    threads: int = 1

    @property
    def zombie(self) -> bool:
        """Dead, waiting to be reaped. A main thread that exited while other threads of
        the process still run also shows "Z", but the process is not dead yet."""
        return self.state in ("Z", "X") and self.threads <= 1


def read_proc(pid: int) -> ProcInfo | None:
    """The process ``pid`` as ``/proc`` shows it, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold ") ".
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcInfo(
            pid=pid,
            state=rest[0].decode(),
            ppid=int(rest[1]),
            pgid=int(rest[2]),
            sid=int(rest[3]),
            start_ticks=int(rest[19]),
            threads=int(rest[17]),
        )
    except (IndexError, ValueError):
        return None


def is_running(pid: int, start_ticks: int | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when given, started at ``start_ticks``."""
    info = read_proc(pid)
    if info is None or info.zombie:
        return False
    return start_ticks is None or info.start_ticks == start_ticks


def _pids() -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit()]


def group_members(pgid: int) -> list[ProcInfo]:
    """Every process (zombies included) whose process group is ``pgid``."""
    members = []
    for pid in _pids():
        info = read_proc(pid)
        if info is not None and info.pgid == pgid:
            members.append(info)
    return members


def group_running(pgid: int) -> list[int]:
    """The pids of group ``pgid`` that still run (zombies do not count); cheap when empty."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        return []  # the id now belongs to another user's group: not ours
    leader = read_proc(pgid)
    if leader is not None and leader.pgid == pgid and not leader.zombie:
        return [pgid]  # the common case while it runs: no need to scan /proc
    return [info.pid for info in group_members(pgid) if not info.zombie]


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to group ``pgid``; False when no such group exists (any more)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def read_environ(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` started with, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            env[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def find_marked(name: str, value_prefix: str) -> dict[int, dict[str, str]]:
    """Running processes of this user whose environment has ``name`` starting with
    ``value_prefix``, with their environments (only ``PODWARDEN_*`` variables kept, so
    nothing secret outlives this call)."""
    needle = f"\0{name}={value_prefix}".encode()
    me = os.getuid()
    found: dict[int, dict[str, str]] = {}
    for pid in _pids():
        try:
            if os.stat(f"/proc/{pid}").st_uid != me:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                raw = b"\0" + f.read()
        except OSError:
            continue
        if needle not in raw:
            continue
        info = read_proc(pid)
        if info is None or info.zombie:
            continue
        env = {}
        for item in raw.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep and key.startswith(b"PODWARDEN_") and b"CREDENTIAL" not in key:
                env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        found[pid] = env
    return found
