"""The operator console: a Textual app over any ``PodwardenClient``.

``make_app(client, settings)`` builds it; the app never knows whether the backend is
embedded or remote beyond the link label. UI to backend is only by commands run in
``@work(exclusive=True, exit_on_error=False)`` workers, and every command's outcome,
success or failure, is reported from one ``Worker.StateChanged`` handler: a toast (which
vanishes) and a line in the log panel (which stays). Backend to UI is ``tui.sync``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from textual import on, work
from textual.app import App
from textual.events import Resize
from textual.worker import Worker, WorkerState

from backend.client import PodwardenClient
from backend.errors import InvalidRequest, PodwardenError
from tui.commands import ConsoleCommands
from tui.messages import CommandDone
from tui.model import PoolView
from tui.screens.evict import EvictScreen
from tui.screens.filter import FilterScreen
from tui.screens.main import MainScreen
from tui.screens.new_session import NewSessionRequest, NewSessionScreen
from tui.screens.too_small import TooSmallScreen
from tui.settings import TuiSettings
from tui.sync import SyncMixin, _reason

__all__ = ["Lifecycle", "PodwardenApp", "make_app"]


class Lifecycle(Protocol):
    """What an embedded backend needs around the app: started in its loop, stopped after."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


_TITLES = {
    "invalid_request": "Invalid request",
    "unknown_template": "Unknown template",
    "not_found": "No such session",
    "capacity": "Pool full",
    "start_failed": "Start failed",
    "runtime_unavailable": "Runtime unavailable",
    "unreachable": "Backend unreachable",
    "unauthorized": "Not authorized",
}


class PodwardenApp(SyncMixin, App[int]):
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
        self._init_sync()

    @property
    def main(self) -> MainScreen | None:
        """The main screen once it is installed."""
        screen = self._main if hasattr(self, "_main") else None
        return screen

    # ---------------------------------------------------------------- life

    def on_mount(self) -> None:
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
        now = self.clock()
        self.main.tick(now)
        starting = self.view.starting()
        if starting:
            self._dirty.update(starting)
            self.request_sync()

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
        """Record and show the link state; a newly lost link is said once, in the log."""
        if state == "connecting" and self.link == "stale":
            return  # retrying a lost link: it stays STALE, counting from the loss
        previous, self.link = self.link, state
        main = self.main
        if main is not None and state != previous:
            main.status.link = state
            main.status.link_since = self.clock()
        if state == "stale" and previous != "stale" and main is not None:
            main.log_panel.add_error("Link lost", detail or "no answer", self.clock())
            self.notify(detail or "no answer", title="Link lost", severity="warning", markup=False)

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

    # ---------------------------------------------------------------- commands

    def request_session(self, request: NewSessionRequest, modal: NewSessionScreen | None) -> None:
        """Ask for a session (from the modal); the modal closes once the backend agrees."""
        if self.read_only:
            return
        self._new_session_modal = modal
        self.acquire(request.user, request.template, request.reuse, wait=False)

    @on(NewSessionScreen.Submitted)
    def _new_session_submitted(self, message: NewSessionScreen.Submitted) -> None:
        screen = message.control if isinstance(message.control, NewSessionScreen) else None
        self.request_session(message.request, screen or self._top_new_session())

    @on(FilterScreen.Changed)
    def _filter_changed(self, message: FilterScreen.Changed) -> None:
        if self.main is not None:
            self.main.set_filter(message.text)

    def _top_new_session(self) -> NewSessionScreen | None:
        top = self.screen_stack[-1] if self.screen_stack else None
        return top if isinstance(top, NewSessionScreen) else None

    @work(group="acquire", exclusive=True, exit_on_error=False, name="acquire")
    async def acquire(
        self, user: str, template: str | None, reuse: bool, *, wait: bool
    ) -> CommandDone:
        """Acquire a session; its answer (or error) is reported by ``_worker_changed``."""
        doc = await self.client.acquire(user, template, reuse=reuse, wait=wait)
        new = bool(doc.get("is_new_session"))
        took = float(doc.get("took_ms") or 0.0)
        sid = doc["session_id"]
        if new and doc.get("state") != "ready":
            self._asked[sid] = "start"
            text = f"{sid} is starting ({doc.get('phase')}); a note follows when it is ready"
            return CommandDone("New session", text, doc)
        return CommandDone(
            "Reused" if not new else "New session",
            f"{sid} · is_new_session: {str(new).lower()} · took {took:.1f} ms",
            doc,
        )

    @work(group="evict", exclusive=True, exit_on_error=False, name="evict")
    async def evict(self, session_id: str) -> CommandDone:
        """Start deleting a session; the cleanup's end arrives later as an event."""
        doc = await self.client.delete_session(session_id)
        self._asked[session_id] = "evict"
        return CommandDone("Evicting", f"{session_id}: stopping; cleanup is verified next", doc)

    def confirm_evict(self, session: dict[str, Any]) -> None:
        """Ask first; evict on yes."""

        def done(yes: bool | None) -> None:
            if yes:
                self.evict(session["session_id"])

        self.push_screen(EvictScreen(session), done)

    @work(group="logs", exclusive=True, exit_on_error=False, name="read log")
    async def load_log(self, session_id: str) -> None:
        """Fetch a session's workload log tail into the log panel (then it follows)."""
        lines = await self.client.logs(session_id, 200)
        if self.main is not None:
            self.main.log_panel.show_session(session_id, lines)

    def follow_up(self, event: dict[str, Any]) -> None:
        """Toast how a start or eviction the operator asked for ended."""
        sid = event.get("session_id") or ""
        asked = self._asked.get(sid)
        kind = event.get("kind")
        if asked == "start" and kind in ("ready", "failed"):
            del self._asked[sid]
            title = "Session ready" if kind == "ready" else "Start failed"
            message = str(event.get("message"))
            if kind == "ready":
                self.notify(message, title=title, markup=False)
            else:
                self.notify(message, title=title, severity="error", markup=False)
        elif asked == "evict" and kind in ("cleanup_verified", "cleanup_leftover"):
            del self._asked[sid]
            ok = kind == "cleanup_verified"
            self.notify(
                str(event.get("message")),
                title="Evicted" if ok else "Cleanup incomplete",
                severity="information" if ok else "error",
                markup=False,
            )

    # ---------------------------------------------------------------- outcomes

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        """The one place command outcomes and worker failures are reported."""
        worker = event.worker
        if event.state is WorkerState.SUCCESS and isinstance(worker.result, CommandDone):
            done = worker.result
            if done.session is not None:
                doc = {
                    k: v for k, v in done.session.items() if k not in ("is_new_session", "took_ms")
                }
                self.post_message_pool([doc])
            if worker.group == "acquire":
                modal, self._new_session_modal = self._new_session_modal, None
                if modal is not None and modal.is_attached:
                    modal.dismiss(None)
                if done.session is not None and self.main is not None:
                    self.main.select(done.session["session_id"])
            self.notify(done.message, title=done.title, markup=False)
            if self.main is not None:
                self.main.log_panel.add_events(
                    [
                        {
                            "ts": self.clock(),
                            "kind": "command",
                            "message": f"{done.title}: {done.message}",
                        }
                    ]
                )
        elif event.state is WorkerState.ERROR:
            self._report_error(worker, worker.error)

    def _report_error(self, worker: Worker[Any], error: BaseException | None) -> None:
        code = getattr(error, "code", "")
        message = _reason(error) if error is not None else "failed"
        if worker.group in ("events", "sync"):
            self.set_link("stale", message)
            return
        if worker.group == "startup":
            self.exit(1, message=f"podwarden: cannot start: {message}")
            return
        title = _TITLES.get(code, f"{worker.name.capitalize()} failed")
        if worker.group == "acquire":
            modal = self._new_session_modal
            if modal is not None and modal.is_attached:
                field = error.field if isinstance(error, InvalidRequest) else None
                shown = error.problem if isinstance(error, InvalidRequest) else message
                modal.show_error(field if field in ("user", "template") else None, shown)
        if not isinstance(error, PodwardenError):
            message = f"{type(error).__name__}: {message}"
        self.notify(message, title=title, severity="error", markup=False)
        if self.main is not None:
            self.main.log_panel.add_error(title, message, self.clock())

    def post_message_pool(self, docs: list[dict[str, Any]]) -> None:
        """Show session documents a command returned, without waiting for a sync."""
        changed, removed = self.view.apply(docs, complete=False)
        self._pending_changed |= changed
        if not self.paused:
            self.show_pool()


def make_app(
    client: PodwardenClient,
    settings: TuiSettings | None = None,
    lifecycle: Lifecycle | None = None,
) -> PodwardenApp:
    """The console over ``client``; ``lifecycle`` starts/stops an embedded backend."""
    return PodwardenApp(client, settings or TuiSettings(), lifecycle)
