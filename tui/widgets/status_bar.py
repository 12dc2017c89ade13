"""The header line: which runtime, which API, whether the data is live, and since when.

One line, because at 80x24 every line is a table row. Each state is a word; colour
only repeats it, so a stale link reads ``STALE`` in NO_COLOR too, a refused token
``AUTH FAILED`` with what to check, a link back ``reconnected after 12s`` for a while,
orphaned workloads read ``⚠ 2 orphans`` and a drained pool ``⊘ DRAINING``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui.format import DRAIN_SYMBOL, clip, clock_time, duration, orphans_word

__all__ = ["StatusBar"]

_LINK = {
    "embedded": ("● EMBEDDED", "green"),
    "live": ("● LIVE", "green"),
    "connecting": ("◌ CONNECTING", "yellow"),
    "stale": ("○ STALE", "bold reverse red"),
    "auth": ("✗ AUTH FAILED", "bold reverse red"),
}


class StatusBar(Widget):
    """Runtime, API address, link state, last update, and the RO / PAUSED markers."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $foreground;
    }
    """

    app_title: reactive[str] = reactive("podwarden")
    """Name shown first."""
    runtime: reactive[str] = reactive("…")
    """What runs the workloads: ``local``, ``kubernetes ctx/ns``."""
    api_address: reactive[str] = reactive("")
    """Where the HTTP API listens (embedded) or which URL we talk to (remote)."""
    link: reactive[str] = reactive("connecting")
    """``embedded``, ``live``, ``connecting``, ``stale`` or ``auth`` (token refused)."""
    link_since: reactive[float | None] = reactive(None)
    """When the link entered its state (for ``STALE 12s``)."""
    note: reactive[str] = reactive("")
    """Said after the link state: ``reconnected after 12s``, what to check."""
    note_until: reactive[float | None] = reactive(None)
    """When the note goes (None: it stays until the link changes)."""
    last_update: reactive[float | None] = reactive(None)
    """When the pool was last read successfully."""
    status: reactive[str] = reactive("")
    """Backend health: ``healthy``, ``degraded`` or empty before the first read."""
    read_only: reactive[bool] = reactive(False)
    """Read-only console: shows ``RO``."""
    paused: reactive[bool] = reactive(False)
    """Live updates paused: shows ``PAUSED``."""
    draining: reactive[bool] = reactive(False)
    """The pool is drained (admits no new sessions): shows ``⊘ DRAINING``."""
    orphans: reactive[int] = reactive(0)
    """Workloads the pool does not know (health ``orphans``): shows ``⚠ 2 orphans``."""
    now: reactive[float] = reactive(0.0)
    """The clock, advanced by the app's tick (drives the STALE age)."""

    def __init__(
        self, localtime: Callable[[float], time.struct_time] = time.localtime, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._localtime = localtime

    def render(self) -> Text:
        width = self.size.width or 80
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f" {self.app_title} ", style="bold")
        word, style = _LINK.get(self.link, (self.link.upper(), ""))
        if self.link == "stale" and self.link_since is not None:
            word += f" {duration(self.now - self.link_since)}"
        tags: list[tuple[str, str]] = []
        if self.read_only:
            tags.append((" RO ", "bold reverse yellow"))
        if self.paused:
            tags.append((" ‖ PAUSED ", "bold reverse"))
        if self.status == "degraded":
            tags.append((" ▲ DEGRADED ", "bold reverse red"))
        if self.draining:
            tags.append((f" {DRAIN_SYMBOL} DRAINING ", "bold reverse yellow"))
        if self.orphans:
            tags.append((f" ⚠ {orphans_word(self.orphans)} ", "bold reverse yellow"))
        parts = [clip(self.runtime, 28)]
        if self.api_address:
            parts.append(f"API {self.api_address}")
        line.append("│ " + " │ ".join(parts) + " │ ")
        line.append(word, style=style)
        if self.note and (self.note_until is None or self.now < self.note_until):
            line.append(f" {self.note}", style="bold" if self.link == "auth" else "")
        for text, tag_style in tags:
            line.append(" ")
            line.append(text, style=tag_style)
        if self.last_update is not None and width - line.cell_len >= 16:
            line.append(f" │ upd {clock_time(self.last_update, self._localtime)}", style="dim")
        return line
