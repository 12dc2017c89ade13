"""What the TUI itself can be told, apart from the backend's settings.

The app never reads the wall clock, the terminal size policy or the update rates from
globals: they come from here, so tests and snapshots can fix the clock, switch off the
cursor blink and shrink the timers, and the command line can say read-only or no mouse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TuiSettings"]


@dataclass
class TuiSettings:
    """Options of the operator console; every field has a default fit for a real terminal."""

    read_only: bool = False
    """Leave the mutating keys (new, reuse, evict) unbound and show ``RO`` in the header."""
    mouse: bool = True
    """Whether the app asks the terminal for mouse events (``--no-mouse`` turns it off)."""
    clock: Callable[[], float] = time.time
    """Unix time now; ages, idle times and elapsed starts are measured against it."""
    localtime: Callable[[float], time.struct_time] = time.localtime
    """Turns a Unix time into wall-clock fields for display (tests pass ``time.gmtime``)."""
    cursor_blink: bool = True
    """Blink the text cursor in inputs (off in tests, so screenshots are stable)."""
    min_width: int = 60
    """Below this many columns the console shows "please resize" instead of its layout."""
    min_height: int = 15
    """Below this many lines the console shows "please resize" instead of its layout."""
    flush_interval: float = 0.25
    """Seconds between event arrival and the table refresh: events in between coalesce."""
    tick_interval: float = 1.0
    """Seconds between redraws of ages and elapsed times (no backend call involved)."""
    resync_interval: float = 10.0
    """Seconds between full re-reads of the pool, which also catch what no event tells."""
    reconnect_backoff: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
    """Seconds to wait before each reconnect attempt of a lost link; the last repeats."""
    log_lines: int = 1000
    """Lines the log panel keeps."""
    title: str = "podwarden"
    """Name shown first in the header."""
