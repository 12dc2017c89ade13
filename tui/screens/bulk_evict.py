"""The bulk evict confirmation: one dialog for many sessions, with the count; Cancel first.

Evicting every session of a user, or every session the filter shows, stops workloads
several people may be using, so the one dialog says how many and of whom (``Evict 4
sessions of alice?``), names the first few, and says plainly that pinned sessions go too:
pinning guards against the pool's own eviction, idle culling and the maximum age, but an
eviction the operator asks for stops a pinned session like any other (as
``DELETE /sessions?user=`` does). Focus starts on Cancel; esc cancels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from tui.format import PIN_SYMBOL, state_word
from tui.screens.confirm import StopConfirmScreen

__all__ = ["BulkEvictScreen", "sessions_word"]

SHOWN = 6
"""Sessions listed by id; the rest are counted."""


def sessions_word(count: int) -> str:
    """``1 session`` / ``4 sessions``."""
    return f"{count} session{'' if count == 1 else 's'}"


class BulkEvictScreen(StopConfirmScreen):
    """Confirm evicting every listed session; dismisses with True to evict them."""

    TITLE_TEXT = "Evict sessions"
    CONFIRM_ID = "evict-all"

    def __init__(self, sessions: Sequence[dict[str, Any]], scope: str) -> None:
        super().__init__()
        self.sessions = list(sessions)
        self.scope = scope
        """Whose sessions, for the question: ``of alice``, ``matching "demo"``."""
        self.CONFIRM_LABEL = f"Evict {len(self.sessions)}"

    @property
    def pinned(self) -> int:
        return sum(1 for s in self.sessions if s.get("pinned"))

    def body(self) -> Text:
        text = Text()
        text.append(f"Evict {sessions_word(len(self.sessions))} {self.scope}?\n\n", style="bold")
        for s in self.sessions[:SHOWN]:
            mark = f" {PIN_SYMBOL}" if s.get("pinned") else ""
            text.append(f"• {s['session_id']} ")
            text.append(f"{state_word(str(s.get('state')))}{mark}\n", style="dim")
        rest = len(self.sessions) - SHOWN
        if rest > 0:
            text.append(f"… +{rest} more\n", style="dim")
        pinned = self.pinned
        if pinned:
            them = "it is" if pinned == 1 else "they are"
            text.append(f"\n{PIN_SYMBOL} {pinned} pinned: {them} evicted too", style="bold")
            text.append(" (a pin only keeps the pool itself from evicting or culling).\n")
        text.append("\nEach workload is stopped and its cleanup verified; a user's next ")
        text.append("request starts a new session.")
        return text
