"""The main screen: header, gauges, the sessions table, the detail pane and the log.

It holds the key bindings (so modals on top do not inherit them) and turns keys into
app commands; it owns no backend data. In read-only mode ``check_action`` turns every
mutating key into a note that says it is off. ``show`` and ``tick`` are the only ways new
data reaches its widgets, and both are driven by the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from tui.format import LIVE_STATES
from tui.keys import KEY_OF, MUTATING, READ_ONLY_ACTION, bindings
from tui.model import SORTS, Filter, user_filter
from tui.screens.events import EventsScreen
from tui.screens.filter import FilterScreen
from tui.screens.help import HelpScreen
from tui.screens.new_session import NewSessionScreen
from tui.screens.quit import QuitScreen
from tui.screens.users import UsersScreen
from tui.settings import TuiSettings
from tui.widgets.capacity import CapacityGauges
from tui.widgets.detail import EVICT_NEXT_SYMBOL, DetailPane
from tui.widgets.log_panel import LogPanel
from tui.widgets.sessions_table import SessionsTable
from tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from tui.app import PodwardenApp

__all__ = ["MainScreen"]


class MainScreen(Screen[None]):
    """The console's one working screen."""

    BINDINGS: ClassVar[list[BindingType]] = [*bindings()]

    def __init__(self, settings: TuiSettings) -> None:
        super().__init__(name="main")
        self.settings = settings
        self.status = StatusBar(settings.localtime, id="status")
        self.status.app_title = settings.title
        self.status.read_only = settings.read_only
        self.gauges = CapacityGauges(id="gauges")
        self.table = SessionsTable(id="sessions")
        self.detail = DetailPane(settings.localtime, id="detail")
        batch = settings.flush_interval
        self.log_panel = LogPanel(settings.log_lines, settings.localtime, batch, id="log")
        self._ticked_at = 0.0

    @property
    def papp(self) -> PodwardenApp:
        return cast("PodwardenApp", self.app)

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.gauges
        yield self.table
        with Horizontal(id="bottom"):
            yield self.detail
            yield self.log_panel
        yield Footer()

    def on_mount(self) -> None:
        self.table.on_select = self._selected_changed
        self.table.border_title = "Sessions"
        self.detail.border_title = "Session"
        self.log_panel.border_title = "Events"
        self._fit(self.app.size.width)
        self.table.focus()

    def on_resize(self, event: Resize) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        if self.table.fit(width):
            self.table.rebuild(self.papp.view, self.papp.clock())
            self._titles()

    # ---------------------------------------------------------------- data in

    def show(self, changed: set[str], removed: set[str], now: float) -> None:
        """Apply what changed in the app's view to the widgets."""
        view = self.papp.view
        self.table.apply(view, changed, removed, now)
        if now - self._ticked_at >= 1.0:
            self.tick(now)
        health = view.health
        if health:
            self.status.runtime = str(health.get("runtime") or "?")
            self.status.status = str(health.get("status") or "")
            g = self.gauges
            g.active = int(health.get("active_sessions") or 0)
            g.max_sessions = int(health.get("max_sessions") or 0)
            g.starting = int(health.get("starting_sessions") or 0)
            g.failed = int(health.get("failed_sessions") or 0)
            g.queued = int(health.get("queued_acquires") or 0)
            g.standby = int(health.get("standby") or 0)
            self.status.draining = bool(health.get("draining"))
            per_user = health.get("max_sessions_per_user") or health.get("max_sessions")
            g.per_user_max = int(per_user or 0)
            self.status.orphans = len(health.get("orphans") or ())
            g.resources = health.get("resources")
            if self.table.with_resources(g.resources is not None):
                self._fit(self.app.size.width)
            g.targets = tuple(
                (str(t["name"]), str(t["state"]), int(t["active_sessions"]), int(t["max_sessions"]))
                for t in health.get("targets") or ()
            )
        counts = view.user_counts()
        self.gauges.users = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        selected = self.table.selected_id
        if selected is None or selected in changed or selected in removed:
            self._show_detail(now)
        self._titles()

    def tick(self, now: float) -> None:
        """Redraw what depends on the clock only."""
        self._ticked_at = now
        self.status.now = now
        self.table.tick(self.papp.view, now)
        self._show_detail(now)

    def show_detail(self) -> None:
        """Redraw the detail pane (the link changed: what it says may no longer hold)."""
        self._show_detail(self.papp.clock())

    def _show_detail(self, now: float) -> None:
        view = self.papp.view
        sid = self.table.selected_id
        session = view.sessions.get(sid) if sid else None
        events = view.session_events.get(sid, ()) if sid else ()
        if session is not None and sid == view.health.get("next_eviction"):
            session = {**session, "next_eviction": True}
        if session is not None and self.papp.link in ("stale", "auth"):
            session = {**session, "stale": True}
        self.detail.show(session, events, now)

    def _titles(self) -> None:
        view = self.papp.view
        flt = self.table.filter
        ended = 0 if flt.show_ended else view.ended()
        total = len(view.sessions) - ended
        shown = self.table.row_count
        title = f"Sessions {shown}" if shown == total else f"Sessions {shown} of {total}"
        if ended:
            title += f" (+{ended} ended, {KEY_OF['toggle_ended']} shows)"
        if flt.active:
            title += f" · filter: {flt.text}"
        sort = self.table.sort_by
        title += f" · sort: {sort}{' ▼' if self.table.sort_reverse else ' ▲'}"
        victim = view.sessions.get(str(view.health.get("next_eviction") or ""))
        if victim is not None and self.gauges.active >= self.gauges.max_sessions > 0:
            # Only worth the room when the next new session really evicts it.
            title += f" · {EVICT_NEXT_SYMBOL} next: {victim['user'] or 'standby'}"
        self.table.border_title = title

    def select(self, session_id: str) -> None:
        """Move the cursor to ``session_id`` if it is shown."""
        self.table._select(session_id)

    def _selected_changed(self, session_id: str | None) -> None:
        self._show_detail(self.papp.clock())
        if self.log_panel.source == "session":
            self._follow_selected()

    def _follow_selected(self) -> None:
        sid = self.table.selected_id
        if sid is None:
            self.log_panel.show_session(None, [])
        elif sid != self.log_panel.followed:
            self.log_panel.followed = sid
            self.papp.load_log(sid)

    # ---------------------------------------------------------------- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Read-only: a mutating key runs its note instead (and leaves the footer)."""
        if action == READ_ONLY_ACTION:
            return self.settings.read_only
        if action in MUTATING:
            return not self.settings.read_only
        return True

    def action_read_only(self, label: str) -> None:
        self.notify(
            f"{label} is unavailable in read-only mode (--read-only).",
            title="Read-only",
            severity="warning",
        )

    def _selected(self) -> dict[str, Any] | None:
        sid = self.table.selected_id
        session = self.papp.view.sessions.get(sid) if sid else None
        if session is None:
            self.notify("Select a session first (↑/↓).", title="No session", severity="warning")
        return session

    def action_new_session(self) -> None:
        app = self.papp
        selected = self.table.selected_id
        user = app.view.sessions[selected]["user"] if selected in app.view.sessions else ""
        modal = NewSessionScreen(app.templates, user=user, cursor_blink=self.settings.cursor_blink)
        self.app.push_screen(modal)

    def action_reuse(self) -> None:
        session = self._selected()
        if session is not None:
            self.papp.acquire(session["user"], session["template"], True, wait=True)

    def action_evict(self) -> None:
        session = self._selected()
        if session is None:
            return
        if session["state"] in ("terminating", "terminated"):
            self.notify(f"{session['session_id']} is already {session['state']}.", title="Evict")
            return
        self.papp.confirm_evict(session)

    def action_bulk_evict(self) -> None:
        """Every live session the filter shows, or else every one of the row's user."""
        view = self.papp.view
        flt = self.table.filter
        if flt.active:
            ids = view.ordered(self.table.sort_by, self.table.sort_reverse, flt)
            scope, user = f"matching {flt.text!r}", None
        else:
            session = self._selected()
            if session is None:
                return
            if session.get("standby") and not session.get("user"):
                self.notify(
                    "A standby workload belongs to no user: e evicts it alone, "
                    f"{KEY_OF['filter']} picks several.",
                    title="Evict all",
                    severity="warning",
                )
                return
            user = str(session["user"])
            ids = [sid for sid, s in view.sessions.items() if s.get("user") == user]
            scope = f"of {user}"
        live = [view.sessions[sid] for sid in ids if view.sessions[sid].get("state") in LIVE_STATES]
        if not live:
            self.notify(f"No live sessions {scope}.", title="Evict all")
            return
        self.papp.confirm_bulk_evict(live, user, scope)

    def action_pin(self) -> None:
        session = self._selected()
        if session is None:
            return
        sid = session["session_id"]
        if session.get("state") not in LIVE_STATES:
            self.notify(f"{sid} has ended: only live sessions can be pinned.", title="Pin")
            return
        if session.get("standby"):
            self.notify(
                f"{sid} is a standby workload: pin it once a user has claimed it.",
                title="Pin",
                severity="warning",
            )
            return
        self.papp.toggle_pin(sid, not session.get("pinned"))

    def action_drain(self) -> None:
        self.papp.ask_drain()

    def action_clean_orphans(self) -> None:
        orphans = [str(sid) for sid in self.papp.view.health.get("orphans") or ()]
        if not orphans:
            self.notify(
                "No orphaned workloads: the runtime runs only pool sessions.", title="Orphans"
            )
            return
        self.papp.confirm_remove_orphans(orphans)

    def action_toggle_logs(self) -> None:
        if self.maximized is self.log_panel:
            self.minimize()
        else:
            self.maximize(self.log_panel, container=False)

    def action_log_source(self) -> None:
        if self.log_panel.source == "events":
            self.log_panel.followed = None
            self.log_panel.source = "session"
            self._follow_selected()
        else:
            self.log_panel.show_events()

    def action_users(self) -> None:
        """Every user with live sessions; picking one filters the table to exactly them."""
        users = list(self.gauges.users)

        def done(user: str | None) -> None:
            if user is not None:
                self.set_filter(user_filter(user))

        self.app.push_screen(UsersScreen(users, self.gauges.per_user_max), done)

    def on_capacity_gauges_users_clicked(self, message: CapacityGauges.UsersClicked) -> None:
        message.stop()
        self.action_users()

    def action_browse_events(self) -> None:
        events = self.log_panel.events()
        self.app.push_screen(EventsScreen(events, "Events", self.settings.localtime))

    def action_session_events(self) -> None:
        session = self._selected()
        if session is None:
            return
        sid = str(session["session_id"])
        events = self.log_panel.events(sid)
        self.app.push_screen(EventsScreen(events, f"Events of {sid}", self.settings.localtime))

    def action_filter(self) -> None:
        self.app.push_screen(FilterScreen(self.table.filter.text, self.settings.cursor_blink))

    def set_filter(self, text: str) -> None:
        """Show only the sessions matching ``text`` (see ``tui.model.Filter``)."""
        self.table.filter = Filter(text, self.table.filter.show_ended)
        self.table.rebuild(self.papp.view, self.papp.clock())
        self._titles()
        self._rows_changed()

    def _rows_changed(self) -> None:
        """The shown rows changed (filter, ended toggle): the selection may have moved
        without a cursor event, so the detail pane and a followed log follow it here."""
        self._show_detail(self.papp.clock())
        if self.log_panel.source == "session" and self.log_panel.followed != self.table.selected_id:
            self._follow_selected()

    def action_clear(self) -> None:
        if self.maximized is not None:
            self.minimize()
        elif self.table.filter.active:
            self.set_filter("")

    def action_toggle_ended(self) -> None:
        flt = self.table.filter
        self.table.filter = Filter(flt.text, not flt.show_ended)
        self.table.rebuild(self.papp.view, self.papp.clock())
        self._titles()
        self._rows_changed()

    def action_sort(self) -> None:
        """Sort by the next shown column, in column order."""
        shown = [c.key for c in self.table.columns_shown if c.key in SORTS]
        current = self.table.sort_by
        if current in shown:
            following = shown[(shown.index(current) + 1) % len(shown)]
        else:
            following = shown[0]
        self.sort_by(following)

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort by ``column``; ascending unless ``reverse``."""
        self.table.sort_by = column
        self.table.sort_reverse = bool(reverse)
        self.table.rebuild(self.papp.view, self.papp.clock())
        self._titles()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by it; a second click reverses."""
        event.stop()
        column = str(event.column_key.value)
        if column not in SORTS:
            return
        same = column == self.table.sort_by
        self.sort_by(column, not self.table.sort_reverse if same else False)

    def action_sort_reverse(self) -> None:
        self.table.sort_reverse = not self.table.sort_reverse
        self.table.rebuild(self.papp.view, self.papp.clock())
        self._titles()

    def _copy(self, text: str, what: str) -> None:
        self.app.copy_to_clipboard(text)
        self.notify(text, title=f"Copied {what}", markup=False)

    def action_copy_tunnel(self) -> None:
        session = self._selected()
        if session is None:
            return
        tunnel = session.get("tunnel")
        if not tunnel or session["state"] not in ("starting", "ready", "refreshing"):
            self.notify(
                f"{session['session_id']} has no open tunnel.", title="Copy", severity="warning"
            )
            return
        self._copy(f"{tunnel['host']}:{tunnel['port']}", "tunnel address")

    def action_copy_id(self) -> None:
        session = self._selected()
        if session is not None:
            self._copy(session["session_id"], "session id")

    def action_pause(self) -> None:
        self.papp.set_paused(not self.papp.paused)
        self.notify("Live updates paused (p resumes)." if self.papp.paused else "Live updates on.")

    def action_quit(self) -> None:
        """Quit; in the embedded console ask first while sessions or API clients are live."""
        app = self.papp
        lifecycle = app.lifecycle
        if app.remote or lifecycle is None:
            app.exit(0)
            return
        counter = getattr(lifecycle, "api_clients", None)
        clients = int(counter()) if callable(counter) else 0
        # Standby workloads keep running too, though they belong to no user yet.
        sessions = sum(1 for s in app.view.sessions.values() if s.get("state") in LIVE_STATES)
        if not (sessions or clients):
            app.exit(0)
            return

        def done(yes: bool | None) -> None:
            if yes:
                app.exit(0)

        app.push_screen(QuitScreen(sessions, clients, app.client.api_address), done)

    def action_quit_now(self) -> None:
        self.papp.exit(0)

    def action_help(self) -> None:
        orphans = [str(sid) for sid in self.papp.view.health.get("orphans") or ()]
        self.app.push_screen(HelpScreen(self.settings.read_only, orphans))
