"""The drain and resume confirmations: what a drain refuses and what it keeps; Cancel first.

A drain is pool-wide: every new user is refused until someone resumes admission, so the
dialog says what stops (new sessions, requests queued for room) and what goes on (reuse
of existing sessions, everything running), offers the drain's one option (also stop
sessions as they go idle, so the pool empties), and starts with the focus on Cancel like
the evict dialog. Resuming stops nothing, so its dialog is not the red one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from rich.text import Text
from textual import on
from textual.widget import Widget

from tui.format import DRAIN_SYMBOL, clock_time, duration
from tui.screens.confirm import StopConfirmScreen
from tui.widgets.toggles import TickBox

__all__ = ["DrainScreen", "UndrainScreen"]


class DrainScreen(StopConfirmScreen):
    """Confirm draining the pool; dismisses with True to drain (see ``evict_idle``)."""

    TITLE_TEXT = "Drain the pool"
    CONFIRM_LABEL = "Drain"
    CONFIRM_ID = "drain"
    DEFAULT_CSS = """
    DrainScreen #evict-idle { width: 1fr; height: 1; margin-top: 1; }
    DrainScreen #evict-idle:focus { text-style: reverse; }
    """

    def __init__(self, live: int) -> None:
        super().__init__()
        self.live = live
        self.evict_idle = False
        """Whether the operator asked to stop sessions as they go idle, too."""

    @on(TickBox.Changed)
    def _evict_idle_changed(self, event: TickBox.Changed) -> None:
        self.evict_idle = event.value

    def body(self) -> Text:
        text = Text()
        text.append("Stop admitting new sessions?\n\n", style="bold")
        text.append("New sessions are refused (503 draining), and so are requests ")
        text.append("queued for room. A user's existing session is still handed back; ")
        live = "1 live session keeps" if self.live == 1 else f"{self.live} live sessions keep"
        text.append(f"the {live} running. D again resumes admission.")
        return text

    def controls(self) -> Iterable[Widget]:
        yield TickBox("Also stop sessions as they go idle", id="evict-idle")


class UndrainScreen(StopConfirmScreen):
    """Confirm resuming admission of new sessions; dismisses with True to undrain."""

    TITLE_TEXT = "Resume admission"
    CONFIRM_LABEL = "Resume"
    CONFIRM_ID = "undrain"
    CONFIRM_VARIANT = "primary"
    DEFAULT_CSS = """
    UndrainScreen #dialog { border: thick $primary; }
    """

    def __init__(
        self,
        since: float | None,
        now: float,
        localtime: Callable[[float], time.struct_time] = time.localtime,
    ) -> None:
        super().__init__()
        self.since = since
        self.now = now
        self._localtime = localtime

    def body(self) -> Text:
        text = Text()
        text.append(f"{DRAIN_SYMBOL} The pool is draining", style="bold")
        if self.since is not None:
            when = clock_time(self.since, self._localtime)
            text.append(f" since {when} ({duration(self.now - self.since)} ago)")
        text.append(".\n\n")
        text.append("Admit new sessions again?", style="bold")
        text.append(" New users get sessions, and standby workloads are refilled.")
        return text
