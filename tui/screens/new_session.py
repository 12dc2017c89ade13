"""The new-session modal: user, template, reuse; it stays open until the backend agrees.

Errors are shown under the field they concern. What can be checked here (an empty or
overlong user, control characters) is checked before anything is sent; what only the
backend knows (an unknown template, a full pool) comes back from the request and lands
in the same place. The modal closes only when the backend accepted the request, so a
mistake never costs the operator their typing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from backend.errors import InvalidRequest
from backend.models import validate_user
from tui.widgets.toggles import Choice, ChoiceList, TickBox

__all__ = ["NewSessionRequest", "NewSessionScreen"]


@dataclass(frozen=True)
class NewSessionRequest:
    """What the operator asked for."""

    user: str
    template: str | None
    reuse: bool


class NewSessionScreen(ModalScreen[None]):
    """Ask for user, template and reuse; hand the request to the app; show its errors."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "submit", "Start")]
    DEFAULT_CSS = """
    NewSessionScreen { align: center middle; }
    NewSessionScreen #dialog {
        width: 64; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    NewSessionScreen .error { color: $error; height: auto; }
    NewSessionScreen .error.-empty { display: none; }
    NewSessionScreen ChoiceList {
        width: 1fr; height: auto; max-height: 6; border: none; padding: 0;
    }
    NewSessionScreen ChoiceList:focus { border: none; }
    NewSessionScreen TickBox { width: 1fr; height: 1; margin-top: 1; }
    NewSessionScreen TickBox:focus { text-style: reverse; }
    NewSessionScreen #buttons { height: auto; align-horizontal: right; margin-top: 1; }
    NewSessionScreen #buttons Button { margin-left: 2; }
    """

    @dataclass
    class Submitted(Message):
        """The operator asked for a session; the app sends it and reports back here."""

        request: NewSessionRequest

    busy: reactive[bool] = reactive(False)
    """A request is on its way: Start is disabled until it returns."""

    def __init__(
        self,
        templates: list[dict[str, Any]],
        *,
        user: str = "",
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self._templates = templates
        self._user = user
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = "New session"
            yield Label("User")
            user = Input(self._user, placeholder="user name, e.g. alice", id="user")
            user.cursor_blink = self._cursor_blink
            yield user
            yield Static("", id="user-error", classes="error -empty")
            yield Label("Template  (↑/↓ to choose)")
            yield ChoiceList(self._choices(), self._default_choice(), id="template")
            yield Static("", id="template-error", classes="error -empty")
            yield TickBox("Reuse the user's ready session if there is one", True, id="reuse")
            yield Static("", id="error", classes="error -empty")
            with Horizontal(id="buttons"):
                yield Button("Start", variant="primary", id="start", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def _choices(self) -> list[Choice]:
        if not self._templates:
            return [Choice("(backend default)", None)]
        return [
            Choice(f"{t['name']} :{t['port']}" if t.get("port") else str(t["name"]), str(t["name"]))
            for t in self._templates
        ]

    def _default_choice(self) -> int:
        defaults = [i for i, t in enumerate(self._templates) if t.get("default")]
        return defaults[0] if defaults else 0

    def on_mount(self) -> None:
        self.query_one("#user", Input).focus()

    def watch_busy(self, busy: bool) -> None:
        self.query_one("#start", Button).disabled = busy
        self.query_one("#start", Button).label = "Starting…" if busy else "Start"

    def request(self) -> NewSessionRequest | None:
        """The request in the form, or None after showing why it cannot be sent.

        The user name is trimmed here: a stray space typed in a form is not a new user
        (the API, which cannot guess, refuses surrounding whitespace instead)."""
        self.clear_errors()
        user = self.query_one("#user", Input).value.strip()
        try:
            validate_user(user)
        except InvalidRequest as e:
            self.show_error("user", e.problem)
            return None
        template = self.query_one("#template", ChoiceList).value
        return NewSessionRequest(user, template, self.query_one("#reuse", TickBox).value)

    def clear_errors(self) -> None:
        for name in ("user-error", "template-error", "error"):
            note = self.query_one(f"#{name}", Static)
            note.update("")
            note.add_class("-empty")

    def show_error(self, field: str | None, message: str) -> None:
        """Show ``message`` under ``field`` (``user``, ``template``) or at the bottom."""
        self.busy = False
        target = {"user": "#user-error", "template": "#template-error"}.get(field or "", "#error")
        note = self.query_one(target, Static)
        note.update(f"✗ {message}")
        note.remove_class("-empty")
        if field == "user":
            self.query_one("#user", Input).focus()

    @on(Input.Changed, "#user")
    def _user_edited(self, event: Input.Changed) -> None:
        """An error about the old input is stale once the input changes."""
        event.stop()
        if not self.busy:
            self.clear_errors()

    @on(Input.Submitted, "#user")
    @on(Button.Pressed, "#start")
    @on(ChoiceList.Submitted, "#template")
    def _submit(self, event: Input.Submitted | Button.Pressed | ChoiceList.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        """Send the request (Enter from any field, or the Start button)."""
        if self.busy:
            return
        request = self.request()
        if request is not None:
            self.busy = True
            self.post_message(self.Submitted(request))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
