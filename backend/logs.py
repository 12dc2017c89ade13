"""Per-session workload logs: a bounded buffer each, and a LOG event per line."""

from __future__ import annotations

import collections

from backend.events import EventBus, EventKind

__all__ = ["SessionLogs"]


class SessionLogs:
    """The last ``limit`` log lines of each session's workload.

    Runtimes append what their workloads print; the TUI and the API read it back. Each
    line is also published as a ``log`` event so a follower sees it at once.
    """

    def __init__(self, bus: EventBus, limit: int = 500) -> None:
        self._bus = bus
        self._limit = limit
        self._lines: dict[str, collections.deque[str]] = {}

    def append(self, session_id: str, line: str) -> None:
        """Keep ``line`` (one line, no trailing newline) and publish it."""
        line = line.rstrip("\r\n")
        buffer = self._lines.get(session_id)
        if buffer is None:
            buffer = self._lines[session_id] = collections.deque(maxlen=self._limit)
        buffer.append(line)
        self._bus.publish(EventKind.LOG, line, session_id=session_id)

    def get(self, session_id: str, limit: int | None = None) -> list[str]:
        """The kept lines of a session, oldest first; the last ``limit`` when given."""
        lines = list(self._lines.get(session_id, ()))
        return lines[-limit:] if limit else lines

    def drop(self, session_id: str) -> None:
        """Forget a session's lines (after it has ended and been pruned)."""
        self._lines.pop(session_id, None)
