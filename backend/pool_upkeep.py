"""The pool's upkeep: how sessions end, and how liveness, refresh and recovery change them.

Deletes and evictions end sessions here (one stop task per session, its cleanup verified
through the ``WorkloadStopper``). The liveness checker, the refresher, the drift check,
the runtime's "workload lost" callback and start-up recovery never touch a session's
state themselves; they call these verbs, which keep the pool's bookkeeping (slots, LRU
order, single-flight starts) right. ``SessionPool`` inherits them; they are apart only to
keep each module readable.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from backend.cleanup import StopOutcome, WorkloadStopper
from backend.config import Settings
from backend.errors import RuntimeUnavailable, StartError
from backend.events import EventBus, EventKind
from backend.launcher import Launcher
from backend.logs import SessionLogs
from backend.metrics import PoolMetrics
from backend.models import STANDBY_USER, Session, SessionState, WorkloadHandle
from backend.record import Flight, Key, SessionRecord
from backend.runtime.base import Runtime
from backend.store import Store
from backend.templates import Template
from backend.tunnels import PortAllocator

if TYPE_CHECKING:
    from backend.capacity import Capacity

__all__ = ["REUSABLE", "UpkeepVerbs"]

REUSABLE = (SessionState.READY, SessionState.REFRESHING)
"""States in which a session may be handed out."""

_KEEP_ENDED = 100
"""Ended sessions kept for people to read how they ended."""


class UpkeepVerbs:
    """Liveness, refresh and recovery verbs of ``SessionPool``."""

    settings: Settings
    runtime: Runtime
    bus: EventBus
    ports: PortAllocator
    metrics: PoolMetrics
    capacity: Capacity
    clock: Callable[[], float]
    _records: dict[str, SessionRecord]
    _primary: dict[Key, SessionRecord]
    _flights: dict[Key, Flight]
    _launcher: Launcher
    _ended: collections.deque[str]
    logs: SessionLogs
    store: Store | None
    stopper: WorkloadStopper
    standby_wakeup: Callable[[], None] | None

    if TYPE_CHECKING:

        @property
        def running(self) -> bool: ...

        def get(self, session_id: str) -> Session: ...

        def _save(self, record: SessionRecord) -> None: ...

        def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

        async def _start(
            self,
            record: SessionRecord,
            template: Template,
            victim: Session | None,
            how: str = "fresh",
        ) -> None: ...

        def _end_flight(self, flight: Flight, result: Session | BaseException) -> None: ...

        def _withdrawn(self, *, deleted: bool = False) -> Exception: ...

        async def stop_through_outage(
            self,
            handle: WorkloadHandle | None,
            *,
            session_id: str,
            user: str | None,
            why: str,
            started: float | None = None,
            record: SessionRecord | None = None,
            finish: Callable[[StopOutcome], dict[str, Any]] | None = None,
        ) -> StopOutcome: ...

    # ----------------------------------------------------------------- terminate

    def delete(self, session_id: str, reason: str = "deleted") -> Session:
        """Start ending the session; returns at once. Cleanup runs in the background and
        a ``cleanup_verified`` (or ``cleanup_leftover``) event says when it is done."""
        session = self.get(session_id)
        self._begin_terminate(self._records[session_id], reason, EventKind.TERMINATING)
        return session

    async def terminate(self, session_id: str, reason: str = "deleted") -> Session:
        """End the session and return once its cleanup is verified."""
        session = self.get(session_id)
        task = self._begin_terminate(self._records[session_id], reason, EventKind.TERMINATING)
        if task is not None:
            await asyncio.shield(task)
        return session

    def _release(self, record: SessionRecord) -> None:
        """Give back the session's slot; called once, when it leaves the live states."""
        if self._primary.get(record.key) is record:
            del self._primary[record.key]
        self.capacity.release(record.session)
        if self.standby_wakeup is not None:
            self.standby_wakeup()

    def _evict(self, victim: Session, user: str) -> None:
        why = "least recently used"
        if victim.standby:
            why = "a standby gives its slot to a user's session"
        self._begin_terminate(
            self._records[victim.session_id],
            f"evicted ({why}) to make room for {user}",
            EventKind.EVICTED,
        )

    def _begin_terminate(
        self, record: SessionRecord, reason: str, kind: EventKind | None
    ) -> asyncio.Task[None] | None:
        session = record.session
        if record.stop_task is not None:
            return record.stop_task
        if session.state is SessionState.TERMINATED:
            return None
        was_live = session.state.is_live
        session.transition(SessionState.TERMINATING)
        session.phase = "terminating"
        if kind is not None:
            self.bus.publish_session(kind, f"{session.session_id}: {reason}", session)
        self._save(record)
        record.stop_task = self._spawn(self._terminate(record, reason), f"stop {record.key}")
        if was_live:
            self._release(record)
        return record.stop_task

    async def _terminate(self, record: SessionRecord, reason: str) -> None:
        session = record.session
        started = time.monotonic()
        flight = record.flight
        if flight is not None and flight.task is not None and not flight.task.done():
            flight.task.cancel()
            await asyncio.gather(flight.task, return_exceptions=True)
        await self._launcher.close_tunnel(record)
        handle, session.handle = session.handle, None

        def ended(outcome: StopOutcome) -> dict[str, Any]:
            # Before the cleanup event is published: it carries the ended session. A stop
            # retried through an outage ends it at the first attempt; later ones update how
            # its cleanup ended.
            if session.state is not SessionState.TERMINATED:
                self._launcher.release_port(record)
                record.credentials = {}
                session.transition(SessionState.TERMINATED)
                self.metrics.terminations += 1
            session.cleanup = outcome.describe()
            session.phase = "terminated"
            return {"session": session.to_dict()}

        await self.stop_through_outage(
            handle,
            session_id=session.session_id,
            user=session.user,
            why=reason,
            started=started,
            record=record,
            finish=ended,
        )
        if self.store is not None:
            self.store.delete(session.session_id)
        record.stop_task = None
        self._remember_ended(record)

    def _remember_ended(self, record: SessionRecord) -> None:
        """Keep ended sessions for a while so people can read how they ended."""
        self._ended.append(record.session_id)
        while len(self._ended) > _KEEP_ENDED:
            old = self._ended.popleft()
            gone = self._records.get(old)
            if gone is not None and not gone.session.state.is_live and gone.stop_task is None:
                del self._records[old]
                self.logs.drop(old)
                if self.store is not None and gone.session.state is SessionState.FAILED:
                    self.store.delete(old)

    # ----------------------------------------------------------------- liveness verbs

    async def _still_alive(self, record: SessionRecord) -> bool:
        """Probe a reuse's stale session first (one probe for concurrent reuses)."""
        if record.checking is None:
            task = self._spawn(self.check_liveness(record.session), f"check {record.key}")
            record.checking = task
            task.add_done_callback(lambda _: setattr(record, "checking", None))
        alive = await asyncio.shield(record.checking)
        return alive and record.session.state in REUSABLE and record.flight is None

    async def check_liveness(self, session: Session) -> bool:
        """Probe a ready session's workload (``liveness_timeout``); True if it is alive.

        A failed probe recycles the session or removes it (``on_refresh_failure``) and
        says why in a ``liveness_failed`` event. A runtime that cannot be asked says
        nothing about the workload: that counts as alive, and the check stays due.
        """
        record = self._records.get(session.session_id)
        template = self.settings.templates.get(session.template)
        handle = session.handle
        if record is None or template is None or handle is None:
            return False
        if session.state not in REUSABLE:
            return False
        timeout = self.settings.pool.liveness_timeout
        try:
            probe = await asyncio.wait_for(self.runtime.probe(handle, template), timeout)
            alive, detail = probe.alive, probe.detail
        except TimeoutError:
            alive, detail = False, f"no answer to the liveness check within {timeout:g}s (hung)"
        except RuntimeUnavailable:
            return True
        if session.handle is not handle or session.state not in REUSABLE:
            return False  # changed meanwhile (deleted, recycled)
        if alive:
            record.checked_at = self.clock()
            self.metrics.liveness["ok"] += 1
            return True
        self.metrics.liveness["failed"] += 1
        self.bus.publish_session(
            EventKind.LIVENESS_FAILED,
            f"{session.session_id} failed its liveness check: {detail}",
            session,
            reason=detail,
        )
        self.mark_lost(session, f"liveness check failed: {detail}")
        return False

    def _on_workload_lost(self, session_id: str, reason: str) -> None:
        record = self._records.get(session_id)
        if record is None or record.session.state not in REUSABLE:
            return
        self.bus.publish_session(
            EventKind.REFRESH_FAILED,
            f"{session_id} workload lost: {reason}",
            record.session,
            reason=reason,
        )
        self.mark_lost(record.session, reason)

    def _on_workload_moved(
        self, session_id: str, handle: WorkloadHandle | None, reason: str
    ) -> None:
        """The runtime says a ready session's pod went (``handle`` None: wait for the
        replacement, as a start reuses join) or a new one serves it now."""
        record = self._records.get(session_id)
        if not self.running or record is None or record.session.handle is None:
            return
        session = record.session
        if handle is None:
            if session.state not in REUSABLE or record.flight is not None:
                return
            template = self.settings.templates.get(session.template)
            if template is None:
                self.mark_lost(session, reason)
                return
            session.transition(SessionState.STARTING)
            session.starting_since = self.clock()
            self._launcher.set_phase(session, "waiting for a replacement pod")
            self.capacity.lru_remove(session)
            self._begin_flight(record, template, "replace")
            return
        if record.flight is not None or session.state not in REUSABLE:
            return  # a start in flight (the replace one) picks the new pod up itself
        old_pod = session.pod
        session.handle = handle
        self.announce_pod_replaced(session, old_pod)
        self._save(record)

    def announce_pod_replaced(self, session: Session, old_pod: str | None) -> None:
        """The ``pod_replaced`` event, when the session's pod really changed."""
        new_pod = session.pod
        if not new_pod or new_pod == old_pod:
            return
        self.bus.publish_session(
            EventKind.POD_REPLACED,
            f"{session.session_id}: pod {old_pod} replaced by {new_pod}",
            session,
            old_pod=old_pod,
            new_pod=new_pod,
        )

    def mark_lost(self, session: Session, reason: str) -> None:
        """A ready session's workload is dead: recycle or remove it, as configured."""
        record = self._records.get(session.session_id)
        if not self.running or record is None:
            return
        if session.state not in REUSABLE or record.flight is not None:
            return
        if self.settings.pool.on_refresh_failure == "remove":
            self._begin_terminate(record, f"removed: {reason}", EventKind.TERMINATING)
        else:
            self.recycle(session, reason)

    def recycle(self, session: Session, reason: str) -> None:
        """Replace a dead workload with a fresh one under the same id, port and slot."""
        record = self._records[session.session_id]
        template = self.settings.templates.get(session.template)
        if template is None:
            self._begin_terminate(record, f"template {session.template!r} is gone", None)
            return
        session.transition(SessionState.STARTING)
        session.starting_since = self.clock()
        session.recycles += 1
        session.phase = "recycling"
        session.last_error = reason
        if record.credential_names and not record.credentials:
            names = ", ".join(record.credential_names)
            session.last_error = (
                f"{reason}; restarted without its credentials ({names}): they are kept in "
                "memory only and were lost when podwarden restarted; pass them again"
            )
        self.capacity.lru_remove(session)
        self.metrics.recycles += 1
        self.bus.publish_session(
            EventKind.RECYCLED,
            f"{session.session_id} recycled: {reason}",
            session,
            reason=reason,
        )
        self._begin_flight(record, template, "recycle")

    def _begin_flight(self, record: SessionRecord, template: Template, how: str) -> None:
        """Start an existing session's workload again; acquires for its key join in."""
        flight = Flight(record.key, asyncio.get_running_loop().create_future(), record)
        record.flight = flight
        record.announced = False
        if self._primary.get(record.key) is record and record.key not in self._flights:
            self._flights[record.key] = flight
        flight.task = self._spawn(
            self._start(record, template, None, how), f"{how} {record.session_id}"
        )
        flight.task.add_done_callback(lambda _: self._end_flight(flight, self._withdrawn()))

    # ----------------------------------------------------------------- refresh verbs

    def begin_refresh(self, session: Session) -> bool:
        """Mark a ready session refreshing; False if it is not ready (leave it alone)."""
        record = self._records.get(session.session_id)
        if record is None or session.state is not SessionState.READY or session.handle is None:
            return False
        session.transition(SessionState.REFRESHING)
        self.bus.publish_session(
            EventKind.REFRESH_STARTED, f"{session.session_id} refreshing", session
        )
        return True

    def finish_refresh(self, session: Session, ok: bool | None, detail: str = "") -> None:
        """End a refresh: ``ok`` True (ready again), None (the runtime could not be asked:
        ready again, nothing counted), False (the workload is dead: recycle or remove)."""
        if session.state is not SessionState.REFRESHING:
            return  # evicted or deleted meanwhile
        record = self._records[session.session_id]
        if ok is False:
            self.mark_lost(session, f"refresh failed: {detail}")
            if session.state is SessionState.REFRESHING:  # not running: leave it as it was
                session.transition(SessionState.READY)
            return
        session.transition(SessionState.READY)
        if ok:
            session.refresh_failures = 0
            record.checked_at = session.last_refresh_at = self.clock()
        self.capacity.serve()  # it may be evicted again

    # ----------------------------------------------------------------- recovery verbs

    def adopt(
        self,
        session: Session,
        *,
        primary: bool,
        port: int | None,
        credential_names: tuple[str, ...] = (),
    ) -> None:
        """Register a session found alive at start-up; ``finish_adoption`` orders them."""
        key = (session.user, session.template)
        session.standby = session.user == STANDBY_USER
        record = SessionRecord(
            session,
            primary=primary and not session.standby and key not in self._primary,
            port=self.ports.allocate(port),
            credential_names=credential_names,
            announced=True,
        )
        record.checked_at = self.clock()
        self._records[session.session_id] = record
        self.capacity.take(session.user)
        if session.standby:
            self.capacity.add_standby(session)
        if record.primary:
            self._primary[key] = record

    def finish_adoption(self) -> None:
        """Rebuild the LRU order from the adopted sessions' last use, whatever order
        they were adopted in."""
        ready = [r.session for r in self._records.values() if r.session.state in REUSABLE]
        self.capacity.rebuild_lru(ready)

    def mark_vanished(self, session: Session, reason: str) -> None:
        """Register a session whose workload ended while podwarden was down (for people
        to see how it ended)."""
        session.transition(SessionState.FAILED)
        session.last_error = reason
        session.phase = "vanished"
        record = SessionRecord(session, primary=False)
        self._records[session.session_id] = record
        self._remember_ended(record)

    async def activate_adopted(self, session: Session, previous_port: int | None) -> None:
        """Open the tunnel of an adopted ready session, or finish its start."""
        record = self._records[session.session_id]
        if session.state is SessionState.READY:
            try:
                await self._launcher.open_tunnel(record, previous_port)
            except (StartError, OSError) as e:
                self._begin_terminate(record, f"cannot reopen tunnel: {e}", EventKind.FAILED)
            return
        template = self.settings.templates.get(session.template)
        if template is None:
            self._begin_terminate(
                record, f"template {session.template!r} is not configured", EventKind.TERMINATING
            )
            return
        self._begin_flight(record, template, "resume")
