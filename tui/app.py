"""The operator console: a Textual app over any ``PodwardenClient``.

``make_app(client, settings)`` builds it; the app never knows whether the backend is
embedded or remote beyond the link label. UI to backend is only by commands run in
``@work(exclusive=True, exit_on_error=False)`` workers, and every command's outcome,
success or failure, is reported from one ``Worker.StateChanged`` handler: a toast (which
vanishes) and a line in the log panel (which stays): ``tui.commands``. Backend to UI
is ``tui.sync``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from textual import on, work
from textual.app import App
from textual.events import Resize
from textual.notifications import SeverityLevel

from backend.client import PodwardenClient
from tui.commands import CommandsMixin
from tui.format import duration
from tui.model import PoolView
from tui.palette import ConsoleCommands
from tui.screens.filter import FilterScreen
from tui.screens.main import MainScreen
from tui.screens.new_session import NewSessionScreen
from tui.screens.too_small import TooSmallScreen
from tui.settings import TuiSettings
from tui.sync import SyncMixin
from tui.theme import SIXTEEN_COLOURS, theme_for

__all__ = ["Lifecycle", "PodwardenApp", "Toast", "make_app"]


@dataclass(frozen=True)
class Toast:
    """The notification on screen now (the console shows one at a time)."""

    title: str
    message: str
    severity: SeverityLevel


class Lifecycle(Protocol):
    """What an embedded backend needs around the app: started in its loop, stopped after."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class PodwardenApp(CommandsMixin, SyncMixin, App[int]):
    """Sessions, capacity, tunnels and logs of one pool, steered from the keyboard."""

    CSS_PATH = "app.tcss"
    COMMANDS = {ConsoleCommands}
    TITLE = "podwarden"

    def __init__(
        self,
        client: PodwardenClient,
        settings: TuiSettings,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.settings = settings
        self.lifecycle = lifecycle
        self.read_only = settings.read_only
        self.remote = client.address != "embedded"
        self.clock: Callable[[], float] = settings.clock
        self.view = PoolView()
        self.templates: list[dict[str, Any]] = []
        self.paused = False
        self.started = False
        self.link = "connecting"
        self.last_update: float | None = None
        self._pending_changed: set[str] = set()
        self._pending_removed: set[str] = set()
        self._asked: dict[str, str] = {}
        self._new_session_modal: NewSessionScreen | None = None
        self._stopped = False
        self._history_loaded = False
        self.toast: Toast | None = None
        self._init_sync()

    @property
    def main(self) -> MainScreen | None:
        """The main screen once it is installed."""
        screen = self._main if hasattr(self, "_main") else None
        return screen

    # ---------------------------------------------------------------- life

    def on_mount(self) -> None:
        self.register_theme(SIXTEEN_COLOURS)
        theme = theme_for(self.console.color_system)
        if theme is not None:
            self.theme = theme
        self._main = MainScreen(self.settings)
        self.push_screen(self._main)
        self._main.status.runtime = "connecting…" if self.remote else "starting backend…"
        self._check_size(self.size.width, self.size.height)
        # Paint the first screen before any backend work.
        self.call_after_refresh(self.start_backend)

    @work(group="startup", exclusive=True, exit_on_error=False, name="start")
    async def start_backend(self) -> None:
        """Start the embedded backend (if any), then follow it (``pump_events``)."""
        if self.lifecycle is not None:
            await self.lifecycle.start()
        if self.main is not None and self.client.api_address:
            self.main.status.api_address = self.client.api_address
        self.started = True
        self.pump_events()
        self.set_interval(self.settings.tick_interval, self._tick, name="tick")
        self.set_interval(self.settings.resync_interval, self._resync, name="resync")

    async def on_connected(self) -> None:
        """Read what only changes with the backend itself: templates, recent history.

        Called by the event worker on every (re)connection, so a remote backend that is
        down at start-up is picked up when it comes back.
        """
        self.templates = await self.client.templates()
        if not self._history_loaded:
            recent = await self.client.recent_events(100)
            for event in recent:
                self.view.add_event(event)
            if self.main is not None:
                self.main.log_panel.add_events(recent)
            self._history_loaded = True

    def _tick(self) -> None:
        if self.paused or self.main is None:
            return
        self.main.tick(self.clock())

    def _resync(self) -> None:
        if not self.paused:
            self.request_sync(full=True)

    async def stop_backend(self) -> None:
        """Stop following and stop the embedded backend; sessions keep running."""
        if self._stopped:
            return
        self._stopped = True
        self.workers.cancel_group(self, "events")
        try:
            await self.client.close()
        finally:
            if self.lifecycle is not None:
                await self.lifecycle.stop()

    async def on_unmount(self) -> None:
        # Every way out (q, ctrl+q, ctrl+c, a test's exit) passes here, inside the loop.
        await self.stop_backend()

    def set_link(self, state: str, detail: str = "") -> None:
        """Record and show the link state; a newly lost link is said once, in the log,
        and so is its return ("reconnected after 12s") and a refused token."""
        if state == "connecting" and self.link in ("stale", "auth"):
            return  # retrying a lost link: it stays STALE, counting from the loss
        if self.link == "auth" and state == "stale":
            return  # a refused token stays the reason shown
        previous, self.link = self.link, state
        main = self.main
        if main is None or state == previous:
            return
        now = self.clock()
        lost_at = main.status.link_since
        main.status.link = state
        main.status.link_since = now
        main.status.note = ""
        main.table.stale = state in ("stale", "auth")
        main.show_detail()
        if state == "stale":
            main.log_panel.add_error("Link lost", detail or "no answer", now)
            self.notify(detail or "no answer", title="Link lost", severity="warning", markup=False)
        elif state == "auth":
            main.status.runtime = "not connected"
            main.status.note = "check the token: --token-file / PODWARDEN_TOKEN"
            main.log_panel.add_error("Authentication failed", detail, now)
            self.notify(
                detail, title="Authentication failed", severity="error", timeout=30, markup=False
            )
        elif state == "live" and previous == "stale" and lost_at is not None:
            note = f"reconnected after {duration(now - lost_at)}"
            main.status.note, main.status.note_until = note, now + 30
            main.log_panel.add_events([{"ts": now, "kind": "link", "message": note}])

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Show one toast, replacing any other: stacked toasts cover the screen at 80x24.

        Only what needs the operator's eye is toasted (failures, the end of something they
        asked for that took a while, a copy); routine successes go to the event log alone.
        """
        self.clear_notifications()
        self.toast = Toast(title, message, severity)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # ---------------------------------------------------------------- size

    def on_resize(self, event: Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        small = width < self.settings.min_width or height < self.settings.min_height
        top = self.screen_stack[-1] if self.screen_stack else None
        if small and not isinstance(top, TooSmallScreen):
            self.push_screen(TooSmallScreen(self.settings.min_width, self.settings.min_height))
        elif small and isinstance(top, TooSmallScreen):
            top.show(width, height)
        elif not small and isinstance(top, TooSmallScreen):
            self.pop_screen()

    @on(FilterScreen.Changed)
    def _filter_changed(self, message: FilterScreen.Changed) -> None:
        if self.main is not None:
            self.main.set_filter(message.text)


def make_app(
    client: PodwardenClient,
    settings: TuiSettings | None = None,
    lifecycle: Lifecycle | None = None,
) -> PodwardenApp:
    """The console over ``client``; ``lifecycle`` starts/stops an embedded backend."""
    return PodwardenApp(client, settings or TuiSettings(), lifecycle)
