"""CPU and memory of local workloads (their process groups) and of the host, via psutil.

psutil is the well-kept library for process and system figures: it reads ``/proc`` for us
(CPU times, RSS, the host's CPU times and memory) and tells a reused pid from the process
it was. What this module adds is the grouping and the rates:

- A workload's processes are found by one pass over the pids per sample, with two
  syscalls each (``getpgid``, ``getsid``): a process belongs to the workload when its
  process group *or its session* is the workload's (the workload leads both: it starts
  with ``start_new_session``), so a child that made a process group of its own (a shell
  running a pipeline) still counts. A daemon that called ``setsid`` itself escapes; it is
  not counted (``stop`` still finds it by its environment marker, which costs reading
  every process's environment: too much for a sample every few seconds).
- CPU is a rate: the CPU seconds of the group's processes (their own plus those of their
  reaped children, so a child that ran and exited between two samples counts) since the
  last sample, over the wall time in between. A process born since the last sample counts
  with all its CPU time (told by its start time, which the kernel gives to 10 ms but psutil
  turns into wall time through the boot time, known to the second: a process started
  within a second of a sample may be counted on the wrong side of it); one that exited
  unreaped is lost for the interval. The first sample of a workload has no rate yet
  (``None``).
- Memory is RSS summed over the group: pages shared between its processes count once per
  process (what ``ps`` and ``top`` show too); exact shares (PSS) would cost reading
  ``smaps`` of every process.
- The host: busy CPU from the system-wide CPU times between two samples (busy = all but
  idle and iowait), and memory used = total minus available.

Blocking (it reads ``/proc``): the runtime calls ``sample`` in a worker thread. psutil is
imported there, on first use, not with the runtime: its ~25 ms import stays off the
console's first screen.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backend.models import WorkloadUsage
from backend.runtime.base import ResourceTotals

__all__ = ["GroupUsage", "HostUsage", "group_pids"]


def group_pids(leaders: set[int]) -> dict[int, list[int]]:
    """The running pids whose process group or session is one of ``leaders``, by leader."""
    import psutil

    found: dict[int, list[int]] = {leader: [] for leader in leaders}
    if not leaders:
        return found
    for pid in psutil.pids():
        try:
            pgid = os.getpgid(pid)
            sid = os.getsid(pid)
        except OSError:  # gone meanwhile
            continue
        if pgid in found:
            found[pgid].append(pid)
        elif sid in found:
            found[sid].append(pid)
    return found


@dataclass
class _Seen:
    cpu_s: float
    """Cumulative CPU seconds (self and reaped children) at the last sample."""


class GroupUsage:
    """Samples the CPU rate and RSS of process groups; keeps what a rate needs between."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[tuple[int, float], _Seen] = {}
        """(pid, create time) -> its CPU seconds at the last sample."""
        self._sampled_at: dict[str, float] = {}
        """Session id -> when its group was last sampled (its rate's start)."""

    def sample(self, groups: Mapping[str, int]) -> dict[str, WorkloadUsage]:
        """``groups``: session id -> process group (= session) id of its workload. The
        sessions with at least one running process, with their figures."""
        now = self._clock()
        members = group_pids(set(groups.values()))
        seen: dict[tuple[int, float], _Seen] = {}
        result: dict[str, WorkloadUsage] = {}
        sampled_at: dict[str, float] = {}
        for session_id, leader in groups.items():
            pids = members.get(leader) or []
            if not pids:
                continue
            since = self._sampled_at.get(session_id)
            cpu_delta = 0.0
            rss = 0
            alive = 0
            for pid in pids:
                figures = _process(pid)
                if figures is None:
                    continue
                created, cpu_s, proc_rss = figures
                alive += 1
                rss += proc_rss
                key = (pid, created)
                seen[key] = _Seen(cpu_s)
                before = self._seen.get(key)
                if before is not None:
                    cpu_delta += max(0.0, cpu_s - before.cpu_s)
                elif since is not None and created >= since:
                    cpu_delta += cpu_s  # born since the last sample: all of it is new
            if not alive:
                continue
            sampled_at[session_id] = now
            cpu: float | None = None
            if since is not None and now > since:
                cpu = round(100.0 * cpu_delta / (now - since), 1)
            result[session_id] = WorkloadUsage(cpu, rss, "measured")
        self._seen = seen
        self._sampled_at = sampled_at
        return result


def _process(pid: int) -> tuple[float, float, int] | None:
    """(create time, cumulative CPU seconds, RSS bytes) of ``pid``; None when it is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            rss = proc.memory_info().rss
            created = proc.create_time()
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    cpu = times.user + times.system + times.children_user + times.children_system
    return created, cpu, int(rss)


class HostUsage:
    """The host's busy CPU between two samples and its memory in use."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None
        """(busy, total) CPU seconds of the whole host at the last sample."""

    def sample(self) -> ResourceTotals:
        import psutil

        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        # Linux counts guest time inside user and nice already (as psutil's own
        # cpu_percent does, it is taken out of the sum).
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        busy = total - idle
        cores = float(psutil.cpu_count() or 1)
        used: float | None = None
        if self._last is not None and total > self._last[1]:
            fraction = (busy - self._last[0]) / (total - self._last[1])
            used = max(0.0, min(1.0, fraction)) * cores
        self._last = (busy, total)
        memory = psutil.virtual_memory()
        return ResourceTotals(
            scope="host",
            source="measured",
            cpu_cores=cores,
            cpu_used_cores=used,
            memory_bytes=int(memory.total),
            memory_used_bytes=int(memory.total - memory.available),
        )
