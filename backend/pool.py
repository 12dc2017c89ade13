"""The session pool: one persistent session per (user, template), inside its capacity.

``acquire`` is the hot path. A warm hit is a few dictionary operations and an
``OrderedDict.move_to_end``: no await, no runtime call, no disk wait (the store write is
queued). A miss is single-flight: every concurrent acquire for one key awaits the same
future, so one user never gets two sessions by accident.

Capacity is counted in slots: a session holds one from the moment it is created until it
starts terminating or fails. When the pool (or the user's share of it) is full, the
``when_full`` policy decides: evict the least recently used ready session that has been
idle long enough (its stop runs alongside the new start, and the new session is reported
ready only once the old workload is verified gone), wait in a FIFO queue, or refuse
(``capacity.py``, where choosing a victim is O(1)).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from backend.capacity import Capacity
from backend.config import Settings
from backend.credentials import check_credentials
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
from backend.models import Session, SessionState, make_session_id, validate_user
from backend.runtime.base import Runtime
from backend.store import Store
from backend.templates import Template
from backend.tunnels import PortAllocator

__all__ = ["AcquireResult", "PoolState", "SessionPool"]

Key = tuple[str, str]

_KEEP_ENDED = 100


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


class SessionPool:
    """Sessions by id, their reuse keys and single-flight starts and stops.

    Capacity (slots, LRU order, the waiting queue) is ``self.capacity``; starting and
    stopping workloads and tunnels is the ``Launcher``'s work.
    """

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

        self._sessions: dict[str, Session] = {}
        self._primary: dict[Key, str] = {}
        self._is_primary: set[str] = set()
        self._inflight: dict[Key, asyncio.Future[Session]] = {}
        self._flights: dict[asyncio.Future[Session], Session] = {}
        """The session each start future will resolve to, once it exists."""
        self._start_tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._ended: collections.deque[str] = collections.deque()
        self._launcher = Launcher(settings, runtime, bus, ports, self.metrics, self._save)
        self.capacity = Capacity(
            settings.pool, self._sessions, lambda: self.clock(), self._evict, bus, self.metrics
        )
        runtime.set_workload_lost_callback(self._on_workload_lost)

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
        tasks = list(self._start_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if stop_sessions:
            live = [s for s in self._sessions.values() if s.state.is_live]
            for session in live:
                self._begin_terminate(session, "backend shutting down", EventKind.TERMINATING)
        else:
            # Starting sessions were cancelled above: their half-made workloads must not
            # outlive us un-adopted in a state nobody waits on.
            for session in list(self._sessions.values()):
                if session.state is SessionState.STARTING:
                    self._begin_terminate(session, "start cancelled by shutdown", None)
        await asyncio.gather(*list(self._stop_tasks.values()), return_exceptions=True)
        for session_id, tunnel in list(self._launcher.tunnels.items()):
            await tunnel.close()
            self._launcher.tunnels.pop(session_id, None)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*list(self._background), return_exceptions=True)
        if self.store is not None:
            for session in self._sessions.values():
                if session.state.is_live:
                    self._save(session)
        self._set_state(PoolState.CLOSED)

    # ----------------------------------------------------------------- queries

    def get(self, session_id: str) -> Session:
        """The session with this id, live or recently ended; ``SessionNotFound`` else."""
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def list(self) -> list[Session]:
        """Every known session: live ones and the recently ended."""
        return list(self._sessions.values())

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
        credentials: dict[str, str] | None = None,
    ) -> AcquireResult:
        """The user's ready session for ``template`` and whether it was newly started.

        With ``reuse`` (the default) a ready session of the same (user, template) is
        handed back at once (``is_new_session`` False); otherwise, or when there is none,
        a new one is started and this returns once it is ready. Raises ``InvalidRequest``,
        ``CapacityError`` or ``StartError``.
        """
        started = time.perf_counter()
        future, reused = self._acquire_future(user, template, reuse, credentials)
        if reused is not None:
            return AcquireResult(reused, False, (time.perf_counter() - started) * 1000)
        assert future is not None
        session = await asyncio.shield(future)
        return AcquireResult(session, True, (time.perf_counter() - started) * 1000)

    def acquire_nowait(
        self,
        user: str,
        template: str | None = None,
        *,
        reuse: bool = True,
        credentials: dict[str, str] | None = None,
    ) -> AcquireResult:
        """Like ``acquire`` but returns at once: a ready session, or one that is starting.

        Raises ``CapacityError`` when the session would have to wait for room.
        """
        started = time.perf_counter()
        future, reused = self._acquire_future(user, template, reuse, credentials, nowait=True)
        if reused is not None:
            return AcquireResult(reused, False, (time.perf_counter() - started) * 1000)
        assert future is not None
        session = self._flights.get(future)
        if session is None:  # the start is still queued for room in the pool
            raise CapacityError(
                "the pool is full: this session would have to wait for room; "
                'retry later or ask with "wait": true',
                retry_after=max(1.0, self.settings.pool.min_idle_before_evict),
            )
        return AcquireResult(session, True, (time.perf_counter() - started) * 1000)

    def _acquire_future(
        self,
        user: str,
        template: str | None,
        reuse: bool,
        credentials: dict[str, str] | None,
        nowait: bool = False,
    ) -> tuple[asyncio.Future[Session] | None, Session | None]:
        self._check_running()
        validate_user(user)
        tpl = self.template(template)
        creds = check_credentials(credentials, tpl)
        key = (user, tpl.name)
        if reuse:
            sid = self._primary.get(key)
            if sid is not None:
                session = self._sessions[sid]
                if session.state is SessionState.READY or (
                    session.state is SessionState.REFRESHING
                ):
                    self._touch(session)
                    self.metrics.acquires["reused"] += 1
                    self.bus.publish(
                        EventKind.REUSED,
                        f"{user} reused {sid}",
                        session_id=sid,
                        user=user,
                        use_count=session.use_count,
                    )
                    return None, session
            inflight = self._inflight.get(key)
            if inflight is not None:
                return inflight, None
        return self._begin_create(key, tpl, creds, primary=reuse, nowait=nowait), None

    def _touch(self, session: Session) -> None:
        session.last_used_at = self.clock()
        session.use_count += 1
        self.capacity.touch(session)
        if self.store is not None:
            self.store.touch(session)

    # ----------------------------------------------------------------- capacity

    def _release_slot(self, session: Session, *, wake: bool = True) -> None:
        """Give back the session's slot; called once, when it leaves the live states."""
        self.capacity.release(session, wake=wake)
        key = (session.user, session.template)
        if self._primary.get(key) == session.session_id:
            del self._primary[key]

    def _evict(self, victim: Session, user: str) -> None:
        self._begin_terminate(
            victim,
            f"evicted (least recently used) to make room for {user}",
            EventKind.EVICTED,
            wake=False,
        )

    # ----------------------------------------------------------------- create

    def _begin_create(
        self,
        key: Key,
        template: Template,
        credentials: dict[str, str],
        *,
        primary: bool,
        nowait: bool = False,
    ) -> asyncio.Future[Session]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Session] = loop.create_future()
        user = key[0]
        if nowait:
            ok, victim = self.capacity.try_reserve(user, queued=False)
            if not ok:
                self.metrics.acquires["refused"] += 1
                raise CapacityError(self.capacity.message(user), retry_after=5)
            session = self._new_session(user, template, primary=primary)
            self._flights[future] = session
            self._spawn_start(session, template, credentials, future, victim, key, primary)
        else:
            self._spawn(
                self._create(key, template, credentials, future, primary),
                f"create {key[0]}/{key[1]}",
            )
        if primary:
            self._inflight[key] = future
        return future

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"podwarden: {name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _create(
        self,
        key: Key,
        template: Template,
        credentials: dict[str, str],
        future: asyncio.Future[Session],
        primary: bool,
    ) -> None:
        user = key[0]
        try:
            victim = await self.capacity.reserve(user)
        except BaseException as e:
            if isinstance(e, CapacityError):
                self.metrics.acquires["refused"] += 1
                self.bus.publish(EventKind.REFUSED, f"{user} refused: {e.message}", user=user)
            self._settle(future, e)
            if primary and self._inflight.get(key) is future:
                del self._inflight[key]
            if not isinstance(e, Exception):
                raise
            return
        try:
            session = self._new_session(user, template, primary=primary)
        except PodwardenError as e:
            self._settle(future, e)
            if primary and self._inflight.get(key) is future:
                del self._inflight[key]
            return
        self._flights[future] = session
        self._spawn_start(session, template, credentials, future, victim, key, primary)

    def _new_session(self, user: str, template: Template, *, primary: bool) -> Session:
        """Register a new starting session in the slot its caller reserved."""
        try:
            port = self.ports.allocate()
        except PodwardenError:
            self.capacity.give_back(user)
            raise
        session_id = make_session_id(user, template.name)
        while session_id in self._sessions:
            session_id = make_session_id(user, template.name)
        now = self.clock()
        session = Session(session_id, user, template.name, created_at=now, last_used_at=now)
        self._sessions[session_id] = session
        key = (user, template.name)
        if primary or key not in self._primary:
            self._primary[key] = session_id
            self._is_primary.add(session_id)
        self._launcher.ports_of[session_id] = port
        self.metrics.acquires["new"] += 1
        self.bus.publish(
            EventKind.CREATED,
            f"{user} gets new session {session_id} ({template.name})",
            session_id=session_id,
            user=user,
            template=template.name,
        )
        self._save(session)
        return session

    def _spawn_start(
        self,
        session: Session,
        template: Template,
        credentials: dict[str, str],
        future: asyncio.Future[Session],
        victim: Session | None,
        key: Key,
        primary: bool,
    ) -> None:
        if credentials:
            self._launcher.credentials[session.session_id] = credentials
        self._track_start(
            session,
            self._spawn(
                self._start(session, template, future, victim, key),
                f"start {session.session_id}",
            ),
            future,
            key,
        )

    def _track_start(
        self, session: Session, task: asyncio.Task[Any], future: asyncio.Future[Session], key: Key
    ) -> None:
        """Remember a session's start task; when it ends, however it ends (even cancelled
        before it ran), its waiters are answered and the single-flight entry is cleared."""
        self._start_tasks[session.session_id] = task

        def done(_: asyncio.Task[Any]) -> None:
            if self._start_tasks.get(session.session_id) is task:
                del self._start_tasks[session.session_id]
            if self._inflight.get(key) is future:
                del self._inflight[key]
            self._settle(
                future,
                StartError("the session was deleted while it was starting", retryable=False),
            )

        task.add_done_callback(done)

    def _settle(self, future: asyncio.Future[Session], result: Session | BaseException) -> None:
        self._flights.pop(future, None)
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
        else:
            future.set_result(result)

    async def _start(
        self,
        session: Session,
        template: Template,
        future: asyncio.Future[Session],
        victim: Session | None,
        key: Key,
        how: str = "fresh",
    ) -> None:
        """Start (with retries), wait out the victim's cleanup, open the tunnel, go ready.

        ``how``: ``fresh`` (a new session), ``recycle`` (replace the dead workload first)
        or ``resume`` (a start interrupted by a restart: wait for the workload it made).
        """
        started = time.monotonic()
        try:
            if session.state is not SessionState.STARTING:
                raise asyncio.CancelledError  # deleted before this task got to run
            if how == "recycle":
                await self._launcher.close_tunnel(session)
                await self._launcher.stop(session, "recycling")
            if how == "resume":
                await self._launcher.resume(session, template)
            else:
                await self._launcher.start(session, template)
            if victim is not None:
                session.phase = "waiting for evicted session's cleanup"
                stop = self._stop_tasks.get(victim.session_id)
                if stop is not None:
                    await asyncio.shield(stop)
            await self._launcher.open_tunnel(session)
            if session.state is not SessionState.STARTING:
                raise asyncio.CancelledError  # deleted while the last step ran
            session.transition(SessionState.READY)
        except asyncio.CancelledError:
            self._settle(
                future, StartError("the session was deleted while it was starting", retryable=False)
            )
            raise
        except Exception as e:
            error = e if isinstance(e, PodwardenError) else StartError(f"unexpected error: {e!r}")
            self._fail(session, error)
            self._settle(future, error)
            return
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]
        now = self.clock()
        session.ready_at = now
        session.phase = "ready"
        session.refresh_failures = 0
        self.capacity.lru_add(session)
        elapsed = time.monotonic() - started
        self.metrics.start_seconds.observe(elapsed)
        self.bus.publish(
            EventKind.READY,
            f"{session.session_id} ready in {elapsed:.2f}s",
            session_id=session.session_id,
            user=session.user,
            took_s=round(elapsed, 3),
        )
        self._save(session)
        self._settle(future, session)

    def _fail(self, session: Session, error: PodwardenError) -> None:
        """Mark a session failed after its start gave up; free its slot and port."""
        was_live = session.state.is_live
        session.last_error = error.message
        session.phase = "failed"
        if session.state is not SessionState.FAILED:
            session.transition(SessionState.FAILED)
        if was_live:
            self._release_slot(session)
        self._launcher.release_port(session)
        self._launcher.credentials.pop(session.session_id, None)
        self.metrics.start_failures += 1
        self.metrics.acquires["failed"] += 1
        self.bus.publish(
            EventKind.FAILED,
            f"{session.session_id} failed: {error.message}",
            session_id=session.session_id,
            user=session.user,
            reason=error.message,
        )
        self._save(session)
        self._remember_ended(session)

    # ----------------------------------------------------------------- terminate

    def delete(self, session_id: str, reason: str = "deleted") -> Session:
        """Start ending the session; returns at once. Cleanup runs in the background and
        a ``cleanup_verified`` (or ``cleanup_leftover``) event says when it is done."""
        session = self.get(session_id)
        self._begin_terminate(session, reason, EventKind.TERMINATING)
        return session

    async def terminate(self, session_id: str, reason: str = "deleted") -> Session:
        """End the session and return once its cleanup is verified."""
        session = self.get(session_id)
        task = self._begin_terminate(session, reason, EventKind.TERMINATING)
        if task is not None:
            await asyncio.shield(task)
        return session

    def _begin_terminate(
        self,
        session: Session,
        reason: str,
        kind: EventKind | None,
        *,
        wake: bool = True,
    ) -> asyncio.Task[None] | None:
        sid = session.session_id
        existing = self._stop_tasks.get(sid)
        if existing is not None:
            return existing
        if session.state is SessionState.TERMINATED:
            return None
        was_live = session.state.is_live
        session.transition(SessionState.TERMINATING)
        session.phase = "terminating"
        if was_live:
            self._release_slot(session, wake=wake)
        if kind is not None:
            self.bus.publish(kind, f"{sid}: {reason}", session_id=sid, user=session.user)
        self._save(session)
        task = self._spawn(self._terminate(session, reason), f"stop {sid}")
        self._stop_tasks[sid] = task
        return task

    async def _terminate(self, session: Session, reason: str) -> None:
        sid = session.session_id
        started = time.monotonic()
        start_task = self._start_tasks.get(sid)
        if start_task is not None and not start_task.done():
            start_task.cancel()
            await asyncio.gather(start_task, return_exceptions=True)
        leftovers: list[str] = []
        await self._launcher.close_tunnel(session)
        handle = session.handle
        session.handle = None
        if handle is not None:
            try:
                report = await self.runtime.stop(handle, self.settings.pool.stop_grace)
                leftovers.extend(report.leftovers)
            except PodwardenError as e:
                leftovers.append(f"stop failed: {e.message}")
            except Exception as e:  # never leave the session stuck in terminating
                leftovers.append(f"stop failed: {e!r}")
        self._launcher.release_port(session)
        self._launcher.credentials.pop(sid, None)
        elapsed = time.monotonic() - started
        session.transition(SessionState.TERMINATED)
        self.metrics.terminations += 1
        if leftovers:
            self.metrics.cleanup_leftovers += 1
            session.cleanup = f"leftover after {elapsed:.2f}s: {'; '.join(leftovers)}"
            self.bus.publish(
                EventKind.CLEANUP_LEFTOVER,
                f"{sid} cleanup incomplete: {'; '.join(leftovers)}",
                session_id=sid,
                user=session.user,
                duration_s=round(elapsed, 3),
                leftovers=leftovers,
            )
        else:
            session.cleanup = f"verified in {elapsed:.2f}s"
            self.bus.publish(
                EventKind.CLEANUP_VERIFIED,
                f"{sid} cleanup verified in {elapsed:.2f}s ({reason})",
                session_id=sid,
                user=session.user,
                duration_s=round(elapsed, 3),
            )
        session.phase = "terminated"
        if self.store is not None:
            self.store.delete(sid)
        self._stop_tasks.pop(sid, None)
        self._remember_ended(session)

    def _remember_ended(self, session: Session) -> None:
        """Keep ended sessions for a while so people can read how they ended."""
        self._ended.append(session.session_id)
        while len(self._ended) > _KEEP_ENDED:
            old = self._ended.popleft()
            gone = self._sessions.get(old)
            if gone is not None and not gone.state.is_live and old not in self._stop_tasks:
                del self._sessions[old]
                self._is_primary.discard(old)
                self.logs.drop(old)
                if self.store is not None and gone.state is SessionState.FAILED:
                    self.store.delete(old)

    # ----------------------------------------------------------------- liveness

    def _on_workload_lost(self, session_id: str, reason: str) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.state not in (SessionState.READY, SessionState.REFRESHING):
            return
        self.bus.publish(
            EventKind.REFRESH_FAILED,
            f"{session_id} workload lost: {reason}",
            session_id=session_id,
            user=session.user,
            reason=reason,
        )
        self.handle_dead(session, reason)

    def handle_dead(self, session: Session, reason: str) -> None:
        """A ready session's workload is dead: recycle or remove it, as configured."""
        if self.state is not PoolState.RUNNING:
            return
        if self.settings.pool.on_refresh_failure == "remove":
            self._begin_terminate(session, f"removed: {reason}", EventKind.TERMINATING)
        else:
            self.recycle(session, reason)

    def recycle(self, session: Session, reason: str) -> None:
        """Replace a dead workload with a fresh one under the same id, port and slot."""
        template = self.settings.templates.get(session.template)
        if template is None:
            self._begin_terminate(session, f"template {session.template!r} is gone", None)
            return
        session.transition(SessionState.STARTING)
        session.phase = "recycling"
        session.last_error = reason
        self.capacity.lru_remove(session)
        self.metrics.recycles += 1
        self.bus.publish(
            EventKind.RECYCLED,
            f"{session.session_id} recycled: {reason}",
            session_id=session.session_id,
            user=session.user,
            reason=reason,
        )
        self._begin_flight(session, template, "recycle")

    def _begin_flight(self, session: Session, template: Template, how: str) -> None:
        """Start an existing session's workload again; acquires for its key join in."""
        key = (session.user, session.template)
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        if self._primary.get(key) == session.session_id:
            self._inflight[key] = future
        self._flights[future] = session
        task = self._spawn(
            self._start(session, template, future, None, key, how),
            f"{how} {session.session_id}",
        )
        self._track_start(session, task, future, key)

    # ----------------------------------------------------------------- persistence

    def _save(self, session: Session) -> None:
        if self.store is not None:
            self.store.save(
                session,
                is_primary=session.session_id in self._is_primary,
                port=self._launcher.ports_of.get(session.session_id),
            )

    # The recovery module restores sessions through these two.

    def adopt(self, session: Session, *, primary: bool, port: int | None) -> None:
        """Register a session found alive at start-up (``recovery`` calls this)."""
        self._sessions[session.session_id] = session
        self.capacity.take(session.user)
        key = (session.user, session.template)
        if primary and key not in self._primary:
            self._primary[key] = session.session_id
            self._is_primary.add(session.session_id)
        self._launcher.ports_of[session.session_id] = self.ports.allocate(port)
        if session.state is SessionState.READY:
            self.capacity.lru_add(session)

    def remember_ended(self, session: Session) -> None:
        """Register a session that ended while podwarden was down (for people to see)."""
        self._sessions[session.session_id] = session
        self._remember_ended(session)

    async def activate_adopted(self, session: Session) -> None:
        """Open the tunnel of an adopted ready session, or finish its start."""
        template = self.settings.templates.get(session.template)
        if session.state is SessionState.READY:
            try:
                await self._launcher.open_tunnel(session)
            except (StartError, OSError) as e:
                self._begin_terminate(session, f"cannot reopen tunnel: {e}", EventKind.FAILED)
            return
        if template is None:
            self._begin_terminate(
                session, f"template {session.template!r} is not configured", EventKind.TERMINATING
            )
            return
        self._begin_flight(session, template, "resume")
