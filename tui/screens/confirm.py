"""A confirmation for actions that stop workloads: Cancel first, esc cancels.

Evicting a session and removing orphans both stop workloads someone may be using, so
both ask the same way: the dialog says exactly what will be stopped, starts with the
focus on Cancel (a stray Enter does nothing harmful) and treats esc as Cancel.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Static
from textual.widgets.button import ButtonVariant

__all__ = ["StopConfirmScreen"]


class StopConfirmScreen(ModalScreen[bool]):
    """Dismisses with True to go ahead; subclasses give the title, body and button."""

    TITLE_TEXT = "Confirm"
    """Border title of the dialog."""
    CONFIRM_LABEL = "Stop"
    """Label of the button that goes ahead."""
    CONFIRM_ID = "confirm"
    """Id of that button (tests press it by id)."""
    CONFIRM_VARIANT: ButtonVariant = "error"
    """Button variant of that button (``primary`` for an action that stops nothing)."""

    AUTO_FOCUS = "#cancel"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    StopConfirmScreen { align: center middle; }
    StopConfirmScreen #dialog {
        width: 64; max-width: 100%; height: auto; max-height: 100%;
        border: thick $error; background: $surface; padding: 0 1;
    }
    StopConfirmScreen #buttons { height: auto; align-horizontal: right; margin-top: 1; }
    StopConfirmScreen Button { margin-left: 2; }
    """

    def body(self) -> Text:
        """What will be stopped, and what that means."""
        raise NotImplementedError

    def controls(self) -> Iterable[Widget]:
        """Options shown between the body and the buttons (none by default)."""
        return ()

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = self.TITLE_TEXT
            yield Static(self.body())
            yield from self.controls()
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(
                    self.CONFIRM_LABEL,
                    variant=self.CONFIRM_VARIANT,
                    id=self.CONFIRM_ID,
                    compact=True,
                )

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == self.CONFIRM_ID)

    def action_cancel(self) -> None:
        self.dismiss(False)
