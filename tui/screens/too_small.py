"""Shown instead of the layout when the terminal is smaller than the console needs.

A table squeezed into 40x10 shows nothing true; saying how big the terminal is and how
big it must be is more useful. The app pushes this screen on a resize below the minimum
and pops it when the terminal is large enough again.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

__all__ = ["TooSmallScreen"]


class TooSmallScreen(Screen[None]):
    """ "Please resize": the current size and the minimum."""

    BINDINGS = [Binding("q", "app.quit", "Quit")]
    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; }
    TooSmallScreen Static { width: auto; height: auto; text-align: center; }
    """

    def __init__(self, min_width: int, min_height: int) -> None:
        super().__init__()
        self.min_width = min_width
        self.min_height = min_height
        self._note = Static("")

    def compose(self) -> ComposeResult:
        yield self._note

    def on_mount(self) -> None:
        self.show(self.app.size.width, self.app.size.height)

    def show(self, width: int, height: int) -> None:
        text = Text(justify="center")
        text.append("Terminal too small\n", style="bold reverse")
        text.append(f"\nit is {width}x{height}; podwarden needs ")
        text.append(f"{self.min_width}x{self.min_height}\n", style="bold")
        text.append("please resize (q quits)")
        self._note.update(text)
