"""The orphan clean-up confirmation: which workloads go, and what that means; Cancel first.

Orphans are workloads the runtime runs but the pool does not know (the drift check finds
them; the backend never kills them on its own). Stopping them is the operator's call, so
the dialog names them (the first few, then how many more), says what happens, starts
with the focus on Cancel and treats esc as Cancel, like the evict dialog.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.format import orphans_word

__all__ = ["OrphansScreen"]

SHOWN = 8
"""Ids listed by name; the rest are counted."""


class OrphansScreen(ModalScreen[bool]):
    """Confirm stopping every listed orphan; dismisses with True to remove them."""

    AUTO_FOCUS = "#cancel"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    OrphansScreen { align: center middle; }
    OrphansScreen #dialog {
        width: 64; max-width: 100%; height: auto; max-height: 100%;
        border: thick $error; background: $surface; padding: 0 1;
    }
    OrphansScreen #buttons { height: auto; align-horizontal: right; margin-top: 1; }
    OrphansScreen Button { margin-left: 2; }
    """

    def __init__(self, orphans: Sequence[str]) -> None:
        super().__init__()
        self.orphans = list(orphans)

    def compose(self) -> ComposeResult:
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
        with Vertical(id="dialog") as dialog:
            dialog.border_title = "Clean up orphans"
            yield Static(text)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Remove", variant="error", id="remove", compact=True)

    @on(Button.Pressed, "#remove")
    def _remove(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
