"""The evict confirmation: names the user, the session and the workload; Cancel first.

Evicting stops a workload someone may be using, so the dialog says exactly what will be
stopped, starts with the focus on Cancel (a stray Enter does nothing harmful) and
treats esc as Cancel.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.format import ref_text
from tui.screens.confirm import StopConfirmScreen

__all__ = ["EvictScreen"]


class EvictScreen(StopConfirmScreen):
    """Confirm the eviction of one session; dismisses with True to evict."""

    TITLE_TEXT = "Evict"
    CONFIRM_LABEL = "Evict"
    CONFIRM_ID = "evict"

    def __init__(self, session: dict[str, Any]) -> None:
        super().__init__()
        self.session = session

    def body(self) -> Text:
        s = self.session
        text = Text()
        text.append("Evict this session?\n\n", style="bold")
        for label, value in (
            ("user", s["user"]),
            ("session", s["session_id"]),
            ("workload", ref_text(s)),
            ("state", s["state"]),
        ):
            text.append(f"{label:<9}", style="bold")
            text.append(f"{value}\n")
        text.append("\nIts workload is stopped and the cleanup verified; the user's next ")
        text.append("request starts a new session.")
        return text
