"""The quit confirmation of the embedded console: the HTTP API stops with it.

In the embedded console the API that scripts use lives in the console's process, so
quitting while sessions or API clients are live asks first and says what stops and what
keeps running. A second ``q`` (or ``Q``) quits at once; esc stays.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from tui.screens.confirm import StopConfirmScreen

__all__ = ["QuitScreen"]


class QuitScreen(StopConfirmScreen):
    """Dismisses with True to quit."""

    TITLE_TEXT = "Quit"
    CONFIRM_LABEL = "Quit"
    CONFIRM_ID = "quit"
    AUTO_FOCUS = "#quit"
    BINDINGS = [
        *StopConfirmScreen.BINDINGS,
        Binding("q,Q", "confirm", "Quit", show=False),
    ]

    def __init__(self, sessions: int, clients: int, api_address: str | None) -> None:
        super().__init__()
        self.sessions = sessions
        self.clients = clients
        self.api_address = api_address

    def body(self) -> Text:
        text = Text()
        text.append("Quit the console?\n\n", style="bold")
        api = f"The HTTP API at {self.api_address}" if self.api_address else "The HTTP API"
        text.append(f"{api} stops with it")
        if self.clients:
            text.append(f": {self.clients} connected client{'s' if self.clients != 1 else ''}")
            text.append(" lose it")
        text.append(".\n")
        if self.sessions == 1:
            text.append("1 live session keeps running and is re-adopted at the next start.\n")
        elif self.sessions:
            text.append(f"{self.sessions} live sessions keep running")
            text.append(" and are re-adopted at the next start.\n")
        text.append("\nq again quits, esc stays.", style="dim")
        return text

    def action_confirm(self) -> None:
        self.dismiss(True)
