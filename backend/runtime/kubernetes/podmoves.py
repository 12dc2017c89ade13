"""Which pod serves each session, and what to do when the ReplicaSet replaces it.

A session's Deployment keeps one replica: when its pod is deleted, evicted or rescheduled,
the ReplicaSet makes a new one under another name. The session lives on (same id, same
tunnel port: the tunnel looks its pod up per connection), but for a while no pod serves
it, and afterwards a different one does. ``PodMoves`` follows that from the pod watch:

- the moment the served pod stops being ready (deleted, evicted, not ready), the
  connections forwarded to it are ended (closed after what is buffered, not reset) and
  the owner is told the session has no pod (``WorkloadMovedCallback`` with no handle);
- the moment another pod of the session is ready, the owner is told its new handle.

Everything here runs on the event loop (the change feed's thread-safe hop).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from backend.models import WorkloadHandle

__all__ = ["PodMoves", "Served"]


@dataclass
class Served:
    """One session's pod as last handed out, and the connections forwarded to pods."""

    handle: WorkloadHandle
    pod: str
    unready: bool = False
    """Told the owner that no pod serves it (not yet that a new one does)."""
    connections: dict[str, set[asyncio.Transport]] = field(default_factory=dict)

    @property
    def session_id(self) -> str:
        """The pool's id of the session (a claimed standby serves another id)."""
        return self.handle.extra.get("claimed_as") or self.handle.ref

    def track(self, pod: str, transport: asyncio.Transport) -> None:
        live = {t for t in self.connections.get(pod, set()) if not t.is_closing()}
        live.add(transport)
        self.connections[pod] = live

    def end_connections(self, pod: str) -> int:
        """Close every connection forwarded to ``pod``; how many were open."""
        ended = 0
        for transport in self.connections.pop(pod, set()):
            if not transport.is_closing():
                transport.close()
                ended += 1
        return ended


class PodMoves:
    """The served pod of every session a runtime handed out, by Deployment name."""

    def __init__(self) -> None:
        self._served: dict[str, Served] = {}

    def serve(self, handle: WorkloadHandle, pod: str) -> Served:
        """Record that ``handle``'s session is served by ``pod`` (ready, handed out)."""
        served = self._served.get(handle.ref)
        if served is None:
            served = self._served[handle.ref] = Served(handle, pod)
        else:
            if served.pod != pod:
                served.end_connections(served.pod)
            served.handle, served.pod, served.unready = handle, pod, False
        return served

    def get(self, ref: str) -> Served | None:
        return self._served.get(ref)

    def forget(self, ref: str) -> None:
        served = self._served.pop(ref, None)
        if served is not None:
            for pod in list(served.connections):
                served.end_connections(pod)
