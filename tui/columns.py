"""The sessions table's columns: what each shows, from which fields, and which give way.

Kept apart from the widget because they are pure: a column renders a cell from a session
document, the clock and its width, and names the fields it reads, so the table can
redraw just the columns a change touched. ``LAYOUTS`` lists the column sets from the
richest down; the table takes the first one that leaves the session id enough room.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from tui.format import (
    DEAD_STATES,
    clip,
    cull_text,
    duration,
    idle_since,
    ref_text,
    state_text,
    tunnel_text,
    usage_text,
)

__all__ = [
    "CHROME",
    "COLUMNS",
    "ID_FIT",
    "ID_MAX",
    "ID_MIN",
    "LAYOUTS",
    "RESOURCE_LAYOUTS",
    "RESOURCES_MIN_WIDTH",
    "Column",
    "IdCell",
]

Cell = Text
Render = Callable[[dict[str, Any], float, int], Cell]


class IdCell(Text):
    """The id cell: clipped text that still knows the full session id (for sorting)."""

    def __init__(self, session_id: str, width: int) -> None:
        super().__init__(clip(session_id, width), no_wrap=True)
        self.session_id = session_id


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    render: Render
    fields: tuple[str, ...]
    """The session fields the cell is made from: it is redrawn only when one changes."""
    ticking: bool = False
    """Depends on the clock too (redrawn by ``tick``)."""


def _plain(text: str, style: str = "") -> Text:
    return Text(text, style=style, no_wrap=True)


def _ago(field: str) -> Render:
    def render(s: dict[str, Any], now: float, width: int) -> Cell:
        if s.get("state") in DEAD_STATES:
            return _plain("-", "dim")  # its clock stopped: no ticking on dead rows
        return _plain(duration(now - (s.get(field) or now)))

    return render


def _idle(s: dict[str, Any], now: float, width: int) -> Cell:
    """The idle time the API reports (``idle_s``): since the last acquire or tunnel use."""
    if s.get("state") in DEAD_STATES:
        return _plain("-", "dim")
    return _plain(duration(now - (idle_since(s) or now)))


def _user(s: dict[str, Any], now: float, width: int) -> Cell:
    if s.get("standby") and not s.get("user"):
        return _plain(clip("standby", width), "dim italic")  # warm, not yet any user's
    return _plain(clip(s["user"], width))


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column(
            "state",
            "STATE",
            12,
            lambda s, now, w: state_text(s, now, w),
            ("state", "phase", "created_at"),
            True,
        ),
        Column("id", "SESSION", 0, lambda s, now, w: IdCell(s["session_id"], w), ()),
        Column("user", "USER", 9, _user, ("user", "standby")),
        Column(
            "template",
            "TEMPLATE",
            9,
            lambda s, now, w: _plain(clip(s["template"], w)),
            ("template",),
        ),
        Column("age", "AGE", 5, _ago("created_at"), ("created_at", "state"), True),
        Column("idle", "IDLE", 5, _idle, ("last_used_at", "last_active_at", "state"), True),
        Column(
            "cull",
            "CULL",
            5,
            lambda s, now, w: cull_text(s, now, w),
            ("cull_at", "pinned", "state"),
            True,
        ),
        Column(
            "uses", "USES", 4, lambda s, now, w: _plain(str(s.get("use_count", 0))), ("use_count",)
        ),
        Column(
            "res",
            "CPU MEM",
            10,
            lambda s, now, w: usage_text(s, w),
            ("cpu_percent", "memory_bytes", "resources_source", "state"),
        ),
        Column("tunnel", "TUNNEL", 8, lambda s, now, w: tunnel_text(s, w), ("tunnel", "state")),
        Column(
            "ref",
            "PID/POD",
            10,
            lambda s, now, w: _plain(clip(ref_text(s), w)),
            ("runtime_ref", "runtime"),
        ),
    )
}

LAYOUTS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("state", "id", "user", "template", "age", "idle", "cull", "uses", "tunnel", "ref"), 26),
    (("state", "id", "user", "template", "age", "idle", "cull", "uses", "tunnel", "ref"), 17),
    (("state", "id", "user", "age", "idle", "cull", "uses", "tunnel", "ref"), 17),
    (("state", "id", "user", "age", "idle", "cull", "uses", "tunnel"), 8),
    (("state", "id", "user", "age", "idle", "cull", "tunnel"), 8),
    (("state", "id", "user", "age", "cull", "tunnel"), 8),
    (("state", "id", "user", "cull", "tunnel"), 8),
    (("state", "id", "user", "tunnel"), 8),
)
"""Column sets from the richest down, each with its tunnel width; the first whose
session id column still gets ``ID_FIT`` cells wins, so columns give way as it narrows."""
_WIDE = ("state", "id", "user", "template", "age", "idle", "cull")
RESOURCE_LAYOUTS: tuple[tuple[tuple[str, ...], int], ...] = (
    ((*_WIDE, "uses", "res", "tunnel", "ref"), 26),
    ((*_WIDE, "uses", "res", "tunnel", "ref"), 17),
    ((*_WIDE, "res", "tunnel", "ref"), 17),
    ((*_WIDE, "res", "tunnel", "ref"), 8),
    (("state", "id", "user", "age", "idle", "cull", "res", "tunnel", "ref"), 8),
    (("state", "id", "user", "age", "idle", "cull", "res", "tunnel"), 8),
    *LAYOUTS[3:],
)
"""``LAYOUTS`` with the CPU/MEM column (``res``), used when the backend reports resource
figures: USES (kept in the detail pane) and the tunnel's host and target give way to it
first; it gives way below ``RESOURCES_MIN_WIDTH`` (at 80 columns it would squeeze the
session id below ``ID_FIT``), where the layouts are ``LAYOUTS``' own."""
RESOURCES_MIN_WIDTH = 100
"""Narrowest table that shows the CPU/MEM column."""
ID_FIT, ID_MIN, ID_MAX = 19, 12, 40
CHROME = 3
"""Cells the table's border and scrollbar take."""
