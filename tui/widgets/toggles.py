"""A radio button and a checkbox whose state is a character, not just a colour.

Textual draws an "off" toggle with the same glyph as an "on" one in another colour,
which NO_COLOR and monochrome terminals cannot tell apart. These draw ``●``/``○`` and
``X``/blank instead, and keep everything else of the originals.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox, RadioButton

__all__ = ["MarkedCheckbox", "MarkedRadioButton"]


class MarkedRadioButton(RadioButton):
    """A radio button showing ``●`` when chosen and ``○`` when not."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "●" if self.value else "○"
        return super()._button


class MarkedCheckbox(Checkbox):
    """A checkbox showing ``X`` when ticked and a blank when not."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "X" if self.value else " "
        return super()._button
