"""The filter prompt: a line at the bottom that narrows the table as you type.

``user:alice``, ``state:failed``, ``template:demo`` or bare words (matched anywhere).
Enter keeps the filter, esc clears it; both close the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input

__all__ = ["FilterScreen"]


class FilterScreen(ModalScreen[str]):
    """Edit the filter; every change is posted at once, the result is the final text."""

    BINDINGS = [Binding("escape", "clear", "Clear filter")]
    DEFAULT_CSS = """
    FilterScreen { align: left bottom; background: transparent; }
    FilterScreen Input { dock: bottom; width: 1fr; border: tall $accent; }
    """

    @dataclass
    class Changed(Message):
        """The filter text changed (while typing)."""

        text: str

    def __init__(self, text: str = "", cursor_blink: bool = True) -> None:
        super().__init__()
        self._text = text
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        field = Input(
            self._text,
            placeholder="filter: user:alice state:failed template:demo, or any word",
            id="filter",
        )
        field.cursor_blink = self._cursor_blink
        field.border_title = "/ filter · enter keeps · esc clears"
        yield field

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.post_message(self.Changed(event.value))

    @on(Input.Submitted)
    def _keep(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_clear(self) -> None:
        self.post_message(self.Changed(""))
        self.dismiss("")
