"""Connection hygiene: idle clients cannot starve the API.

uvicorn times out a keep-alive connection only after a response, and never one that
connects and sends nothing (or half a request line). Under the usual soft limit of 1,024
open files, 1,100 such connections exhaust the file descriptors and every call, ``/health``
included, fails until they close. So the API's HTTP protocol is a subclass that adds:

- a **header timeout**: a connection that has not completed a request's headers within
  ``api.header_timeout`` seconds of connecting (or of its last response) is closed;
- a **connection cap**, kept below the file limit so ``accept`` never hits ``EMFILE``:
  at the cap a new connection first evicts the longest-idle connection that has no
  request in flight (an idle attacker's, typically); only when every connection is busy
  is the new one refused, by closing it at once (no parsing, no response);
- the soft ``RLIMIT_NOFILE`` raised to the hard limit at start (``raise_file_limit``).

A connection is *busy* from its headers' completion until its response ends, so a slow
request body or a long event stream is never evicted.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from backend.security_metrics import REFUSALS

__all__ = [
    "FILE_RESERVE_MIN",
    "connection_cap",
    "guarded_protocol",
    "raise_file_limit",
]

log = logging.getLogger("podwarden.api")

FILE_RESERVE_MIN = 128
"""Descriptors kept free for everything but API connections (store, logs, workloads'
pidfds, tunnels, the cluster client); a quarter of the limit when that is more."""


def raise_file_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:  # e.g. an infinite hard limit on some systems
            log.warning("cannot raise the open-file limit from %s to %s: %s", soft, hard, e)
    return soft


def connection_cap(configured: int, file_limit: int) -> int:
    """At most ``configured`` connections, and always fewer than the file limit allows."""
    if file_limit == resource.RLIM_INFINITY:
        return configured
    reserve = max(FILE_RESERVE_MIN, file_limit // 4)
    return max(1, min(configured, file_limit - reserve))


def guarded_protocol(base: type[Any], header_timeout: float, cap: int) -> type[Any]:
    """A subclass of uvicorn's HTTP protocol class ``base`` with the guards above."""

    class GuardedProtocol(base):
        connection_cap = cap

        def connection_made(self, transport: asyncio.Transport) -> None:
            self._idle_since = time.monotonic()
            self._header_timer: asyncio.TimerHandle | None = None
            if len(self.connections) >= cap and not _evict_idle(self.connections):
                REFUSALS.api_refused += 1
                transport.abort()
                return
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            if getattr(self, "transport", None) is None:  # refused before it was set up
                return
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._idle_since = time.monotonic()
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._header_deadline)

        def _header_deadline(self) -> None:
            self._header_timer = None
            if not _busy(self) and not self.transport.is_closing():
                REFUSALS.api_header_timeouts += 1
                self.transport.abort()

    GuardedProtocol.__name__ = f"Guarded{base.__name__}"
    return GuardedProtocol


def _busy(protocol: Any) -> bool:
    cycle = getattr(protocol, "cycle", None)
    return cycle is not None and not cycle.response_complete


def _evict_idle(connections: set[Any]) -> bool:
    """Close the longest-idle connection without a request in flight; False if none."""
    victim = None
    for connection in connections:
        if _busy(connection) or connection.transport.is_closing():
            continue
        if victim is None or connection._idle_since < victim._idle_since:
            victim = connection
    if victim is None:
        return False
    REFUSALS.api_idle_evicted += 1
    victim.transport.abort()
    victim.connections.discard(victim)  # its connection_lost comes later; free the slot now
    return True
