"""How sessions, times and states are written on screen.

Pure functions of the API's JSON shapes, so the table, the detail pane, the log panel and
the benchmarks format the same way and tests can check them without a terminal. Every
state is a symbol *and* a word: colour only adds to it (NO_COLOR, 16 colours, screen
readers and colour-blind operators see the same information).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text

__all__ = [
    "DEAD_STATES",
    "DRAIN_SYMBOL",
    "LIVE_STATES",
    "PIN_SYMBOL",
    "STATE_STYLE",
    "STATE_SYMBOL",
    "duration",
    "clip",
    "clock_time",
    "cull_text",
    "gauge_bar",
    "idle_since",
    "orphans_word",
    "percent",
    "ref_text",
    "size",
    "stale_cell",
    "state_text",
    "state_word",
    "tunnel_text",
    "usage_text",
]

STATE_SYMBOL: dict[str, str] = {
    "starting": "◌",
    "ready": "●",
    "refreshing": "↻",
    "unreachable": "?",
    "terminating": "▽",
    "terminated": "·",
    "failed": "✗",
}
"""A symbol per session state, shown before its word."""

STATE_STYLE: dict[str, str] = {
    "starting": "yellow",
    "ready": "green",
    "refreshing": "cyan",
    "unreachable": "bold yellow",
    "terminating": "magenta",
    "terminated": "dim",
    "failed": "bold red",
}
"""Colour per state (ANSI names, so 16-colour terminals show them as intended)."""

LIVE_STATES = frozenset({"starting", "ready", "refreshing", "unreachable"})
"""States that hold a capacity slot."""

DEAD_STATES = frozenset({"terminated", "failed"})
"""States whose clock has stopped: their ages no longer tick."""

_WORD = {"terminated": "ended", "terminating": "stopping"}

PIN_SYMBOL = "⚑"
"""Marks a pinned session (safe from eviction, idle culling and the maximum age)."""

DRAIN_SYMBOL = "⊘"
"""Marks a drained pool (no new sessions admitted)."""


def state_word(state: str) -> str:
    """The one word for a state that the row, the detail pane and the filter all use."""
    return _WORD.get(state, state)


def duration(seconds: float | None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: one or two units, at most 6 characters."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, rest = divmod(s, 60)
        return f"{m}m{rest:02d}s" if m < 10 else f"{m}m"
    if s < 86400:
        h, rest = divmod(s, 3600)
        return f"{h}h{rest // 60:02d}m" if h < 10 else f"{h}h"
    return f"{s // 86400}d"


def orphans_word(count: int) -> str:
    """``1 orphan`` / ``3 orphans``."""
    return f"{count} orphan{'' if count == 1 else 's'}"


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with an ellipsis where it was cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def clock_time(ts: float | None, localtime: Callable[[float], time.struct_time]) -> str:
    """``HH:MM:SS`` of a Unix time, or ``-``."""
    if ts is None:
        return "-"
    return time.strftime("%H:%M:%S", localtime(ts))


def state_text(session: dict[str, Any], now: float, width: int = 14) -> Text:
    """The state cell: ``● ready``; a starting session shows its phase and elapsed time."""
    state = str(session.get("state", "?"))
    symbol = STATE_SYMBOL.get(state, "?")
    word = state_word(state)
    if state == "starting":
        since = session.get("starting_since") or session.get("created_at") or now
        elapsed = duration(now - float(since))
        phase = str(session.get("phase") or "starting")
        if phase == "recycling" or phase.startswith("waiting"):
            phase = "recycle" if phase == "recycling" else "wait"
        word = f"{clip(phase, max(3, width - len(elapsed) - 3))} {elapsed}"
    return Text(clip(f"{symbol} {word}", width), style=STATE_STYLE.get(state, ""))


def tunnel_text(session: dict[str, Any], width: int = 26, stale: bool = False) -> Text:
    """``127.0.0.1:43981 -> :3000 ✓`` in 26 cells, ``:43981 -> :3000 ✓`` in 17, else
    ``:43981 ✓``; ✗ when the tunnel is not listening, ? when nobody can tell (``stale``).

    Only live sessions have a tunnel; ``listening`` is trusted when the backend reports
    it, else a ready session's tunnel counts as open.
    """
    tunnel = session.get("tunnel")
    state = session.get("state")
    if not tunnel or state not in LIVE_STATES:
        return Text("-", style="dim")
    listening = tunnel.get("listening")
    if listening is None:
        listening = state in ("ready", "refreshing")
    mark, style = ("✓", "") if listening else ("✗", "red")
    if stale:
        mark, style = "?", "dim"
    port, target = f":{tunnel['port']}", f" -> :{tunnel['target_port']}"
    for text in (f"{tunnel['host']}{port}{target} {mark}", f"{port}{target} {mark}"):
        if len(text) <= width:
            return Text(text, style=style)
    return Text(clip(f"{port} {mark}", width), style=style)


UNKNOWN = "? unknown"
"""The state cell of a live session while the link is down."""


def stale_cell(key: str, session: dict[str, Any], cell: Text, width: int) -> Text:
    """``cell`` of column ``key`` as shown while the link is down: dimmed; a session
    that may have changed since reads ``? unknown`` and its tunnel has no ✓."""
    state = session.get("state")
    if key == "state" and state not in DEAD_STATES:
        return Text(clip(UNKNOWN, width), style="dim")
    if key == "tunnel":
        return tunnel_text(session, width, stale=True)
    cell.stylize("dim")
    return cell


def ref_text(session: dict[str, Any]) -> str:
    """The workload's handle: ``pid 1234``, the pod/deployment name, or ``-``."""
    ref = session.get("runtime_ref")
    if not ref:
        return "-"
    if session.get("runtime") == "local" and str(ref).isdigit():
        return f"pid {ref}"
    return str(ref)


def idle_since(session: dict[str, Any]) -> float | None:
    """Since when the session has been idle: its last acquire or its last tunnel activity,
    whichever is later; the backend's ``idle_s`` is exactly ``now`` minus this."""
    used = session.get("last_used_at")
    active = session.get("last_active_at")
    times = [float(t) for t in (used, active) if t]
    return max(times) if times else None


def cull_text(session: dict[str, Any], now: float, width: int = 5) -> Text:
    """When a policy stops the session if it stays idle: ``12m``, ``now`` when due,
    ``⚑ pin`` for a pinned session (never culled), ``-`` without a policy or once ended."""
    if session.get("state") not in LIVE_STATES:
        return Text("-", style="dim", no_wrap=True)
    if session.get("pinned"):
        return Text(clip(f"{PIN_SYMBOL} pin", width), style="bold", no_wrap=True)
    cull_at = session.get("cull_at")
    if cull_at is None:
        return Text("-", style="dim", no_wrap=True)
    left = float(cull_at) - now
    if left <= 0:
        return Text("now", style="bold yellow", no_wrap=True)
    return Text(clip(duration(left), width), style="yellow" if left < 60 else "", no_wrap=True)


def gauge_bar(used: int, total: int, width: int) -> str:
    """A bar of ``width`` cells: ``█`` used, ``░`` free (readable without colour)."""
    if total <= 0 or width <= 0:
        return ""
    filled = min(width, round(width * used / total))
    if used and not filled:
        filled = 1
    return "█" * filled + "░" * (width - filled)


def size(n: float | None) -> str:
    """Bytes in at most 4 cells: ``512K``, ``120M``, ``1.2G``, ``32G``; ``-`` unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1000 or unit == "T":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)}B"
    return f"{value:.1f}{unit}" if value < 9.95 else f"{value:.0f}{unit}"


def percent(value: float | None) -> str:
    """``3%``, ``250%``; ``-`` unknown."""
    return "-" if value is None else f"{value:.0f}%"


def usage_text(session: dict[str, Any], width: int = 10) -> Text:
    """The CPU/MEM cell: ``3% 120M`` measured (CPU in % of one core); a pod's requests
    are marked ``r`` and dimmed (``r 25% 512M``): what it asks for, not what it uses."""
    source = session.get("resources_source")
    if not source or session.get("state") not in LIVE_STATES:
        return Text("-", style="dim")
    figures = f"{percent(session.get('cpu_percent'))} {size(session.get('memory_bytes'))}"
    if source == "requested":
        for text in (f"r {figures}", f"r{figures}"):
            if len(text) <= width:
                return Text(text, style="dim italic")
        return Text(clip(f"r{figures}", width), style="dim italic")
    return Text(clip(figures, width))
