"""Choices whose state is a character, not just a colour, built on public Textual API.

NO_COLOR and monochrome terminals cannot tell an "on" toggle from an "off" one drawn with
the same glyph in another colour, so these draw ``●``/``○`` and ``[X]``/``[ ]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.content import Content
from textual.events import Click
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

__all__ = ["Choice", "ChoiceList", "TickBox"]


@dataclass(frozen=True)
class Choice:
    """One entry of a ``ChoiceList``: what is shown and what it stands for."""

    label: str
    value: str | None


class ChoiceList(OptionList):
    """A one-of-many list where the highlighted entry *is* the choice.

    Arrow keys or a click move the choice at once (there is no separate "press" step to
    forget) and the chosen entry is marked ``●``. Enter posts ``Submitted``: on a form it
    means "send", as it does from a text field.
    """

    BINDINGS = [Binding("enter", "submit", "Submit", show=False)]

    @dataclass
    class Submitted(Message):
        """Enter was pressed on the list."""

        choice_list: ChoiceList

        @property
        def control(self) -> ChoiceList:
            return self.choice_list

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self))

    def __init__(self, choices: list[Choice], chosen: int = 0, *, id: str | None = None) -> None:
        self._choices = choices
        super().__init__(*(Option(self._prompt(c, False)) for c in choices), id=id)
        self._initial = chosen if 0 <= chosen < len(choices) else 0

    @staticmethod
    def _prompt(choice: Choice, chosen: bool) -> Content:
        return Content(f"{'●' if chosen else '○'} {choice.label}")

    def on_mount(self) -> None:
        if self._choices:
            self.highlighted = self._initial
            self._mark(self._initial)

    @property
    def value(self) -> str | None:
        """The chosen entry's value (None when the list is empty)."""
        index = self.highlighted
        if index is None or not 0 <= index < len(self._choices):
            return None
        return self._choices[index].value

    def _mark(self, chosen: int | None) -> None:
        for index, choice in enumerate(self._choices):
            self.replace_option_prompt_at_index(index, self._prompt(choice, index == chosen))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._mark(event.option_index)


class TickBox(Static, can_focus=True):
    """A checkbox drawn ``[X] label`` / ``[ ] label``; space or a click toggles it.

    Enter is not bound, so on a form it reaches the screen and submits.
    """

    BINDINGS = [Binding("space", "flip", "Toggle", show=False)]

    value: reactive[bool] = reactive(False)

    @dataclass
    class Changed(Message):
        """The box was ticked or cleared."""

        tick_box: TickBox
        value: bool

    def __init__(self, label: str, value: bool = False, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._label = label
        self.set_reactive(TickBox.value, value)

    def render(self) -> Content:
        return Content(f"[{'X' if self.value else ' '}] {self._label}")

    def watch_value(self, value: bool) -> None:
        self.post_message(self.Changed(self, value))

    def action_flip(self) -> None:
        self.value = not self.value

    def on_click(self, event: Click) -> None:
        event.stop()
        self.action_flip()
