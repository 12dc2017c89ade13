"""Every user with live sessions, busiest first; Enter drills down to one user's sessions.

The header's Users line holds only as many users as fit (``+6 more``); this is the whole
list, and the way from a user to a filter showing exactly their sessions.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

__all__ = ["UsersScreen"]


class UsersScreen(ModalScreen[str | None]):
    """Pick a user (dismissed with the name) or close (None)."""

    BINDINGS = [Binding("escape,q", "close", "Close")]
    DEFAULT_CSS = """
    UsersScreen { align: center middle; }
    UsersScreen #users {
        width: 60; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    UsersScreen OptionList { height: auto; max-height: 30; border: none; padding: 0; }
    UsersScreen OptionList:focus { border: none; }
    UsersScreen #hint { color: $text-muted; }
    """

    def __init__(self, counts: list[tuple[str, int]], per_user_max: int) -> None:
        super().__init__()
        self.counts = counts
        self.per_user_max = per_user_max

    def compose(self) -> ComposeResult:
        with Vertical(id="users") as box:
            box.border_title = f"Users · {len(self.counts)}"
            if not self.counts:
                yield Static("No user has a live session.", id="hint")
                return
            width = min(40, max(len(user) for user, _ in self.counts))
            limit = f"/{self.per_user_max}" if self.per_user_max else ""
            yield OptionList(
                *(
                    Option(Content(f"{user:<{width}}  {count}{limit}"), id=str(index))
                    for index, (user, count) in enumerate(self.counts)
                )
            )
            yield Static("enter: show only this user's sessions · esc: close", id="hint")

    def on_mount(self) -> None:
        if self.counts:
            self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.counts[int(str(event.option.id))][0])

    def action_close(self) -> None:
        self.dismiss(None)
