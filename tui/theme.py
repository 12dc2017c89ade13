"""The console's theme on terminals with 16 colours or fewer.

Textual's default theme is true colour; on a 16-colour terminal its orange accent (the
footer keys, the focused border) is rounded to bright red, the colour the console keeps
for failure. There, the console uses ANSI colours directly, with red for errors only.
"""

from __future__ import annotations

from textual.theme import Theme

__all__ = ["SIXTEEN_COLOURS", "theme_for"]

SIXTEEN_COLOURS = Theme(
    name="podwarden-16",
    ansi=True,
    primary="ansi_blue",
    secondary="ansi_cyan",
    accent="ansi_cyan",
    warning="ansi_yellow",
    error="ansi_red",
    success="ansi_green",
    foreground="ansi_default",
    background="ansi_default",
    surface="ansi_default",
    panel="ansi_default",
    boost="ansi_default",
    dark=True,
    variables={
        "ansi-background": "ansi_black",
        "ansi-foreground": "ansi_white",
        "border": "ansi_cyan",
        "border-blurred": "ansi_blue",
        "footer-key-foreground": "ansi_cyan",
        "block-cursor-foreground": "ansi_black",
        "block-cursor-background": "ansi_white",
        "input-cursor-background": "ansi_black",
        "input-cursor-foreground": "ansi_bright_white",
        "input-cursor-text-style": "none",
        "input-selection-background": "ansi_bright_blue",
        "input-selection-foreground": "ansi_black",
        "screen-selection-background": "ansi_bright_blue",
        "screen-selection-foreground": "ansi_black",
    },
)
"""Red is ``$error`` alone; keys and focus are cyan, borders blue."""


def theme_for(color_system: str | None) -> str | None:
    """The theme to switch to for a terminal's colour system, or None to keep the default.

    ``color_system`` is Rich's name: ``truecolor``, ``256``, ``standard`` (16 colours),
    ``windows`` (the legacy console's 16) or None (no colour)."""
    return SIXTEEN_COLOURS.name if color_system in ("standard", "windows") else None
