"""Tunnel ports: which local ports of the configured range a session may listen on.

``PortAllocator`` is pure bookkeeping, O(1) per operation. It never binds: whether a port
is really free is only known when a listener binds it, and a foreign process may take any
port at any time. ``open_in_range`` does the allocate / bind / on-EADDRINUSE-try-the-next
loop for callers; ``wait_port_free`` is how a closing listener proves its port is free.
The relay that listens on these ports is ``backend.tunnels``.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from backend.errors import CapacityError

__all__ = ["PortAllocator", "open_in_range", "wait_port_free"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class PortAllocator:
    """The free ports of ``port_min..port_max`` on ``host``, in O(1) per operation.

    Free ports wait in a FIFO (the one released longest ago is handed out first, so a
    port just given up is not reused at once); a set gives membership in O(1) and lets
    ``allocate(preferred)`` take a port from the middle of the queue (its queue entry
    becomes stale and is skipped when it reaches the front). Ports a listener could not
    bind (held by a foreign process) are ``mark_bad``-ed: they go to a separate queue
    and are only tried again when no good port is left.
    """

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        if not 1 <= port_min <= port_max <= 65535:
            raise ValueError(f"bad port range {port_min}-{port_max}")
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self._queue: collections.deque[int] = collections.deque(range(port_min, port_max + 1))
        self._free: set[int] = set(self._queue)
        self._bad_queue: collections.deque[int] = collections.deque()
        self._bad: set[int] = set()
        self._used: set[int] = set()

    @property
    def range_text(self) -> str:
        return f"{self.port_min}-{self.port_max}"

    @property
    def size(self) -> int:
        """How many ports the range holds."""
        return self.port_max - self.port_min + 1

    @property
    def in_use(self) -> int:
        """Ports handed out and not released."""
        return len(self._used)

    @property
    def free(self) -> int:
        """Ports that ``allocate`` may still hand out (bad ones included)."""
        return len(self._free) + len(self._bad)

    def is_used(self, port: int) -> bool:
        return port in self._used

    def allocate(self, preferred: int | None = None) -> int:
        """A free port: ``preferred`` when it is in the range and free, else the next one.

        Raises ``CapacityError`` when every port of the range is in use.
        """
        if preferred is not None:
            if preferred in self._free:
                self._free.discard(preferred)
                return self._take(preferred)
            if preferred in self._bad:
                self._bad.discard(preferred)
                return self._take(preferred)
        while self._queue:
            port = self._queue.popleft()
            if port in self._free:
                self._free.discard(port)
                return self._take(port)
        while self._bad_queue:
            port = self._bad_queue.popleft()
            if port in self._bad:
                self._bad.discard(port)
                return self._take(port)
        raise CapacityError(
            f"no free tunnel port in {self.range_text} ({self.in_use} in use): stop "
            "sessions or widen tunnels.port_min/port_max"
        )

    def release(self, port: int) -> None:
        """Give ``port`` back; unknown or already free ports are ignored."""
        if port not in self._used:
            return
        self._used.discard(port)
        self._free.add(port)
        self._queue.append(port)
        self._compact()

    def mark_bad(self, port: int) -> None:
        """Give back a port that could not be bound; it is retried only as a last resort."""
        if port in self._used:
            self._used.discard(port)
        elif port in self._free:
            self._free.discard(port)
        elif port in self._bad or not self.port_min <= port <= self.port_max:
            return
        self._bad.add(port)
        self._bad_queue.append(port)
        self._compact()

    def _take(self, port: int) -> int:
        self._used.add(port)
        return port

    def _compact(self) -> None:
        # Stale entries (taken through ``preferred``) pile up only when ``preferred`` is
        # used over and over; rebuilding once they outnumber the range keeps each
        # operation O(1) amortized and the memory bounded.
        limit = 2 * self.size
        if len(self._queue) > limit:
            seen: set[int] = set()
            queue: collections.deque[int] = collections.deque()
            for port in self._queue:
                if port in self._free and port not in seen:
                    seen.add(port)
                    queue.append(port)
            self._queue = queue
        if len(self._bad_queue) > limit:
            self._bad_queue = collections.deque(
                dict.fromkeys(p for p in self._bad_queue if p in self._bad)
            )


_IN_USE_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL})


async def open_in_range(
    allocator: PortAllocator,
    opener: Callable[[int], Awaitable[T]],
    preferred: int | None = None,
) -> tuple[int, T]:
    """Allocate a port and ``await opener(port)``; on EADDRINUSE try the next port.

    Returns ``(port, whatever opener returned)``. A port that cannot be bound is marked
    bad; any other error releases the port and propagates. Raises ``CapacityError`` when
    the range has no port left that can be bound.
    """
    attempts = allocator.size
    for _ in range(attempts):
        port = allocator.allocate(preferred)
        preferred = None
        try:
            return port, await opener(port)
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                log.info("tunnel port %s is taken by another process; trying another", port)
                allocator.mark_bad(port)
                continue
            allocator.release(port)
            raise
        except BaseException:
            allocator.release(port)
            raise
    raise CapacityError(
        f"no tunnel port in {allocator.range_text} could be bound: other processes hold "
        "them; widen tunnels.port_min/port_max"
    )


async def wait_port_free(host: str, port: int, timeout: float = 5.0) -> bool:
    """Return True once a listener could bind ``host:port`` again (False on timeout).

    Binds with ``SO_REUSEADDR`` as every listener here does, so connections lingering in
    TIME_WAIT do not count as holding the port.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0
    while True:
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            return True
        except OSError as e:
            if e.errno not in _IN_USE_ERRNOS or time.monotonic() >= deadline:
                return False
        finally:
            probe.close()
        await asyncio.sleep(delay)
        delay = min(0.05, delay + 0.002)
