"""The pool's verbs for lifecycle policies: pinning, culling, drain, bulk delete, standby.

The culler (``backend.culling``) and the standby keeper (``backend.standby``) decide;
these verbs change the sessions, keeping the pool's bookkeeping (slots, LRU order, the
reuse key, the store) right. ``SessionPool`` inherits them; they are apart only to keep
each module readable.

A standby session is an ordinary record whose user is ``STANDBY_USER``: it holds a slot,
is refreshed and liveness-checked like any other (a dead one is recycled, so replaced),
and answers nobody's reuse. A claim gives it to a user: the record gets the user's new
session id and the slot moves to the user; the runtime relabels the workload (its record
on disk, or the Kubernetes labels) and the claim is verified before it is handed out. If
the standby died in between, the claim stops it and the acquire starts cold instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from backend.config import Settings
from backend.drain import DRAIN_FLAG, DrainState
from backend.errors import (
    PinLimit,
    PodwardenError,
    SessionEnded,
    SessionNotFound,
    StartError,
)
from backend.events import EventBus, EventKind
from backend.launcher import credential_env
from backend.logs import SessionLogs
from backend.metrics import PoolMetrics
from backend.models import STANDBY_USER, Session, SessionState, make_session_id, validate_user
from backend.record import Flight, Key, SessionRecord
from backend.runtime.base import Runtime, WorkloadSpec
from backend.store import Store
from backend.templates import Template
from backend.tunnels import PortAllocator

if TYPE_CHECKING:
    from backend.capacity import Capacity
    from backend.launcher import Launcher

__all__ = ["PolicyVerbs", "format_duration"]


def format_duration(seconds: float) -> str:
    """``45s``, ``12m05s``, ``1h02m``, ``3d04h``: short, for event messages."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class PolicyVerbs:
    """Pin, cull, drain, bulk delete and standby verbs of ``SessionPool``."""

    settings: Settings
    runtime: Runtime
    bus: EventBus
    ports: PortAllocator
    metrics: PoolMetrics
    capacity: Capacity
    clock: Callable[[], float]
    logs: SessionLogs
    store: Store | None
    drain: DrainState
    standby_wakeup: Callable[[], None] | None
    _records: dict[str, SessionRecord]
    _primary: dict[Key, SessionRecord]
    _launcher: Launcher

    if TYPE_CHECKING:

        @property
        def running(self) -> bool: ...

        def _save(self, record: SessionRecord) -> None: ...

        def _end_flight(self, flight: Flight, result: Session | BaseException) -> None: ...

        def _begin_terminate(
            self, record: SessionRecord, reason: str, kind: EventKind | None
        ) -> asyncio.Task[None] | None: ...

        def _begin_flight(self, record: SessionRecord, template: Template, how: str) -> None: ...

        def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    # ----------------------------------------------------------------- policy values

    def apply_policy(self, session: Session) -> None:
        """Set the idle timeout and maximum age that apply to the session (its
        template's, else the pool's)."""
        pool = self.settings.pool
        template = self.settings.templates.get(session.template)
        idle = template.idle_timeout if template is not None else None
        age = template.max_age if template is not None else None
        session.idle_timeout = idle if idle is not None else pool.idle_timeout
        session.max_age = age if age is not None else pool.max_age

    def live_records(self) -> list[SessionRecord]:
        """Records of sessions that are ready or refreshing (what policies look at)."""
        return [
            r
            for r in self._records.values()
            if r.session.state in (SessionState.READY, SessionState.REFRESHING)
            and r.stop_task is None
        ]

    def note_activity(self, record: SessionRecord, at: float) -> None:
        """The session's tunnel carried traffic or held a connection at ``at``: it is in
        use (not idle, and the most recently used for LRU)."""
        record.session.last_active_at = at
        self.capacity.touch(record.session)

    # ----------------------------------------------------------------- pinning

    def _live_record(self, session_id: str) -> SessionRecord:
        record = self._records.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        if not record.session.state.is_live or record.stop_task is not None:
            raise SessionEnded(f"session {session_id!r} has ended ({record.session.state.value})")
        return record

    def pin(self, session_id: str) -> Session:
        """Keep the session safe from LRU eviction, idle culling and the maximum age.
        ``SessionNotFound`` (404), ``SessionEnded`` (409), ``PinLimit`` (409)."""
        record = self._live_record(session_id)
        session = record.session
        if session.pinned:
            return session
        if session.standby:
            raise SessionEnded(f"session {session_id!r} is a standby workload; claim it first")
        limit = self.settings.pool.max_pinned
        pinned = sum(1 for r in self._records.values() if r.session.pinned)
        if limit is not None and pinned >= limit:
            raise PinLimit(
                f"{pinned} sessions are pinned already, the limit max_pinned = {limit}; "
                "unpin one first"
            )
        session.pinned = True
        self.metrics.pins["pinned"] += 1
        self._save(record)
        self.bus.publish_session(
            EventKind.PINNED,
            f"{session_id} pinned: safe from eviction, idle culling and max age",
            session,
        )
        return session

    def unpin(self, session_id: str) -> Session:
        """Make a pinned session ordinary again (it may be evicted or culled)."""
        record = self._live_record(session_id)
        session = record.session
        if not session.pinned:
            return session
        session.pinned = False
        self.metrics.pins["unpinned"] += 1
        self._save(record)
        self.bus.publish_session(EventKind.UNPINNED, f"{session_id} unpinned", session)
        self.capacity.serve()  # a waiter may now evict it
        return session

    # ----------------------------------------------------------------- culling

    def cull(self, record: SessionRecord, reason: str, kind: EventKind) -> bool:
        """Stop a session a policy decided to stop; False if it is pinned or not live."""
        session = record.session
        if session.pinned or not session.state.is_live or record.stop_task is not None:
            return False
        self._begin_terminate(record, reason, kind)
        return True

    def delete_user_sessions(self, user: str) -> list[str]:
        """Begin ending every live session of ``user``; the ids, in no promised order."""
        validate_user(user)
        ids = [
            r.session_id
            for r in self._records.values()
            if r.session.user == user and r.session.state.is_live and r.stop_task is None
        ]
        for session_id in ids:
            self._begin_terminate(
                self._records[session_id],
                f"deleted with every session of {user}",
                EventKind.TERMINATING,
            )
        return ids

    # ----------------------------------------------------------------- drain

    def set_drain(self, active: bool, evict_idle: bool = False) -> DrainState:
        """Drain (or undrain) the pool; kept in the store, so it survives a restart."""
        was = self.drain.active
        if active:
            self.drain.begin(evict_idle)
        else:
            self.drain.end()
        if self.store is not None:
            self.store.set_flag(DRAIN_FLAG, self.drain.to_flag())
        if active:
            # Those queued for room would start new sessions: they get the drain's answer now,
            # not a start once room frees up (or a queue timeout much later).
            withdrawn = self.capacity.withdraw_waiters(self.refuse_new)
            self.bus.publish(
                EventKind.DRAINING,
                "pool draining: no new sessions"
                + ("; idle sessions are stopped" if evict_idle else "")
                + (f"; {withdrawn} queued request(s) refused" if withdrawn else ""),
                evict_idle=evict_idle,
                withdrawn=withdrawn,
            )
        elif was:
            self.bus.publish(EventKind.UNDRAINED, "pool undrained: new sessions admitted again")
            self._wake_standby()
        return self.drain

    def refuse_new(self, user: str) -> PodwardenError:
        """Count and announce an acquire refused by the drain; the error to raise."""
        error = self.drain.refusal()
        self.metrics.refused_draining += 1
        self.metrics.acquires["refused"] += 1
        self.bus.publish(
            EventKind.REFUSED,
            f"{user} refused: the pool is draining",
            user=user,
            reason="draining",
        )
        return error

    # ----------------------------------------------------------------- standby

    def _wake_standby(self) -> None:
        if self.standby_wakeup is not None:
            self.standby_wakeup()

    def standby_sessions(self, template: str | None = None) -> list[Session]:
        """Live standby sessions (of ``template``, when given)."""
        return [
            s for s in self.capacity.standby.values() if template is None or s.template == template
        ]

    def start_standby(self, template: Template) -> bool:
        """Start one standby workload of ``template`` in a free slot; False if there is
        none (a standby never makes anybody wait or be evicted) or the pool is drained."""
        if not self.running or self.drain.active or not self.capacity.take_free(STANDBY_USER):
            return False
        try:
            port = self.ports.allocate()
        except PodwardenError:
            self.capacity.give_back(STANDBY_USER)
            return False
        session_id = make_session_id("standby", template.name)
        while session_id in self._records:
            session_id = make_session_id("standby", template.name)
        now = self.clock()
        session = Session(session_id, STANDBY_USER, template.name, created_at=now, last_used_at=now)
        session.standby = True
        session.use_count = 0
        self.apply_policy(session)
        record = SessionRecord(session, primary=False, port=port)
        self._records[session_id] = record
        self.capacity.add_standby(session)
        self.metrics.standby["refilled"] += 1
        have = len(self.standby_sessions(template.name))
        self.bus.publish_session(
            EventKind.STANDBY_REFILLED,
            f"standby {session_id} starting ({have}/{template.standby} of {template.name})",
            session,
            template=template.name,
        )
        self._save(record)
        self._begin_flight(record, template, "fresh")
        return True

    def _pick_standby(self, template: Template) -> SessionRecord | None:
        for session in self.capacity.standby.values():
            record = self._records.get(session.session_id)
            if (
                record is not None
                and session.template == template.name
                and session.state is SessionState.READY
                and record.flight is None
                and record.stop_task is None
                and record.checking is None
            ):
                return record
        return None

    async def claim_standby(
        self, flight: Flight, template: Template, credentials: dict[str, str], primary: bool
    ) -> bool:
        """Serve ``flight`` with a standby workload if one is ready; False to start cold.

        Credentials need a fresh start unless the template reads them from a file the
        claim can write (``credentials_file``). Raises ``QuotaExceeded`` like a cold start.
        """
        claim = getattr(self.runtime, "claim", None)
        if not template.standby or claim is None or self.drain.active:
            return False
        if credentials and not (
            template.credentials_file and getattr(self.runtime, "claim_writes_files", True)
        ):
            return False
        record = self._pick_standby(template)
        if record is None:
            self.metrics.standby["missed"] += 1
            return False
        user = flight.key[0]
        self.capacity.check_quota(user)
        started = time.perf_counter()
        session = record.session
        old_id = session.session_id
        new_id = make_session_id(user, template.name)
        while new_id in self._records:
            new_id = make_session_id(user, template.name)
        # Taken out of the standby set before the first await: no second claim finds it.
        self.capacity.hand_over(session, old_id, user)
        del self._records[old_id]
        session.session_id, session.user, session.standby = new_id, user, False
        session.phase = "claiming standby"
        self._records[new_id] = record
        record.flight, flight.record = flight, record
        record.credentials = credentials
        record.credential_names = tuple(sorted(credentials))
        assert session.handle is not None
        spec = WorkloadSpec(
            session_id=new_id,
            user=user,
            template=template,
            workdir=self._launcher.spec(record, template).workdir,
            env=credential_env(credentials),
        )
        try:
            session.handle = await claim(session.handle, spec)
            if session.state is not SessionState.READY:
                raise StartError(f"it became {session.state.value} during the claim")
        except (PodwardenError, OSError) as e:
            reason = getattr(e, "message", str(e))
            self.metrics.standby["fallback"] += 1
            record.flight = flight.record = None
            self._begin_terminate(
                record, f"standby {old_id} could not be claimed ({reason})", EventKind.FAILED
            )
            self._wake_standby()
            return False
        now = self.clock()
        session.last_used_at, session.use_count, session.phase = now, 1, "ready"
        key = (user, template.name)
        record.primary = primary or key not in self._primary
        if record.primary:
            self._primary[key] = record
        record.announced = True
        record.checked_at = now
        self.capacity.lru_add(session)
        self.logs.drop(old_id)
        if self.store is not None:
            self.store.delete(old_id)
        self._save(record)
        self.metrics.standby["claimed"] += 1
        self.metrics.acquires["new"] += 1
        took = (time.perf_counter() - started) * 1000
        self.bus.publish_session(
            EventKind.STANDBY_CLAIMED,
            f"{user} gets new session {new_id} ({template.name}), claimed from standby "
            f"{old_id} in {took:.1f} ms",
            session,
            template=template.name,
            standby_id=old_id,
        )
        self._end_flight(flight, session)
        self._wake_standby()
        return True
