"""The key map: one table that the bindings, the footer, the help screen, the command
palette and the README all come from, so they can never disagree.

Mutating keys (new, reuse, evict, pin, drain, clean up orphans) are marked; with
``--read-only`` each of them only says that it is off (the main screen's
``check_action`` picks that binding instead), and they leave the footer and the palette.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

__all__ = ["KEYS", "KEY_OF", "MUTATING", "READ_ONLY_ACTION", "Key", "bindings", "markdown_table"]


@dataclass(frozen=True)
class Key:
    """One key of the main screen."""

    keys: str
    """Textual key names, comma-separated (``question_mark,f1``)."""
    action: str
    """The main screen's action it runs."""
    label: str
    """Short label for the footer and the palette."""
    help: str
    """One line for the help screen and the palette."""
    shown: str
    """How people write the key (``?`` / ``F1``)."""
    mutating: bool = False
    """Changes the pool: in read-only mode it only says it is off."""
    footer: bool = False
    """Shown in the footer (the few that matter most)."""


KEYS: tuple[Key, ...] = (
    Key("n", "new_session", "New", "New session: user, template, reuse", "n", True, True),
    Key("r", "reuse", "Reuse", "Reuse the selected row's user session", "r", True, True),
    Key("e", "evict", "Evict", "Evict the selected session (asks first)", "e", True, True),
    Key(
        "E",
        "bulk_evict",
        "Evict all",
        "Evict every session of the user / filter (asks)",
        "E",
        True,
    ),
    Key("P", "pin", "Pin", "Pin / unpin: safe from eviction, culling, max age", "P", True),
    Key("D", "drain", "Drain", "Drain: admit no new sessions; again: resume (asks)", "D", True),
    Key(
        "O", "clean_orphans", "Clean up orphans", "Stop orphaned workloads (asks first)", "O", True
    ),
    Key("l", "toggle_logs", "Logs", "Maximize or restore the log panel", "l", footer=True),
    Key("o", "log_source", "Log source", "Log panel: backend events / session log", "o"),
    Key("v", "session_events", "Its events", "The selected session's events, each in full", "v"),
    Key("V", "browse_events", "Events", "Every event in a list; enter reads one in full", "V"),
    Key("slash", "filter", "Filter", "Filter by user, state or template", "/", footer=True),
    Key("escape", "clear", "Clear", "Clear the filter; restore the log panel", "esc"),
    Key("u", "users", "Users", "Every user; enter shows only that user's sessions", "u"),
    Key("a", "toggle_ended", "Ended", "Show or hide ended sessions", "a", footer=True),
    Key("s", "sort", "Sort", "Sort by the next column (or click a header)", "s"),
    Key("S", "sort_reverse", "Reverse", "Reverse the sort order", "S"),
    Key("c", "copy_tunnel", "Copy addr", "Copy the tunnel address (OSC 52)", "c"),
    Key("y", "copy_id", "Copy id", "Copy the session id (OSC 52)", "y"),
    Key("p", "pause", "Pause", "Pause or resume live updates", "p"),
    Key("question_mark,f1", "help", "Help", "Show every key", "? F1", footer=True),
    Key("colon", "app.command_palette", "Palette", "Command palette (also ctrl+p)", ": ^p"),
    Key("q", "quit", "Quit", "Quit (sessions keep running; asks first if live)", "q", footer=True),
    Key("Q", "quit_now", "Quit now", "Quit at once, without asking", "Q"),
)
"""Every key of the main screen, in the order the help screen lists them."""

MUTATING: frozenset[str] = frozenset(k.action for k in KEYS if k.mutating)
"""Actions that change the pool (off in read-only mode)."""

READ_ONLY_ACTION = "read_only"
"""The action a mutating key runs in read-only mode instead: it says the key is off."""

KEY_OF: dict[str, str] = {k.action: k.shown.split()[0] for k in KEYS}
"""How the key of each action is written (for hints on screen)."""

TABLE_KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓ j k", "Move the selection"),
    ("PgUp PgDn", "Page through the sessions"),
    ("g G", "First / last session"),
    ("tab", "Move focus (table, detail, log)"),
    ("enter (log)", "Read the events in a list, each in full"),
)
"""Navigation keys of the sessions table, listed on the help screen."""


def bindings() -> list[Binding]:
    """Bindings for the main screen: one per key, and for each mutating key a second,
    hidden one that says the key is off; ``check_action`` enables exactly one of the two
    (the first in normal mode, the second in read-only mode)."""
    out = []
    for k in KEYS:
        display = k.shown.split()[0]
        out.append(Binding(k.keys, k.action, k.label, show=k.footer, key_display=display))
        if k.mutating:
            refusal = f"{READ_ONLY_ACTION}({k.label!r})"
            out.append(Binding(k.keys, refusal, k.label, show=False, key_display=display))
    return out


def markdown_table() -> str:
    """The key map as a Markdown table (for the README)."""
    rows = ["| Key | Action |", "| --- | --- |"]
    rows += [f"| `{' / '.join(k.shown.split())}` | {k.help} |" for k in KEYS]
    rows += [f"| `{keys}` | {text} |" for keys, text in TABLE_KEYS]
    return "\n".join(rows)
