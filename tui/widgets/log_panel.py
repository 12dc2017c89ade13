"""The log panel: backend events, or the selected session's workload log in follow mode.

Toasts vanish; this does not. Every event and every failed command lands here with its
time, and the panel can be maximized to read it. Switching the source to a session
loads the tail of that workload's log and then follows its ``log`` events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.events import Resize
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import RichLog

from tui.format import clock_time

__all__ = ["LogPanel", "event_line"]

_KIND_STYLE = {
    "failed": "bold red",
    "refused": "red",
    "cleanup_leftover": "bold red",
    "refresh_failed": "yellow",
    "vanished": "yellow",
    "runtime_degraded": "bold red",
    "ready": "green",
    "cleanup_verified": "green",
    "orphan_removed": "green",
    "error": "bold red",
}


def event_line(event: dict[str, Any], localtime: Callable[[float], time.struct_time]) -> Text:
    """``12:00:01 created alice gets new session …``: time, kind as a word, message.

    Event lines wrap (a message is never cut); workload log lines do not (they are
    often wide tables and progress bars)."""
    kind = str(event.get("kind", "?"))
    line = Text(no_wrap=False, overflow="fold")
    line.append(clock_time(event.get("ts"), localtime), style="dim")
    line.append(" ")
    line.append(kind, style=_KIND_STYLE.get(kind, "bold"))
    line.append(" " + str(event.get("message", "")))
    return line


class LogPanel(RichLog):
    """A bounded, following log of events (``source`` ``events``) or one session's log.

    Enter opens the events in a list, where each can be read in full."""

    BINDINGS = [Binding("enter", "screen.browse_events", "Read events", show=False)]

    DEFAULT_CSS = """
    LogPanel {
        height: 1fr;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    """

    source: reactive[str] = reactive("events")
    """``events`` (backend events) or ``session`` (the followed session's workload log)."""
    followed: reactive[str | None] = reactive(None)
    """The session whose workload log is shown when ``source`` is ``session``."""

    def __init__(
        self,
        max_lines: int = 1000,
        localtime: Callable[[float], time.struct_time] = time.localtime,
        batch: float = 0.1,
        **kwargs: Any,
    ) -> None:
        # min_width=1: RichLog renders at least 78 columns by default, which cuts every
        # line of a panel narrower than that instead of wrapping it.
        super().__init__(
            max_lines=max_lines, wrap=True, markup=False, auto_scroll=True, min_width=1, **kwargs
        )
        self._localtime = localtime
        self._events: list[Text] = []
        self._event_docs: list[dict[str, Any]] = []
        self._session_lines: list[Text] = []
        self._max = max_lines
        self._width = 0
        self._batch = batch
        self._unwritten: list[Text] = []
        self._flush_timer: Timer | None = None

    def _title(self) -> str:
        if self.source == "session":
            return f"Log: {self.followed or 'no session'} (follow)"
        return "Events"

    def watch_source(self) -> None:
        self.border_title = self._title()

    def watch_followed(self) -> None:
        self.border_title = self._title()

    def on_resize(self, event: Resize) -> None:
        # Lines are cut to the width they were written at: rewrite them at the new one
        # (after maximize, restore or a terminal resize) so nothing stays cut short.
        width = event.size.width
        if width != self._width:
            self._width = width
            self._rewrite()

    def _emit(self, lines: list[Text]) -> None:
        """Write ``lines`` soon: lines arriving within ``batch`` seconds are written
        together, so 50 events a second cost a few frames, not fifty."""
        if self._batch <= 0:
            for line in lines:
                self.write(line)
            return
        self._unwritten.extend(lines)
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(self._batch, self._write_unwritten)

    def _write_unwritten(self) -> None:
        self._flush_timer = None
        lines, self._unwritten = self._unwritten[-self._max :], []
        for line in lines:
            self.write(line)

    def _rewrite(self) -> None:
        self._unwritten.clear()
        self.clear()
        for line in self._events if self.source == "events" else self._session_lines:
            self.write(line)

    def texts(self) -> list[str]:
        """The plain text of what the current source holds (oldest first)."""
        lines = self._events if self.source == "events" else self._session_lines
        return [line.plain for line in lines]

    @staticmethod
    def _keep(buffer: list[Any], lines: list[Any], limit: int) -> None:
        buffer.extend(lines)
        if len(buffer) > limit:
            del buffer[: len(buffer) - limit]

    def events(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """The events kept (oldest first), or only those of ``session_id``."""
        if session_id is None:
            return list(self._event_docs)
        return [e for e in self._event_docs if e.get("session_id") == session_id]

    def add_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Record backend events (kept even while a session log is shown)."""
        docs = list(events)
        lines = [event_line(e, self._localtime) for e in docs]
        self._keep(self._events, lines, self._max)
        self._keep(self._event_docs, docs, self._max)
        if self.source == "events":
            self._emit(lines)

    def add_error(self, title: str, message: str, ts: float) -> None:
        """Record a failed command as an ``error`` line."""
        self.add_events([{"ts": ts, "kind": "error", "message": f"{title}: {message}"}])

    def show_events(self) -> None:
        """Switch to the backend events."""
        self.source = "events"
        self._rewrite()

    def show_session(self, session_id: str | None, lines: Iterable[str]) -> None:
        """Switch to ``session_id``'s workload log, starting with ``lines``."""
        self.followed = session_id
        self.source = "session"
        self._session_lines = []
        if session_id is None:
            note = Text("Select a session to follow its workload log.", style="dim")
            self._session_lines.append(note)
        self._keep(self._session_lines, [_log_line(line) for line in lines], self._max)
        self._rewrite()

    def add_session_lines(self, session_id: str, lines: Iterable[str]) -> None:
        """Append workload log lines if ``session_id`` is the one followed."""
        if self.source == "session" and session_id == self.followed:
            new = [_log_line(line) for line in lines]
            self._keep(self._session_lines, new, self._max)
            self._emit(new)


def _log_line(line: str) -> Text:
    return Text(line, no_wrap=True, overflow="ellipsis")
