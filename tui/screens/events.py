"""Reading events in full: a list to move through, and one event's whole text.

The log panel wraps its lines, but it is a log: it has no cursor. Here each event is a
row; Enter opens its full text (message, session, user and every data field), so nothing
an event says is ever out of reach, however long or however narrow the terminal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tui.format import clock_time

__all__ = ["EventDetailScreen", "EventsScreen", "event_text"]


def event_text(event: dict[str, Any], localtime: Callable[[float], time.struct_time]) -> Text:
    """Every field of ``event``, one per line, the message and data never cut."""
    text = Text()
    rows = [
        ("time", clock_time(event.get("ts"), localtime)),
        ("kind", str(event.get("kind", "?"))),
        ("session", str(event.get("session_id") or "—")),
        ("user", str(event.get("user") or "—")),
        ("seq", str(event.get("seq") or "—")),
    ]
    for name, value in rows:
        text.append(f"{name:<8}", style="bold")
        text.append(f"{value}\n")
    text.append("message\n", style="bold")
    text.append(f"{event.get('message', '')}\n")
    data = event.get("data")
    if data:
        text.append("data\n", style="bold")
        text.append(json.dumps(data, indent=2, sort_keys=True, default=str))
    return text


class EventDetailScreen(ModalScreen[None]):
    """One event's full text, scrollable; esc or q closes it."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close")]
    DEFAULT_CSS = """
    EventDetailScreen { align: center middle; }
    EventDetailScreen #event {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    """

    def __init__(
        self, event: dict[str, Any], localtime: Callable[[float], time.struct_time]
    ) -> None:
        super().__init__()
        self.event = event
        self._localtime = localtime

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="event") as box:
            box.border_title = f"Event: {self.event.get('kind', '?')}"
            box.border_subtitle = "esc closes"
            yield Static(event_text(self.event, self._localtime), id="event-text")

    def action_close(self) -> None:
        self.dismiss(None)


class EventsScreen(ModalScreen[None]):
    """Events newest last, the cursor on the newest; Enter opens one, esc closes."""

    BINDINGS = [Binding("escape,q", "close", "Close")]
    DEFAULT_CSS = """
    EventsScreen { align: center middle; }
    EventsScreen #events {
        width: 100%; height: 100%; border: thick $primary; background: $surface;
    }
    EventsScreen DataTable { height: 1fr; }
    EventsScreen #empty { padding: 1 2; color: $text-muted; }
    """

    def __init__(
        self,
        events: Sequence[dict[str, Any]],
        title: str,
        localtime: Callable[[float], time.struct_time],
    ) -> None:
        super().__init__()
        self.events = list(events)
        self.title_text = title
        self._localtime = localtime

    def compose(self) -> ComposeResult:
        with Vertical(id="events") as box:
            box.border_title = f"{self.title_text} · {len(self.events)}"
            box.border_subtitle = "enter: full text · esc: close"
            if not self.events:
                yield Static("No events yet.", id="empty")
            table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=False)
            yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("TIME", "KIND", "SESSION", "MESSAGE")
        for index, event in enumerate(self.events):
            table.add_row(
                clock_time(event.get("ts"), self._localtime),
                str(event.get("kind", "?")),
                str(event.get("session_id") or ""),
                str(event.get("message", "")).replace("\n", " "),
                key=str(index),
            )
        if self.events:
            table.move_cursor(row=len(self.events) - 1)
        table.focus()

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        message.stop()
        index = int(str(message.row_key.value))
        self.app.push_screen(EventDetailScreen(self.events[index], self._localtime))

    def action_close(self) -> None:
        self.dismiss(None)
