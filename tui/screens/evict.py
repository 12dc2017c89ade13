"""The evict confirmation: names the user, the session and the workload; Cancel first.

Evicting stops a workload someone may be using, so the dialog says exactly what will be
stopped, starts with the focus on Cancel (a stray Enter does nothing harmful) and
treats esc as Cancel.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.format import ref_text

__all__ = ["EvictScreen"]


class EvictScreen(ModalScreen[bool]):
    """Confirm the eviction of one session; dismisses with True to evict."""

    AUTO_FOCUS = "#cancel"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    EvictScreen { align: center middle; }
    EvictScreen #dialog {
        width: 64; max-width: 100%; height: auto; max-height: 100%;
        border: thick $error; background: $surface; padding: 0 1;
    }
    EvictScreen #buttons { height: auto; align-horizontal: right; margin-top: 1; }
    EvictScreen Button { margin-left: 2; }
    """

    def __init__(self, session: dict[str, Any]) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
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
        with Vertical(id="dialog") as dialog:
            dialog.border_title = "Evict"
            yield Static(text)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Evict", variant="error", id="evict", compact=True)

    @on(Button.Pressed, "#evict")
    def _evict(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
