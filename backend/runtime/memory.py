"""An in-memory runtime: no processes, no sockets, for bookkeeping tests and benchmarks.

It keeps the ``Runtime`` contract (start, ready, probe, stop, recovery) with workloads
that are only dictionary entries, so pool logic can be tested fast and deterministically,
and the TUI can be snapshot-tested with a fixed pool. Faults are injected per template or
per session (``fail_starts``, ``kill``, ``start_delay``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass

from backend.errors import StartError
from backend.logs import SessionLogs
from backend.models import TunnelInfo, WorkloadHandle
from backend.runtime.base import (
    CleanupReport,
    OwnedWorkload,
    PhaseCallback,
    ProbeResult,
    ResourceReport,
    RuntimeHealth,
    WorkloadLostCallback,
    WorkloadSpec,
)
from backend.templates import Template
from backend.tunnels import RelayStats

__all__ = ["MemoryRuntime", "MemoryTunnel"]


@dataclass
class _Workload:
    session_id: str
    user: str
    template: str
    handle: WorkloadHandle
    alive: bool = True
    ready: bool = False
    keepalives: int = 0


class MemoryTunnel:
    """A tunnel that only records its address; nothing listens. Tests set ``active``
    and ``bytes_total`` to stand for traffic."""

    def __init__(self, info: TunnelInfo) -> None:
        self._info = info
        self._open = True
        self.active = 0
        self.bytes_total = 0

    def stats(self) -> RelayStats:
        return RelayStats(self.active, self.active, self.bytes_total, 0, 0)

    @property
    def info(self) -> TunnelInfo:
        return self._info

    def is_listening(self) -> bool:
        return self._open

    async def close(self) -> None:
        self._open = False


class MemoryRuntime:
    """Workloads as dictionary entries; every call counted for tests."""

    name = "memory"

    def __init__(self, logs: SessionLogs | None = None) -> None:
        self._logs = logs
        self.workloads: dict[str, _Workload] = {}
        self.calls: dict[str, int] = {}
        self.start_delay = 0.0
        """Seconds ``wait_ready`` takes (0: ready at once)."""
        self.fail_starts: dict[str, int] = {}
        """Template name -> how many of the next starts fail."""
        self.fail_reason = ""
        """Added to the simulated start failure's reason (``exceeded quota``...)."""
        self.unhealthy = False
        self.ready_gate: asyncio.Event | None = None
        """When set, ``wait_ready`` waits for this event (tests control start timing)."""
        self._lost: WorkloadLostCallback | None = None
        self._refs = itertools.count(1)
        self.resource_report: ResourceReport | None = None
        """What ``resources`` answers (tests set it); None, the default: cannot tell."""

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def describe(self) -> str:
        return "memory"

    def set_workload_lost_callback(self, callback: WorkloadLostCallback) -> None:
        self._lost = callback

    async def start(self, spec: WorkloadSpec, on_phase: PhaseCallback) -> WorkloadHandle:
        self._count("start")
        on_phase("launching")
        remaining = self.fail_starts.get(spec.template.name, 0)
        if remaining:
            self.fail_starts[spec.template.name] = remaining - 1
            reason = "simulated start failure"
            if self.fail_reason:
                reason += f": {self.fail_reason}"
            raise StartError(reason, exit_code=1, log_tail=["boom"])
        handle = WorkloadHandle(
            "memory",
            f"mem-{next(self._refs)}",
            "127.0.0.1",
            1,
            {"session_id": spec.session_id},
        )
        self.workloads[spec.session_id] = _Workload(
            spec.session_id, spec.user, spec.template.name, handle
        )
        if self._logs is not None:
            self._logs.append(spec.session_id, f"workload {handle.ref} started")
        return handle

    async def wait_ready(
        self, handle: WorkloadHandle, spec: WorkloadSpec, timeout: float, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        self._count("wait_ready")
        on_phase("login")
        if self.ready_gate is not None:
            await asyncio.wait_for(self.ready_gate.wait(), timeout)
        elif self.start_delay:
            await asyncio.sleep(self.start_delay)
        workload = self.workloads.get(spec.session_id)
        if workload is None or not workload.alive:
            raise StartError("workload vanished while starting")
        workload.ready = True
        return handle

    def _find(self, handle: WorkloadHandle) -> _Workload | None:
        workload = self.workloads.get(handle.extra.get("session_id", ""))
        return workload if workload is not None and workload.handle.ref == handle.ref else None

    async def probe(self, handle: WorkloadHandle, template: Template) -> ProbeResult:
        self._count("probe")
        workload = self._find(handle)
        if workload is None or not workload.alive:
            return ProbeResult(False, "workload is gone", gone=True)
        return ProbeResult(True, "ok")

    async def keepalive(self, handle: WorkloadHandle, template: Template) -> None:
        self._count("keepalive")
        workload = self._find(handle)
        if workload is None or not workload.alive:
            raise StartError("keepalive failed: workload is gone")
        workload.keepalives += 1

    async def claim(self, handle: WorkloadHandle, spec: WorkloadSpec) -> WorkloadHandle:
        """Relabel a standby workload as ``spec``'s session; ``StartError`` if it died."""
        self._count("claim")
        workload = self._find(handle)
        if workload is None or not workload.alive:
            raise StartError("standby workload is gone")
        del self.workloads[workload.session_id]
        workload.session_id, workload.user = spec.session_id, spec.user
        workload.handle = WorkloadHandle(
            handle.runtime, handle.ref, handle.host, handle.port, {"session_id": spec.session_id}
        )
        self.workloads[spec.session_id] = workload
        return workload.handle

    async def stop(self, handle: WorkloadHandle, grace: float) -> CleanupReport:
        self._count("stop")
        started = time.monotonic()
        workload = self._find(handle)
        if workload is not None:
            del self.workloads[workload.session_id]
        return CleanupReport(time.monotonic() - started)

    async def list_owned(self) -> list[OwnedWorkload]:
        self._count("list_owned")
        return [
            OwnedWorkload(w.session_id, w.user, w.template, w.handle, w.alive, w.ready)
            for w in self.workloads.values()
        ]

    async def open_tunnel(self, handle: WorkloadHandle, host: str, port: int) -> MemoryTunnel:
        self._count("open_tunnel")
        return MemoryTunnel(TunnelInfo(host, port, handle.host, handle.port))

    def logs(self, session_id: str) -> list[str]:
        return self._logs.get(session_id) if self._logs is not None else []

    async def resources(self, handles: Mapping[str, WorkloadHandle]) -> ResourceReport | None:
        """No processes, so nothing to measure: None, unless a test set
        ``resource_report`` (then its figures for the sessions asked about)."""
        self._count("resources")
        report = self.resource_report
        if report is None:
            return None
        sessions = {sid: u for sid, u in report.sessions.items() if sid in handles}
        return ResourceReport(sessions, report.totals)

    def health(self) -> RuntimeHealth:
        if self.unhealthy:
            return RuntimeHealth(False, "simulated outage", len(self.workloads))
        return RuntimeHealth(True, "ok", len(self.workloads))

    async def close(self) -> None:
        return None

    def kill(self, session_id: str) -> None:
        """Simulate a workload dying on its own, and tell the pool as a runtime would."""
        workload = self.workloads[session_id]
        workload.alive = False
        if self._lost is not None:
            self._lost(session_id, "workload exited (simulated)")
