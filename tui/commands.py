"""UI to backend: every command runs in a worker, and every outcome is told in one place.

Commands (acquire, evict, bulk evict, pin, drain, remove orphans, read a log) are
``@work(exclusive=True, exit_on_error=False)`` workers, one group per kind, so a slow
backend never blocks a key and a repeated command replaces the one still waiting.
``on_worker_state_changed`` is the one handler that reports what they did: every outcome
gets a line in the log panel (which stays); failures also get a toast (which vanishes);
a refusal the new-session modal can show under its field keeps the modal open. Starts
and evictions the operator asked for get a toast when their events say how they ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App
from textual.worker import Worker, WorkerState

from backend.client import PodwardenClient
from backend.errors import InvalidRequest, PodwardenError, SessionNotFound
from tui.format import orphans_word
from tui.messages import CommandDone
from tui.model import PoolView
from tui.screens.bulk_evict import BulkEvictScreen, sessions_word
from tui.screens.drain import DrainScreen, UndrainScreen
from tui.screens.evict import EvictScreen
from tui.screens.new_session import NewSessionRequest, NewSessionScreen
from tui.screens.orphans import OrphansScreen
from tui.settings import TuiSettings
from tui.sync import _reason, auth_failure, is_auth_failure

if TYPE_CHECKING:
    from collections.abc import Callable

    from tui.screens.main import MainScreen

    _AppBase = App[int]
else:
    _AppBase = object

__all__ = ["CommandsMixin"]

_TITLES = {
    "invalid_request": "Invalid request",
    "unknown_template": "Unknown template",
    "not_found": "No such session",
    "session_ended": "Session ended",
    "pin_limit": "Pin limit",
    "draining": "Pool draining",
    "capacity": "Pool full",
    "start_failed": "Start failed",
    "runtime_unavailable": "Runtime unavailable",
    "unreachable": "Backend unreachable",
    "unauthorized": "Not authorized",
}


class CommandsMixin(_AppBase):
    """The app's half that sends commands and reports their outcomes."""

    client: PodwardenClient
    settings: TuiSettings
    view: PoolView
    read_only: bool
    remote: bool
    paused: bool
    clock: Callable[[], float]
    _asked: dict[str, str]
    _new_session_modal: NewSessionScreen | None
    _pending_changed: set[str]

    if TYPE_CHECKING:

        @property
        def main(self) -> MainScreen | None: ...

        def set_link(self, state: str, detail: str = "") -> None: ...

        def show_pool(self) -> None: ...

        def request_sync(self, full: bool = False) -> None: ...

    def request_session(self, request: NewSessionRequest, modal: NewSessionScreen | None) -> None:
        """Ask for a session (from the modal); the modal closes once the backend agrees."""
        if self.read_only:
            return
        self._new_session_modal = modal
        self.acquire(request.user, request.template, request.reuse, wait=False)

    def on_new_session_screen_submitted(self, message: NewSessionScreen.Submitted) -> None:
        screen = message.control if isinstance(message.control, NewSessionScreen) else None
        self.request_session(message.request, screen or self._top_new_session())

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

    @work(group="bulk", exclusive=True, exit_on_error=False, name="bulk evict")
    async def bulk_evict(self, ids: list[str], user: str | None, scope: str) -> CommandDone:
        """End many sessions: all of ``user`` in one call (``DELETE /sessions?user=``, the
        backend picks its live sessions), else each of ``ids`` in turn (ids the backend
        no longer knows count as gone). Cleanups arrive later as events."""
        if user is not None:
            answer = await self.client.delete_user_sessions(user)
            count = int(answer.get("count") or 0)
            return CommandDone("Evicting", f"{sessions_word(count)} {scope}: stopping")
        gone = 0
        for sid in ids:
            try:
                await self.client.delete_session(sid)
            except SessionNotFound:
                gone += 1
        text = f"{sessions_word(len(ids) - gone)} {scope}: stopping"
        if gone:
            text += f" ({gone} already gone)"
        return CommandDone("Evicting", text)

    def confirm_bulk_evict(
        self, sessions: list[dict[str, Any]], user: str | None, scope: str
    ) -> None:
        """Ask once, showing the count; evict them all on yes."""
        ids = [str(s["session_id"]) for s in sessions]

        def done(yes: bool | None) -> None:
            if yes:
                self.bulk_evict(ids, user, scope)

        self.push_screen(BulkEvictScreen(sessions, scope), done)

    @work(group="pin", exit_on_error=False, name="pin")
    async def toggle_pin(self, session_id: str, pin: bool) -> CommandDone:
        """Pin (or unpin) a session; the answer is its document. Not exclusive: pins of
        two rows in quick succession must both happen (pinning is idempotent)."""
        if pin:
            doc = await self.client.pin(session_id)
            text = f"{session_id}: safe from eviction, idle culling and max age"
            return CommandDone("Pinned", text, doc)
        doc = await self.client.unpin(session_id)
        return CommandDone("Unpinned", f"{session_id}: may be evicted or culled again", doc)

    @work(group="drain", exclusive=True, exit_on_error=False, name="drain")
    async def set_drain(self, drain: bool, evict_idle: bool = False) -> CommandDone:
        """Drain the pool (or resume admission); the header follows from health."""
        if not drain:
            await self.client.undrain()
            return CommandDone("Admitting", "new sessions are admitted again")
        await self.client.drain(evict_idle)
        text = "no new sessions are admitted; reuse is still served"
        if evict_idle:
            text += "; idle sessions are stopped"
        return CommandDone("Draining", text)

    @work(group="drain-ask", exclusive=True, exit_on_error=False, name="read drain")
    async def ask_drain(self) -> None:
        """Read whether the pool is drained now (a drain from the command line reaches the
        header only with the next health read), then ask to drain or to resume."""
        health = await self.client.health()
        draining = bool(health.get("draining"))
        if draining != bool(self.view.health.get("draining")):
            self.request_sync(full=True)  # the header was behind
        live = int(health.get("active_sessions") or 0)
        self.confirm_drain(draining, health.get("draining_since"), live)

    def confirm_drain(self, draining: bool, since: float | None, live: int) -> None:
        """Ask first; drain (or, when drained, resume admission) on yes."""
        if draining:
            undrain = UndrainScreen(since, self.clock(), self.settings.localtime)

            def resumed(yes: bool | None) -> None:
                if yes:
                    self.set_drain(False)

            self.push_screen(undrain, resumed)
            return
        screen = DrainScreen(live)

        def drained(yes: bool | None) -> None:
            if yes:
                self.set_drain(True, screen.evict_idle)

        self.push_screen(screen, drained)

    @work(group="orphans", exclusive=True, exit_on_error=False, name="remove orphans")
    async def remove_orphans(self, orphans: list[str]) -> CommandDone:
        """Stop each orphan in turn; ids the backend no longer lists count as gone.

        The first other failure ends the worker (reported like any command failure); what
        was removed before it shows as ``orphan_removed`` events in the log.
        """
        gone: list[str] = []
        for sid in orphans:
            try:
                await self.client.remove_orphan(sid)
            except SessionNotFound:
                gone.append(sid)
        asked = len(orphans) - len(gone)
        text = f"removing {orphans_word(asked)}; orphan_removed events follow"
        if gone:
            text += f" ({len(gone)} already gone)"
        return CommandDone("Orphans", text)

    def confirm_remove_orphans(self, orphans: list[str]) -> None:
        """Ask first; remove every listed orphan on yes."""

        def done(yes: bool | None) -> None:
            if yes:
                self.remove_orphans(orphans)

        self.push_screen(OrphansScreen(orphans), done)

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

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
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
            if worker.group in ("orphans", "drain", "bulk"):
                self.request_sync(full=True)  # the header's counts come from health
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
            if error is not None and is_auth_failure(error):
                self.set_link("auth", auth_failure(self.client.address, error))
            else:
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
