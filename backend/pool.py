"""The session pool: one persistent session per (user, template), inside its capacity.

``acquire`` is the hot path. A warm hit is a few dictionary operations and an
``OrderedDict.move_to_end``: no runtime call, no disk wait (the store write is queued).
When the session's last liveness check is older than ``liveness_interval`` the workload
is probed first, so a dead or hung workload is never handed out. A miss is single-flight:
every concurrent acquire for one key awaits the same ``Flight``, so one user never gets
two sessions by accident.

Everything the pool holds about a session is on its ``SessionRecord`` (``record.py``).
Capacity (slots, LRU order, the FIFO queue, the per-user quota) is ``capacity.py``;
starting workloads and tunnels is the ``Launcher``'s work; every stop goes through the
``WorkloadStopper`` (``cleanup.py``). The refresher, the liveness checker, the drift
check and recovery change a session only through the verbs at the end of this class.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any

from backend.capacity import Capacity
from backend.cleanup import WorkloadStopper
from backend.config import Settings
from backend.credentials import check_credentials
from backend.drain import DrainState
from backend.errors import (
    CapacityError,
    InvalidRequest,
    InvalidTransition,
    PodwardenError,
    RuntimeUnavailable,
    SessionNotFound,
    StartError,
    UnknownTemplate,
)
from backend.events import EventBus, EventKind
from backend.launcher import Launcher
from backend.logs import SessionLogs
from backend.metrics import PoolMetrics
from backend.models import (
    Session,
    SessionState,
    WorkloadHandle,
    make_session_id,
    validate_user,
)
from backend.pool_failover import FailoverVerbs
from backend.pool_policy import PolicyVerbs
from backend.pool_upkeep import REUSABLE, UpkeepVerbs
from backend.record import Flight, Key, SessionRecord
from backend.runtime.base import Runtime
from backend.store import Store
from backend.templates import Template
from backend.tunnels import PortAllocator

__all__ = ["AcquireResult", "PoolState", "SessionPool"]


class PoolState(str, Enum):
    """The pool's own life: created -> running -> closing -> closed."""

    CREATED = "created"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


_POOL_TRANSITIONS = {
    PoolState.CREATED: {PoolState.RUNNING, PoolState.CLOSING},
    PoolState.RUNNING: {PoolState.CLOSING},
    PoolState.CLOSING: {PoolState.CLOSED},
    PoolState.CLOSED: set(),
}


@dataclass(frozen=True)
class AcquireResult:
    """What ``acquire`` hands back."""

    session: Session
    is_new_session: bool
    took_ms: float

    def to_dict(self) -> dict[str, Any]:
        data = self.session.to_dict()
        data["is_new_session"] = self.is_new_session
        data["took_ms"] = round(self.took_ms, 3)
        return data


class SessionPool(UpkeepVerbs, PolicyVerbs, FailoverVerbs):
    """Session records by id, the reuse key each answers for, and starts in flight."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        bus: EventBus,
        logs: SessionLogs,
        store: Store | None,
        ports: PortAllocator,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.bus = bus
        self.logs = logs
        self.store = store
        self.ports = ports
        self.clock = clock
        self.metrics = PoolMetrics()
        self.state = PoolState.CREATED
        self.started_at = time.time()
        self.drain = DrainState()
        self.standby_wakeup: Callable[[], None] | None = None
        """Called when a standby may be due (a slot freed, a standby claimed)."""

        self._records: dict[str, SessionRecord] = {}
        self._primary: dict[Key, SessionRecord] = {}
        """The session that answers reuse acquires for each key."""
        self._flights: dict[Key, Flight] = {}
        """The start a reuse acquire for each key joins."""
        self._background: set[asyncio.Task[Any]] = set()
        self._target_returned: dict[str, asyncio.Event] = {}
        self.replaced: list[WorkloadHandle] = []
        self._ended: collections.deque[str] = collections.deque()
        self.stopper = WorkloadStopper(runtime, bus, self.metrics, lambda: settings.pool.stop_grace)
        self._launcher = Launcher(
            settings, runtime, bus, ports, self.metrics, self.stopper, self._save
        )
        self.capacity = Capacity(
            settings.pool, lambda: self.clock(), self._evict, bus, self.metrics
        )
        runtime.set_workload_lost_callback(self._on_workload_lost)
        moved = getattr(runtime, "set_workload_moved_callback", None)
        if moved is not None:
            moved(self._on_workload_moved)
        # A multi-target runtime: lost targets' room leaves the capacity, and with every
        # target lost an acquire is refused at once (503 with Retry-After).
        self.capacity.limit_of = getattr(runtime, "capacity_limit", None)
        room = getattr(runtime, "set_capacity_callback", None)
        if room is not None:
            room(self.capacity.serve)
        targets = getattr(runtime, "set_target_callbacks", None)
        if targets is not None:
            targets(self.target_lost, self.target_back)
        self._check_available: Callable[[], None] | None = getattr(runtime, "check_available", None)

    # ----------------------------------------------------------------- lifecycle

    def _set_state(self, new: PoolState) -> None:
        if new not in _POOL_TRANSITIONS[self.state]:
            raise InvalidTransition(f"pool: {self.state.value} -> {new.value} is not allowed")
        self.state = new

    def mark_running(self) -> None:
        """Accept acquires from now on (after recovery)."""
        self._set_state(PoolState.RUNNING)

    def _check_running(self) -> None:
        if self.state is not PoolState.RUNNING:
            raise RuntimeUnavailable(f"the pool is {self.state.value}; it takes no requests now")

    async def close(self, *, stop_sessions: bool = False) -> None:
        """Stop accepting work; cancel starts; keep ready workloads running for re-adoption
        unless ``stop_sessions``; close every tunnel."""
        if self.state in (PoolState.CLOSING, PoolState.CLOSED):
            return
        self._set_state(PoolState.CLOSING)
        self.capacity.close()
        flights = {*self._flights.values(), *(r.flight for r in self._records.values() if r.flight)}
        tasks = [f.task for f in flights if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for record in self._records.values():
            if record.stop_queued and record.stop_task is not None:
                # Waits for a lost target: the store keeps it (terminating) for the next start.
                record.stop_task.cancel()
        for record in list(self._records.values()):
            if stop_sessions and record.session.state.is_live:
                self._begin_terminate(record, "backend shutting down", EventKind.TERMINATING)
            elif record.session.state is SessionState.STARTING:
                # Its start was cancelled above: a half-made workload must not outlive us
                # un-adopted in a state nobody waits on.
                self._begin_terminate(record, "start cancelled by shutdown", None)
        await asyncio.gather(
            *[r.stop_task for r in self._records.values() if r.stop_task], return_exceptions=True
        )
        for record in self._records.values():
            if record.tunnel is not None:
                await record.tunnel.close()
                record.tunnel = None
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*list(self._background), return_exceptions=True)
        for record in self._records.values():
            if record.session.state.is_live:
                self._save(record)
        self._set_state(PoolState.CLOSED)

    # ----------------------------------------------------------------- queries

    def get(self, session_id: str) -> Session:
        """The session with this id, live or recently ended; ``SessionNotFound`` else."""
        record = self._records.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record.session

    def list(self) -> list[Session]:
        """Every known session: live ones and the recently ended."""
        return [r.session for r in self._records.values()]

    def record(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    @property
    def active_count(self) -> int:
        """Sessions holding a capacity slot."""
        return self.capacity.live

    def user_count(self, user: str) -> int:
        return self.capacity.user_live.get(user, 0)

    @property
    def queued(self) -> int:
        return self.capacity.queued

    def template(self, name: str | None) -> Template:
        """The named template (the default when None); ``UnknownTemplate`` else."""
        name = name or self.settings.default_template
        if not isinstance(name, str):
            raise InvalidRequest("template", "must be a string")
        template = self.settings.templates.get(name)
        if template is None:
            raise UnknownTemplate(name, list(self.settings.templates))
        return template

    # ----------------------------------------------------------------- acquire

    async def acquire(
        self,
        user: str,
        template: str | None = None,
        *,
        reuse: bool = True,
        wait: bool = True,
        credentials: dict[str, str] | None = None,
        requires: dict[str, str] | None = None,
    ) -> AcquireResult:
        """The user's ready session for ``template`` and whether it was newly started.

        With ``reuse`` (the default) a live, ready session of the same (user, template)
        is handed back at once (``is_new_session`` False unless its workload was
        restarted since it was last handed out); otherwise, or when there is none, a new
        one is started and this returns once it is ready. With ``wait`` False it returns
        at once with a session that is starting, or raises ``CapacityError`` when it
        would have to wait for room. Raises ``InvalidRequest``, ``QuotaExceeded``,
        ``CapacityError`` or ``StartError``. ``requires``: target labels a new session's
        target must carry (a reuse hands back the user's session wherever it runs); a
        label no target has is an ``InvalidRequest`` (422) naming it.
        """
        started = time.perf_counter()
        self._check_running()
        if self._check_available is not None:
            self._check_available()
        validate_user(user)
        tpl = self.template(template)
        creds = check_credentials(credentials, tpl)
        labels = self._check_requirements(tpl, requires)
        key = (user, tpl.name)
        if reuse:
            for look in range(2):  # again after a failed check changed the session
                record = self._primary.get(key)
                if record is not None and creds:
                    self._supply_credentials(record, creds)
                if (
                    record is not None
                    and record.session.state is SessionState.UNREACHABLE
                    and record.flight is None
                ):
                    moved = await self.await_or_fail_over(record)
                    if moved is not None:
                        return await self._join(moved, wait, started)
                    continue  # its target returned: reuse it
                if record is None or record.session.state not in REUSABLE or record.flight:
                    break
                age = self.clock() - record.checked_at
                if (
                    look == 1  # just recycled or checked: fresh
                    or age <= self.settings.pool.liveness_interval
                    or await self._still_alive(record)
                ):
                    return self._reuse(record, started)
            flight = self._flights.get(key)
            if flight is not None:
                return await self._join(flight, wait, started)
        if self.drain.active:
            raise self.refuse_new(user)
        flight = self._begin_create(key, tpl, creds, primary=reuse, wait=wait, requires=labels)
        return await self._join(flight, wait, started)

    def reuse_at_once(
        self,
        user: str,
        template: str | None = None,
        *,
        credentials: dict[str, str] | None = None,
    ) -> AcquireResult | None:
        """The warm reuse ``acquire`` would answer without waiting: the user's ready
        session with a fresh liveness check. None when answering takes a wait (a probe,
        a start, a queue) or an error; ``acquire`` then gives the answer."""
        started = time.perf_counter()
        if self.state is not PoolState.RUNNING or credentials:
            return None
        if self._check_available is not None and getattr(self.runtime, "all_lost", False):
            return None
        tpl = self.settings.templates.get(template or self.settings.default_template)
        record = self._primary.get((user, tpl.name)) if tpl is not None else None
        if (
            record is None
            or record.flight is not None
            or record.session.state not in REUSABLE
            or self.clock() - record.checked_at > self.settings.pool.liveness_interval
        ):
            return None
        return self._reuse(record, started)

    def _reuse(self, record: SessionRecord, started: float) -> AcquireResult:
        session = record.session
        session.last_used_at = self.clock()
        session.use_count += 1
        self.capacity.touch(session)
        if self.store is not None:
            self.store.touch(session)
        new = not record.announced
        record.announced = True
        self.metrics.acquires["reused"] += 1
        self.bus.publish_session(
            EventKind.REUSED,
            f"{session.user} reused {session.session_id}",
            session,
            use_count=session.use_count,
        )
        return AcquireResult(session, new, (time.perf_counter() - started) * 1000)

    async def _join(self, flight: Flight, wait: bool, started: float) -> AcquireResult:
        """Answer from a start in flight: once it is ready, or (no ``wait``) at once."""
        if not wait:
            if flight.record is None:  # the start is still queued for room in the pool
                raise CapacityError(
                    "the pool is full: this session would have to wait for room; "
                    'retry later or ask with "wait": true',
                    retry_after=max(1.0, self.settings.pool.min_idle_before_evict),
                )
            flight.announced = True
            return AcquireResult(
                flight.record.session, True, (time.perf_counter() - started) * 1000
            )
        flight.callers += 1
        try:
            session = await asyncio.shield(flight.future)
        except asyncio.CancelledError:
            flight.callers -= 1
            if flight.callers == 0 and flight.record is None and flight.task is not None:
                # Nobody waits for a start that has no room yet: withdraw it from the queue.
                if self._flights.get(flight.key) is flight:
                    del self._flights[flight.key]
                flight.task.cancel()
            raise
        flight.callers -= 1
        return AcquireResult(session, True, (time.perf_counter() - started) * 1000)

    def _supply_credentials(self, record: SessionRecord, credentials: dict[str, str]) -> None:
        """Keep the credentials a caller passed again, for the session's later recycles."""
        record.credentials = credentials
        names = tuple(sorted(credentials))
        if names != record.credential_names:
            record.credential_names = names
            self._save(record)

    # ----------------------------------------------------------------- create

    def _begin_create(
        self,
        key: Key,
        template: Template,
        credentials: dict[str, str],
        *,
        primary: bool,
        wait: bool,
        requires: dict[str, str] | None = None,
    ) -> Flight:
        flight = Flight(key, asyncio.get_running_loop().create_future())
        if wait:
            flight.task = self._spawn(
                self._create(flight, template, credentials, primary, requires or {}),
                f"create {key[0]}/{key[1]}",
            )
        else:
            try:
                victim = self.capacity.try_reserve(key[0])
            except CapacityError as e:
                self._refused(key[0], e)
                raise
            record = self._new_record(
                key[0], template, credentials, primary=primary, requires=requires
            )
            flight.record, record.flight = record, flight
            flight.task = self._spawn(self._start(record, template, victim), f"start {key}")
        flight.task.add_done_callback(lambda _: self._end_flight(flight, self._withdrawn()))
        if primary:
            self._flights[key] = flight
        return flight

    def _refused(self, user: str, error: CapacityError) -> None:
        self.bus.publish(EventKind.REFUSED, f"{user} refused: {error.message}", user=user)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"podwarden: {name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _create(
        self,
        flight: Flight,
        template: Template,
        credentials: dict[str, str],
        primary: bool,
        requires: dict[str, str],
    ) -> None:
        user = flight.key[0]
        try:
            if not requires and await self.claim_standby(flight, template, credentials, primary):
                return
            victim = await self.capacity.reserve(user)
            record = self._new_record(
                user, template, credentials, primary=primary, requires=requires
            )
        except CapacityError as e:
            self._refused(user, e)
            self._end_flight(flight, e)
            return
        except PodwardenError as e:
            self._end_flight(flight, e)
            return
        flight.record, record.flight = record, flight
        await self._start(record, template, victim)

    def _new_record(
        self,
        user: str,
        template: Template,
        credentials: dict[str, str],
        *,
        primary: bool,
        requires: dict[str, str] | None = None,
    ) -> SessionRecord:
        """Register a new starting session in the slot its caller reserved."""
        try:
            port = self.ports.allocate()
        except PodwardenError:
            self.capacity.give_back(user)
            raise
        session_id = make_session_id(user, template.name)
        while session_id in self._records:
            session_id = make_session_id(user, template.name)
        now = self.clock()
        session = Session(session_id, user, template.name, created_at=now, last_used_at=now)
        self.apply_policy(session)
        key = (user, template.name)
        record = SessionRecord(
            session,
            primary=primary or key not in self._primary,
            port=port,
            credentials=credentials,
            credential_names=tuple(sorted(credentials)),
            requires=dict(requires or {}),
        )
        self._records[session_id] = record
        if record.primary:
            self._primary[key] = record
        self.metrics.acquires["new"] += 1
        self.bus.publish_session(
            EventKind.CREATED,
            f"{user} gets new session {session_id} ({template.name})",
            session,
            template=template.name,
        )
        self._save(record)
        return record

    def _end_flight(self, flight: Flight, result: Session | BaseException) -> None:
        """Answer a flight's callers and forget it; the first answer counts."""
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        if flight.record is not None and flight.record.flight is flight:
            flight.record.flight = None
        future = flight.future
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
            future.exception()  # retrieved: no "never retrieved" warning without callers
        else:
            future.set_result(result)

    async def _start(
        self, record: SessionRecord, template: Template, victim: Session | None, how: str = "fresh"
    ) -> None:
        """Start (with retries), wait out the victim's cleanup, open the tunnel, go ready.

        ``how``: ``fresh`` (a new session), ``recycle`` (replace the dead workload first),
        ``resume`` (a start interrupted by a restart: wait for the workload it made) or
        ``replace`` (its pod went away: wait for the new one, the tunnel stays open).
        """
        session = record.session
        flight = record.flight
        assert flight is not None
        started = time.monotonic()
        try:
            if session.state is not SessionState.STARTING:
                raise asyncio.CancelledError  # deleted before this task got to run
            if how == "recycle":
                await self._launcher.close_tunnel(record)
                await self._launcher.stop_workload(record, "recycling")
            old_pod = session.pod
            if how == "resume":
                await self._launcher.resume(record, template)
            elif how == "replace":
                await self._launcher.await_replacement(record, template)
            else:
                await self._launcher.start(record, template)
            if victim is not None:
                self._launcher.set_phase(session, "waiting for evicted session's cleanup")
                victim_record = self._records.get(victim.session_id)
                if victim_record is not None and victim_record.stop_task is not None:
                    await asyncio.shield(victim_record.stop_task)
            if how != "replace" or record.tunnel is None:
                await self._launcher.open_tunnel(record)
            if session.state is not SessionState.STARTING:
                raise asyncio.CancelledError  # deleted while the last step ran
            session.transition(SessionState.READY)
        except asyncio.CancelledError:
            self._end_flight(flight, self._withdrawn(deleted=True))
            raise
        except Exception as e:
            error = e if isinstance(e, PodwardenError) else StartError(f"unexpected error: {e!r}")
            self._fail(record, error)
            self._end_flight(flight, error)
            return
        now = self.clock()
        session.ready_at = now
        session.phase = "ready"
        session.refresh_failures = 0
        record.checked_at = now
        # A caller that gave up before the answer was handed nothing: to the next one
        # this workload is still new.
        record.announced = flight.announced or flight.callers > 0
        if flight.callers > 0 or (how == "fresh" and record.announced):
            # Handed to its callers now: a use, also when a reuse found the workload dead
            # and waited for its recycle (else the session it just got is evicted next).
            session.last_used_at = now
        self.capacity.lru_add(session)
        elapsed = time.monotonic() - started
        self.metrics.start_seconds.observe(elapsed)
        self.bus.publish_session(
            EventKind.READY,
            f"{session.session_id} ready in {elapsed:.2f}s",
            session,
            took_s=round(elapsed, 3),
        )
        if how == "replace":
            self.announce_pod_replaced(session, old_pod)
        self._save(record)
        self._end_flight(flight, session)

    def _fail(self, record: SessionRecord, error: PodwardenError) -> None:
        """Mark a session failed after its start gave up; free its slot and port."""
        session = record.session
        was_live = session.state.is_live
        session.last_error = error.message
        session.phase = "failed"
        if session.state is not SessionState.FAILED:
            session.transition(SessionState.FAILED)
        if was_live:
            self._release(record)
        self._launcher.release_port(record)
        record.credentials = {}
        self.metrics.start_failures += 1
        self.metrics.acquires["failed"] += 1
        self.bus.publish_session(
            EventKind.FAILED,
            f"{session.session_id} failed: {error.message}",
            session,
            reason=error.message,
        )
        self._save(record)
        self._remember_ended(record)

    @property
    def running(self) -> bool:
        return self.state is PoolState.RUNNING

    def _withdrawn(self, *, deleted: bool = False) -> PodwardenError:
        """The answer to callers of a start that ended without a session."""
        if deleted:
            return StartError("the session was deleted while it was starting", retryable=False)
        if self.state is not PoolState.RUNNING:
            return RuntimeUnavailable("the pool is shutting down")
        return StartError("the start was withdrawn (nobody waits for it any more)", retryable=False)

    # ----------------------------------------------------------------- persistence

    def _save(self, record: SessionRecord) -> None:
        if self.store is not None:
            self.store.save(
                record.session,
                is_primary=record.primary,
                port=record.port,
                credential_names=record.credential_names,
            )
