"""The ``Runtime`` protocol: what the pool asks of whatever runs the workloads.

The pool never knows whether a session is a local process or a Kubernetes Deployment; it
calls these methods and reacts to their results and exceptions. Every method that can fail
for a reason a person must act on raises a ``PodwardenError`` subclass (``StartError``,
``RuntimeUnavailable``), never a bare library exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from backend.models import TunnelInfo, WorkloadHandle
from backend.templates import Template

if TYPE_CHECKING:
    from backend.tunnels import RelayStats

__all__ = [
    "CleanupReport",
    "OwnedWorkload",
    "PhaseCallback",
    "ProbeResult",
    "Runtime",
    "RuntimeHealth",
    "Tunnel",
    "WorkloadLostCallback",
    "WorkloadMovedCallback",
    "WorkloadSpec",
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

    async def close(self) -> None:
        """Release the runtime's own resources (threads, watches, log tails). Workloads
        keep running: they are re-adopted on the next start."""
        ...
