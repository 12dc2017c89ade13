"""The help screen: every key, from the same table the bindings are made from, and
what the header's markers mean when one is showing (orphans)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.format import PIN_SYMBOL, orphans_word
from tui.keys import KEYS, TABLE_KEYS

__all__ = ["HelpScreen"]


class HelpScreen(ModalScreen[None]):
    """All keys of the console; any of esc, q, ? or F1 closes it."""

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #help {
        width: 72; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, read_only: bool = False, orphans: Sequence[str] = ()) -> None:
        super().__init__()
        self.read_only = read_only
        self.orphans = list(orphans)

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key in KEYS:
            text = Text(key.help)
            if key.mutating and self.read_only:
                text = Text(f"{key.help} (off: read-only)", style="dim")
            table.add_row(" ".join(key.shown.split()), text)
        for keys, description in TABLE_KEYS:
            table.add_row(keys, description)
        table.add_row("", "")
        table.add_row("", Text("States: ◌ starting  ● ready  ↻ refreshing", style="dim"))
        table.add_row("", Text("        ✗ failed  ▽ stopping  · ended", style="dim"))
        table.add_row("", Text("CULL:   when idle culling or max age stops it", style="dim"))
        table.add_row(
            "",
            Text(
                f"        {PIN_SYMBOL} pin: pinned, the pool never culls or evicts it", style="dim"
            ),
        )
        if self.orphans:
            fix = "O cleans them up" if not self.read_only else "read-only: cannot clean up"
            table.add_row("", "")
            table.add_row(
                Text(f"⚠ {orphans_word(len(self.orphans))}", style="bold yellow"),
                f"Workloads the runtime runs but the pool does not know; {fix}.",
            )
        with VerticalScroll(id="help") as box:
            box.border_title = "Keys"
            box.border_subtitle = "esc closes"
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
