"""The ``Runtime`` protocol: what the pool asks of whatever runs the workloads.

The pool never knows whether a session is a local process or a Kubernetes Deployment; it
calls these methods and reacts to their results and exceptions. Every method that can fail
for a reason a person must act on raises a ``PodwardenError`` subclass (``StartError``,
``RuntimeUnavailable``), never a bare library exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from backend.models import TunnelInfo, WorkloadHandle, WorkloadUsage
from backend.templates import Template

if TYPE_CHECKING:
    from backend.tunnels import RelayStats

__all__ = [
    "CleanupReport",
    "OwnedWorkload",
    "PhaseCallback",
    "ProbeResult",
    "ResourceReport",
    "ResourceTotals",
    "Runtime",
    "RuntimeHealth",
    "Tunnel",
    "WorkloadLostCallback",
    "WorkloadMovedCallback",
    "WorkloadSpec",
    "WorkloadUsage",
]

PhaseCallback = Callable[[str], None]
"""Called with a short word ("scheduling", "pulling", "login") as a start progresses."""

WorkloadLostCallback = Callable[[str, str], None]
"""Called with (session_id, reason) when a runtime notices a workload died on its own."""

WorkloadMovedCallback = Callable[[str, WorkloadHandle | None, str], None]
"""Called with (session_id, handle, reason) when a ready session's workload moved under
it: ``None`` when nothing serves it for now (its pod was deleted and the ReplicaSet is
making another), then the new handle once the replacement is ready. Optional: a runtime
that offers it has ``set_workload_moved_callback`` (Kubernetes)."""


@dataclass
class WorkloadSpec:
    """Everything a runtime needs to start one session's workload.

    ``env`` already holds the credentials; a runtime passes it to the workload and never
    writes it to a file, a log or an event.
    """

    session_id: str
    user: str
    template: Template
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    requires: dict[str, str] = field(default_factory=dict)
    """Target labels the request asked for (a ``MultiRuntime`` places by them)."""

    def __repr__(self) -> str:  # keep credentials out of any log or traceback
        return (
            f"WorkloadSpec(session_id={self.session_id!r}, user={self.user!r}, "
            f"template={self.template.name!r}, env=<{len(self.env)} vars>)"
        )


@dataclass(frozen=True)
class ProbeResult:
    """The answer of one liveness probe.

    ``alive`` False with ``gone`` True means the workload is certainly dead (the process
    exited, the pod is gone): no point probing again.
    """

    alive: bool
    detail: str = ""
    gone: bool = False


@dataclass(frozen=True)
class CleanupReport:
    """What ``stop`` verified: how long it took and what, if anything, is still there."""

    duration_s: float
    leftovers: tuple[str, ...] = ()
    verified_kinds: tuple[str, ...] = ()
    """What the runtime confirmed gone, by kind (``Deployment``, ``Service``, ``Pod``...);
    empty where a runtime does not say."""

    @property
    def verified(self) -> bool:
        return not self.leftovers


@dataclass(frozen=True)
class OwnedWorkload:
    """A workload found in the runtime during recovery, with what it says about itself."""

    session_id: str
    user: str
    template: str
    handle: WorkloadHandle
    alive: bool
    ready: bool = False


@dataclass(frozen=True)
class RuntimeHealth:
    """Whether the runtime can be used now, and a line saying why not."""

    ok: bool
    detail: str = ""
    workloads: int | None = None
    """How many workloads the runtime itself sees (for drift checks), where known."""


@dataclass(frozen=True)
class ResourceTotals:
    """The machine's or the cluster's CPU and memory, against what is used of them.

    Local (``scope`` ``host``, ``source`` ``measured``): the host's logical CPUs and its
    memory, against what every process of the host uses now. Kubernetes (``cluster``,
    ``requested``): the nodes' allocatable CPU and memory, against what podwarden's pods
    request; ``cpu_cores`` and ``memory_bytes`` are None when the nodes cannot be read
    (``detail`` says why).
    """

    scope: str
    """``host`` or ``cluster``."""
    source: str
    """``measured`` (used now) or ``requested`` (podwarden's pods' requests)."""
    cpu_cores: float | None
    """Logical CPUs of the host, or the cluster's allocatable cores."""
    cpu_used_cores: float | None
    """Cores busy on the host, or requested by podwarden's pods."""
    memory_bytes: int | None
    """The host's memory, or the cluster's allocatable memory."""
    memory_used_bytes: int | None
    """Memory in use on the host (total minus available), or requested by the pods."""
    detail: str = ""
    """Why a figure is missing, for people."""

    def to_dict(self) -> dict[str, object]:
        def pct(used: float | None, total: float | None) -> float | None:
            if used is None or not total:
                return None
            return round(100.0 * used / total, 1)

        return {
            "scope": self.scope,
            "source": self.source,
            "cpu_cores": self.cpu_cores,
            "cpu_used_cores": _round(self.cpu_used_cores, 3),
            "cpu_percent": pct(self.cpu_used_cores, self.cpu_cores),
            "memory_bytes": self.memory_bytes,
            "memory_used_bytes": self.memory_used_bytes,
            "memory_percent": pct(self.memory_used_bytes, self.memory_bytes),
            "detail": self.detail,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class ResourceReport:
    """One resource sample: per session (by the pool's session id) and the totals."""

    sessions: dict[str, WorkloadUsage] = field(default_factory=dict)
    """Sessions with figures; a session missing here has none this time."""
    totals: ResourceTotals | None = None


@runtime_checkable
class Tunnel(Protocol):
    """A local listener that relays each connection to a session's workload."""

    @property
    def info(self) -> TunnelInfo:
        """Local address and target."""
        ...

    def is_listening(self) -> bool:
        """True while the local port accepts connections."""
        ...

    def stats(self) -> RelayStats:
        """Open connections and bytes relayed so far (what idle culling samples)."""
        ...

    async def close(self) -> None:
        """Stop listening and close every relayed connection; the port is free after."""
        ...


@runtime_checkable
class Runtime(Protocol):
    """Starts, watches and stops workloads. Implementations: local, kubernetes, memory."""

    name: str
    """Short name shown to people: ``local``, ``kubernetes``, ``memory``."""

    def describe(self) -> str:
        """One line for headers: ``local`` or ``kubernetes ctx/namespace``."""
        ...

    def set_workload_lost_callback(self, callback: WorkloadLostCallback) -> None:
        """Register who to tell when a workload dies between probes."""
        ...

    async def start(self, spec: WorkloadSpec, on_phase: PhaseCallback) -> WorkloadHandle:
        """Create the workload and return its handle as soon as it exists (not yet ready).

        Raises ``StartError`` when it cannot be created; nothing is left behind then.
        """
        ...

    async def wait_ready(
        self, handle: WorkloadHandle, spec: WorkloadSpec, timeout: float, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        """Return once the workload answers its readiness check (maybe with an updated
        handle, e.g. the pod's address). Raises ``StartError`` with the reason when it
        exits, is refused by the cluster, or does not get ready within ``timeout``.
        The workload is not stopped here; the caller stops it.
        """
        ...

    async def probe(self, handle: WorkloadHandle, template: Template) -> ProbeResult:
        """Check once that the workload is alive and answering."""
        ...

    async def keepalive(self, handle: WorkloadHandle, template: Template) -> None:
        """Call the template's keepalive path; raise ``StartError`` if it fails."""
        ...

    async def stop(self, handle: WorkloadHandle, grace: float) -> CleanupReport:
        """Stop the workload and return only when every resource is verified gone, or
        when the time allowed ran out, listing what is left in ``leftovers``."""
        ...

    async def list_owned(self) -> list[OwnedWorkload]:
        """Every workload this runtime started and that still exists (for recovery)."""
        ...

    async def open_tunnel(self, handle: WorkloadHandle, host: str, port: int) -> Tunnel:
        """Listen on ``host:port`` and relay connections to the workload.
        Raises ``OSError`` (EADDRINUSE) when the port is taken; the caller tries another."""
        ...

    def logs(self, session_id: str) -> list[str]:
        """The session's recent workload log lines, oldest first (bounded)."""
        ...

    def health(self) -> RuntimeHealth:
        """Whether the runtime is usable now."""
        ...

    async def resources(self, handles: Mapping[str, WorkloadHandle]) -> ResourceReport | None:
        """CPU and memory of the workloads in ``handles`` (the live sessions' handles by
        session id) and the host's or cluster's totals, sampled now; called every
        ``pool.resources_interval`` by ``backend.resources``, never per request.

        CPU is a rate, so a runtime may answer a session's ``cpu_percent`` None until it
        has seen the workload twice. None (the whole answer) means this runtime cannot
        tell at all (the in-memory runtime): the caller stops asking. Never raises for one
        workload's sake; a runtime that cannot be reached raises its usual errors.
        """
        ...

    async def close(self) -> None:
        """Release the runtime's own resources (threads, watches, log tails). Workloads
        keep running: they are re-adopted on the next start."""
        ...
