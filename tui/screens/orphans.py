"""The orphan clean-up confirmation: which workloads go, and what that means; Cancel first.

Orphans are workloads the runtime runs but the pool does not know (the drift check finds
them; the backend never kills them on its own). Stopping them is the operator's call, so
the dialog names them (the first few, then how many more), says what happens, starts
with the focus on Cancel and treats esc as Cancel, like the evict dialog.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from tui.format import orphans_word
from tui.screens.confirm import StopConfirmScreen

__all__ = ["OrphansScreen"]

SHOWN = 8
"""Ids listed by name; the rest are counted."""


class OrphansScreen(StopConfirmScreen):
    """Confirm stopping every listed orphan; dismisses with True to remove them."""

    TITLE_TEXT = "Clean up orphans"
    CONFIRM_LABEL = "Remove"
    CONFIRM_ID = "remove"

    def __init__(self, orphans: Sequence[str]) -> None:
        super().__init__()
        self.orphans = list(orphans)

    def body(self) -> Text:
        text = Text()
        text.append(f"Remove {orphans_word(len(self.orphans))}?\n\n", style="bold")
        for sid in self.orphans[:SHOWN]:
            text.append(f"• {sid}\n")
        rest = len(self.orphans) - SHOWN
        if rest > 0:
            text.append(f"… +{rest} more\n", style="dim")
        text.append("\nThe runtime runs these workloads but the pool has no session for them. ")
        text.append("Each is stopped and removed from the runtime; anyone still connected ")
        text.append("to one loses it. No session of the pool is touched.")
        return text
