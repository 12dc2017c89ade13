"""Backend to UI: the one event worker, the sync workers, and how their news is applied.

Why it is built this way:

- One worker turns ``client.events()`` into messages. It does no UI work: it queues each
  event and posts ``EventsArrived`` only when the queue was empty, so 50 or 5,000 events
  a second cost one handler call per frame, never one per event.
- Every change of a session is an event that carries the session's document
  (``data["session"]``); it goes into the view and onto the screen in the handler that
  takes the event, with no read of the backend. Only the header's counts are read
  (``/health``, at most every ``flush_interval``). An event without a document (an older
  backend) marks its session dirty: a sync worker reads it.
- A full re-read stays as the fallback: on every (re)connection and every
  ``resync_interval``. A document an event brought while a read was under way is newer
  than what that read returns, so the read does not overwrite (or remove) it.
- A lost link (remote) marks the data STALE (rows dimmed, states unknown) and the worker
  reconnects over a backoff tuple, resuming the stream after the last event id it saw,
  so what happened meanwhile still arrives in order. A refused token (401/403) is no
  lost link: it says "authentication failed" and what to do, and stops retrying.
- Pausing holds events and documents back from the widgets and resyncs on resume.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App
from textual.timer import Timer

from backend.client import PodwardenClient
from backend.errors import SessionNotFound, Unauthorized
from tui.messages import EventsArrived, LinkChanged, PoolSynced
from tui.model import PoolView
from tui.settings import TuiSettings

if TYPE_CHECKING:
    from tui.screens.main import MainScreen

    _AppBase = App[int]
else:
    _AppBase = object

__all__ = ["QUIET_KINDS", "SyncMixin", "auth_failure", "is_auth_failure"]

QUIET_KINDS = frozenset({"log", "phase", "refresh_started"})
"""Events that only move a session along (their document is applied); the log panel
shows what they lead to (``ready``, ``refresh_ok``), not each step."""

_FETCH_ONE_BY_ONE = 20
"""Above this many changed sessions one ``list_sessions`` beats many ``get_session``."""
_INBOX = 5000
_FREEZE_AFTER = 200
"""Rows changed since the last freeze from which the heap is frozen again."""
_FREEZE_QUIET = 1.0
"""Seconds without another big change before the heap is frozen."""
_FREEZE_LATEST = 10.0
"""Seconds after which the heap is frozen even while changes keep coming."""


class SyncMixin(_AppBase):
    """The app's half that keeps ``self.view`` in step with the backend."""

    client: PodwardenClient
    settings: TuiSettings
    view: PoolView
    clock: Callable[[], float]
    remote: bool
    paused: bool
    started: bool
    link: str
    last_update: float | None
    _pending_changed: set[str]
    _pending_removed: set[str]

    if TYPE_CHECKING:

        @property
        def main(self) -> MainScreen | None: ...

        def set_link(self, state: str, detail: str = "") -> None: ...

        def follow_up(self, event: dict[str, Any]) -> None: ...

        async def on_connected(self) -> None: ...

    def _init_sync(self) -> None:
        self._inbox: collections.deque[dict[str, Any]] = collections.deque(maxlen=_INBOX)
        self._held: collections.deque[dict[str, Any]] = collections.deque(maxlen=_INBOX)
        self._dirty: set[str] = set()
        self._full_pending = False
        self._sync_running = False
        self._flush_scheduled = False
        self._lost_events = 0
        self._freeze_timer: Timer | None = None
        self._freeze_due = 0.0
        self._churn = 0
        self.clock_monotonic = time.monotonic
        self._health_due = False
        self._fresh: set[str] = set()
        """Sessions whose document came by event since the last read was taken in: the
        next read's document of them may be older, so it is not applied."""
        self.last_event_id: str | None = None
        """The id of the last event received: a reconnect resumes after it."""

    # ---------------------------------------------------------------- the event worker

    @work(group="events", exclusive=True, exit_on_error=False, name="event stream")
    async def pump_events(self) -> None:
        """Forever: follow the backend's events; on a lost link, reconnect with backoff."""
        backoff = self.settings.reconnect_backoff
        attempt = 0
        while True:
            try:
                await self.on_connected()
                self.post_message(LinkChanged("live" if self.remote else "embedded"))
                self.request_sync(full=True)
                async for event in self.client.events(after=self.last_event_id):
                    attempt = 0
                    self.last_event_id = event.get("id") or self.last_event_id
                    if len(self._inbox) == self._inbox.maxlen:
                        self._lost_events += 1
                    self._inbox.append(event)
                    if len(self._inbox) == 1:
                        self.post_message(EventsArrived())
                if not self.remote:
                    return
                raise ConnectionError("the event stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a lost link, whatever the transport says
                if is_auth_failure(e):
                    self.post_message(LinkChanged("auth", auth_failure(self.client.address, e)))
                    return  # the same token fails again: no retries until restarted
                self.post_message(LinkChanged("stale", _reason(e)))
            await asyncio.sleep(backoff[min(attempt, len(backoff) - 1)])
            attempt += 1
            self.post_message(LinkChanged("connecting"))

    def on_events_arrived(self, message: EventsArrived) -> None:
        events = list(self._inbox)
        self._inbox.clear()
        if self._lost_events:
            self._lost_events = 0
            self.request_sync(full=True)
        if self.paused:
            self._held.extend(events)
            return
        self.consume_events(events)

    def consume_events(self, events: list[dict[str, Any]]) -> None:
        """Apply the documents events carry, log and remember the events, and toast the
        outcomes the operator asked about."""
        shown: list[dict[str, Any]] = []
        logs: dict[str, list[str]] = {}
        docs: list[dict[str, Any]] = []
        gone: list[str] = []
        for event in events:
            sid = event.get("session_id")
            kind = event.get("kind")
            if kind == "log":
                if sid:
                    logs.setdefault(sid, []).append(str(event.get("message", "")))
                continue
            data = event.get("data") or {}
            doc = data.get("session")
            if isinstance(doc, dict) and doc.get("session_id") == sid:
                docs.append(doc)
                if data.get("standby_id"):
                    gone.append(str(data["standby_id"]))  # a claimed standby got a new id
                # Kept without the document: the view holds the session already, and a
                # dozen old copies per session would only weigh on the heap.
                event = {**event, "data": {k: v for k, v in data.items() if k != "session"}}
            elif sid:
                self._dirty.add(sid)
            self._health_due = True
            if kind not in QUIET_KINDS:
                shown.append(event)
                self.view.add_event(event)
            if sid:
                self.follow_up(event)
        if docs or gone:
            self._show_documents(docs, gone)
        main = self.main
        if main is not None:
            main.log_panel.add_events(shown)
            for sid, lines in logs.items():
                main.log_panel.add_session_lines(sid, lines)
        if self._dirty or self._health_due:
            self.request_sync()

    def _show_documents(self, docs: list[dict[str, Any]], gone: list[str]) -> None:
        """Put documents that came with events into the view and onto the screen now."""
        changed, _ = self.view.apply(docs, complete=False)
        removed = {sid for sid in gone if self.view.forget(sid)}
        self._fresh.update(d["session_id"] for d in docs)
        self._fresh.update(gone)
        self._dirty.difference_update(self._fresh)
        self._pending_changed |= changed
        self._pending_removed |= removed
        if self.started:
            self.last_update = self.clock()
        if not self.paused:
            self.show_pool()
        self._count_churn(len(changed) + len(removed))

    # ---------------------------------------------------------------- sync

    def request_sync(self, full: bool = False) -> None:
        """Read the dirty sessions (or all) soon; requests in between coalesce."""
        if full:
            self._full_pending = True
        if self._sync_running or self._flush_scheduled:
            return
        self._flush_scheduled = True
        if full or self.settings.flush_interval <= 0:
            self.call_later(self._flush_sync)
        else:
            self.set_timer(self.settings.flush_interval, self._flush_sync)

    def is_quiet(self) -> bool:
        """Nothing queued, scheduled or being read (tests and benchmarks wait for this)."""
        return not (
            self._inbox
            or self._dirty
            or self._full_pending
            or self._sync_running
            or self._flush_scheduled
            or self._pending_changed
            or self._health_due
        )

    def _flush_sync(self) -> None:
        self._flush_scheduled = False
        if self._sync_running or not self.started:
            return
        if self.link == "auth":  # refused: asking again only fails again
            self._dirty.clear()
            self._full_pending = self._health_due = False
            return
        if not (self._dirty or self._full_pending or self._health_due):
            return
        full = self._full_pending or len(self._dirty) > _FETCH_ONE_BY_ONE
        ids = [] if full else sorted(self._dirty)
        self._dirty.clear()
        self._full_pending = self._health_due = False
        self._sync_running = True
        self.sync_pool(ids, full)

    @work(group="sync", exit_on_error=False, name="read pool")
    async def sync_pool(self, ids: list[str], full: bool) -> None:
        """Read health and sessions; post them as one ``PoolSynced``."""
        # Only what events bring from now on is newer than this read; what they brought
        # before it began, the read reports too (with what changed since without an
        # event: resource figures, tunnel activity).
        self._fresh = set()
        try:
            health = await self.client.health()
            missing: list[str] = []
            if full:
                docs = await self.client.list_sessions()
            else:
                results = await asyncio.gather(
                    *(self.client.get_session(sid) for sid in ids), return_exceptions=True
                )
                docs = []
                for sid, result in zip(ids, results, strict=True):
                    if isinstance(result, SessionNotFound):
                        missing.append(sid)
                    elif isinstance(result, BaseException):
                        raise result
                    else:
                        docs.append(result)
            self.post_message(PoolSynced(docs, full, health, missing))
        finally:
            self._sync_running = False
            if self._dirty or self._full_pending:
                self.request_sync()

    def on_pool_synced(self, message: PoolSynced) -> None:
        if self.remote and self.link != "live":
            self.set_link("live")
        self.last_update = self.clock()
        if message.health is not None:
            self.view.health = message.health
        fresh, self._fresh = self._fresh, set()
        docs = [d for d in message.sessions if d["session_id"] not in fresh]
        if message.complete:  # those events brought are newer than this read: keep them
            docs += [self.view.sessions[sid] for sid in fresh if sid in self.view.sessions]
        changed, removed = self.view.apply(docs, complete=message.complete)
        removed |= {sid for sid in message.missing if sid not in fresh and self.view.forget(sid)}
        self._pending_changed |= changed
        self._pending_removed |= removed
        if not self.paused:
            self.show_pool()
        self._count_churn(len(changed) + len(removed))

    def _count_churn(self, rows: int) -> None:
        """Count changed rows; after many, freeze the heap once they settle."""
        self._churn += rows
        if self._churn >= _FREEZE_AFTER:
            # Wait for a quiet second, but under constant change not forever.
            now = self.clock_monotonic()
            if self._freeze_timer is None:
                self._freeze_due = now + _FREEZE_LATEST
            else:
                self._freeze_timer.stop()
            delay = max(0.01, min(_FREEZE_QUIET, self._freeze_due - now))
            self._freeze_timer = self.set_timer(delay, self.freeze_heap)

    def freeze_heap(self) -> None:
        """Move what exists now out of the garbage collector's sight (``gc.freeze``).

        With a thousand sessions on screen the heap holds hundreds of thousands of
        long-lived objects (rows, cells, Textual's strips and caches); a full collection
        then takes ~200 ms and freezes keys and frames. Frozen objects are still freed by
        reference counting; only cycles among them would be kept, and the console makes
        few. Called once big changes have settled for ``_FREEZE_QUIET`` seconds, or
        ``_FREEZE_LATEST`` seconds after they began if they do not settle.
        """
        self._freeze_timer = None
        self._churn = 0
        gc.freeze()

    def show_pool(self) -> None:
        """Hand what changed since the last call to the main screen."""
        main = self.main
        if main is None:
            return
        changed, removed = self._pending_changed, self._pending_removed
        self._pending_changed, self._pending_removed = set(), set()
        main.show(changed - removed, removed, self.clock())
        main.status.last_update = self.last_update

    def on_link_changed(self, message: LinkChanged) -> None:
        self.set_link(message.state, message.detail)

    # ---------------------------------------------------------------- pause

    def set_paused(self, paused: bool) -> None:
        """Hold (or release) live updates; on release everything is shown and re-read."""
        self.paused = paused
        if self.main is not None:
            self.main.status.paused = paused
        if not paused:
            held = list(self._held)
            self._held.clear()
            self.consume_events(held)
            self.show_pool()
            self.request_sync(full=True)


def is_auth_failure(error: BaseException) -> bool:
    """The backend refused the token (401, or 403 from a proxy in front of it)."""
    return isinstance(error, Unauthorized) or getattr(error, "status", None) in (401, 403)


def auth_failure(address: str, error: BaseException) -> str:
    """What a refused token means and what to do about it, in one line (shown after
    "Authentication failed")."""
    status = getattr(error, "status", None) or 401
    return (
        f"{address} refused the token (HTTP {status}). Check the "
        "token: --token-file FILE or the PODWARDEN_TOKEN environment variable, then start "
        "the console again"
    )


def _reason(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return str(message)
