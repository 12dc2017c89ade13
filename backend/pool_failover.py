"""Targets: label requirements, and what the pool does with the sessions of a target
that is lost, and back (failover).

A ``MultiRuntime`` tells the pool when a target is lost and when it answers again. The
pool then:

- marks the target's ready sessions ``unreachable`` (not ready, never handed out, out of
  the LRU order so no eviction tries to stop them through a dead API), and says so;
- answers a reuse of such a session by waiting up to ``failover_wait`` for the target; if
  it is still lost, the session gets a new workload on another target (same id and
  tunnel port, ``is_new_session`` true: the client's login state is gone), and the old
  workload is remembered;
- when the target returns, makes its unreachable sessions ready again as they are, and
  removes (verified) the workloads that were replaced elsewhere meanwhile, so there is
  never a duplicate per (user, template).

Kept apart from ``pool.py`` like the other verb groups; ``SessionPool`` inherits it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from backend.cleanup import StopOutcome, WorkloadStopper
from backend.config import Settings
from backend.errors import InvalidRequest, PodwardenError
from backend.events import EventBus, EventKind
from backend.launcher import Launcher
from backend.models import Session, SessionState, WorkloadHandle
from backend.record import Flight, SessionRecord
from backend.runtime.base import Runtime
from backend.store import Store
from backend.templates import Template

if TYPE_CHECKING:
    from backend.capacity import Capacity

__all__ = ["REPLACED_FLAG", "STOP_RETRY_DELAYS", "FailoverVerbs", "target_of"]

REPLACED_FLAG = "replaced_workloads"
"""Store flag: the workloads replaced elsewhere during an outage (JSON list of handles), so
a restart before their target returns still removes them."""

STOP_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Seconds between tries of a stop whose target answered but failed it."""


def target_of(session: Session) -> str | None:
    """The target a session's workload runs on (multi-target pools), or None."""
    return session.handle.extra.get("target") if session.handle is not None else None


class FailoverVerbs:
    """Lost and returning targets, and reuses of unreachable sessions."""

    settings: Settings
    runtime: Runtime
    bus: EventBus
    capacity: Capacity
    clock: Callable[[], float]
    stopper: WorkloadStopper
    _records: dict[str, SessionRecord]
    _launcher: Launcher
    store: Store | None
    _target_returned: dict[str, asyncio.Event]
    """Per target: set when it returns from lost (a reuse waiting for it wakes)."""
    replaced: list[WorkloadHandle]
    """Workloads on lost targets whose sessions were started elsewhere: removed when
    their target returns."""

    if TYPE_CHECKING:

        @property
        def running(self) -> bool: ...

        def _save(self, record: SessionRecord) -> None: ...

        def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

        def _begin_flight(self, record: SessionRecord, template: Any, how: str) -> None: ...

        async def _terminate(self, record: SessionRecord, reason: str) -> None: ...

        def _begin_terminate(
            self, record: SessionRecord, reason: str, kind: EventKind | None
        ) -> asyncio.Task[None] | None: ...

    def _returned(self, target: str) -> asyncio.Event:
        event = self._target_returned.get(target)
        if event is None:
            event = self._target_returned[target] = asyncio.Event()
        return event

    # ----------------------------------------------------------------- placement

    def _check_requirements(
        self, template: Template, requires: dict[str, str] | None
    ) -> dict[str, str]:
        """The request's label requirements, checked against what the targets carry."""
        labels = dict(requires or {})
        check = getattr(self.runtime, "check_requirements", None)
        if check is not None:
            check(template, labels)
        elif labels:
            key, value = sorted(labels.items())[0]
            raise InvalidRequest(
                f"requires.{key}",
                f"no target has the label {key}={value} (the {self.runtime.name} runtime "
                'has no targets; labels need runtime.kind = "multi")',
            )
        return labels

    # ----------------------------------------------------------------- from the runtime

    def target_lost(self, target: str, why: str) -> None:
        """Mark the target's ready sessions unreachable."""
        self._target_returned[target] = asyncio.Event()  # set when it returns
        if not self.running:
            return
        for record in list(self._records.values()):
            session = record.session
            if target_of(session) != target or record.flight is not None:
                continue
            if session.state not in (SessionState.READY, SessionState.REFRESHING):
                continue
            session.transition(SessionState.UNREACHABLE)
            session.phase = f"unreachable: target {target} is lost"
            session.last_error = f"target {target} is lost: {why}"
            self.capacity.lru_remove(session)
            self.bus.publish(
                EventKind.UNREACHABLE,
                f"{session.session_id} is unreachable: target {target} is lost ({why})",
                session_id=session.session_id,
                user=session.user,
                target=target,
            )
            self._save(record)

    def target_back(self, target: str) -> None:
        """Its unreachable sessions are ready again; replaced workloads there are removed."""
        self._returned(target).set()
        if not self.running:
            return
        for record in list(self._records.values()):
            session = record.session
            if session.state is not SessionState.UNREACHABLE or target_of(session) != target:
                continue
            session.transition(SessionState.READY)
            session.phase = "ready"
            session.last_error = None
            record.checked_at = 0.0  # the next reuse probes it first
            self.capacity.lru_add(session)
            if record.tunnel is None:  # kept through a restart while its target was lost
                self._spawn(self._reopen_tunnel(record), f"tunnel {session.session_id}")
            self.bus.publish(
                EventKind.REACHABLE,
                f"{session.session_id} is reachable again: target {target} returned",
                session_id=session.session_id,
                user=session.user,
                target=target,
            )
            self._save(record)
        for handle in [h for h in self.replaced if h.extra.get("target") == target]:
            self.remove_replaced(handle)

    def adopt_pending_stop(self, session: Session, reason: str) -> None:
        """A stored stop aimed at a target that is still lost (a restart during the
        outage): registered again, and carried out when the target returns."""
        record = SessionRecord(session, primary=False)
        self._records[session.session_id] = record
        record.stop_task = self._spawn(
            self._terminate(record, reason), f"stop {session.session_id} (queued)"
        )

    # ----------------------------------------------------------------- replaced workloads

    def load_replaced(self) -> None:
        """Read the replaced workloads a previous run left (before recovery)."""
        if self.store is None:
            return
        raw = self.store.load_flags().get(REPLACED_FLAG)
        if raw:
            self.replaced[:] = [WorkloadHandle.from_dict(d) for d in json.loads(raw)]

    def _save_replaced(self) -> None:
        if self.store is not None:
            value = json.dumps([h.to_dict() for h in self.replaced]) if self.replaced else None
            self.store.set_flag(REPLACED_FLAG, value)

    def is_replaced(self, handle: WorkloadHandle) -> bool:
        """Whether ``handle`` (as a runtime lists it) is a workload replaced elsewhere."""
        return any(_same(h, handle) for h in self.replaced)

    def remove_replaced(self, listed: WorkloadHandle) -> None:
        """Stop a replaced workload (its target answers now); forgotten once verified."""
        target = listed.extra.get("target") or ""
        sid = listed.extra.get("target_session") or listed.ref

        async def remove() -> None:
            owner = self._records.get(sid)
            outcome = await self.stop_through_outage(
                listed,
                session_id=sid,
                user=owner.session.user if owner is not None else None,
                why=f"replaced on another target while {target} was lost",
            )
            if outcome.verified:
                self.replaced[:] = [h for h in self.replaced if not _same(h, listed)]
                self._save_replaced()

        self._spawn(remove(), f"remove replaced {sid} on {target}")

    # ----------------------------------------------------------------- stops

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
    ) -> StopOutcome:
        """Stop a workload; one on a lost target waits for it to return (a
        ``delete_queued`` event says so), then the stop is tried with backoff
        (``STOP_RETRY_DELAYS``) until it is verified. ``finish`` is passed to every
        attempt's ``WorkloadStopper.stop`` (so it must tolerate being called again)."""
        is_lost = getattr(self.runtime, "is_lost", None)
        target = (handle.extra.get("target") if handle is not None else None) or ""
        queued = False
        delays = iter(STOP_RETRY_DELAYS)
        while True:
            if handle is not None and is_lost is not None and is_lost(handle):
                if self.capacity.closed:
                    # Shutting down: the store keeps it (terminating) for the next start.
                    raise asyncio.CancelledError
                if not queued:
                    queued = True
                    if record is not None:
                        record.stop_queued = True
                        record.session.phase = f"delete queued: target {target} is lost"
                    self.bus.publish(
                        EventKind.DELETE_QUEUED,
                        f"{session_id}: target {target} is lost; the stop ({why}) is kept "
                        "and retried when it returns",
                        session_id=session_id,
                        user=user,
                        target=target,
                    )
                await self._returned(target).wait()
                if record is not None:
                    record.stop_queued = False
                    record.session.phase = "terminating"
                continue
            outcome = await self.stopper.stop(
                handle,
                session_id=session_id,
                user=user,
                why=why,
                verified_kind=EventKind.CLEANUP_VERIFIED,
                started=started,
                finish=finish,
            )
            if outcome.verified or is_lost is None or handle is None:
                return outcome
            if is_lost(handle):
                continue  # lost while stopping: wait for it again
            delay = next(delays, None)
            if delay is None:
                return outcome
            await asyncio.sleep(delay)

    async def _reopen_tunnel(self, record: SessionRecord) -> None:
        try:
            await self._launcher.open_tunnel(record, record.port)
        except (PodwardenError, OSError) as e:
            why = e.message if isinstance(e, PodwardenError) else str(e)
            self._begin_terminate(record, f"cannot reopen tunnel: {why}", EventKind.FAILED)

    # ----------------------------------------------------------------- reuse

    async def await_or_fail_over(self, record: SessionRecord) -> Flight | None:
        """A reuse found ``record`` unreachable: wait up to ``failover_wait`` for its
        target. None when the session is reusable again; else the start of its new
        workload elsewhere, for the caller to join (``is_new_session`` true)."""
        session = record.session
        target = target_of(session) or ""
        wait = self.settings.runtime.failover_wait
        if wait > 0:
            try:
                await asyncio.wait_for(self._returned(target).wait(), wait)
            except TimeoutError:
                pass
        if session.state is not SessionState.UNREACHABLE:
            return record.flight  # back (None), or already failing over (join it)
        if record.flight is not None:
            return record.flight
        template = self.settings.templates.get(session.template)
        if template is None:
            return None
        handle, session.handle = session.handle, None
        if handle is not None:
            self.replaced.append(handle)
            self._save_replaced()
            forget = getattr(self.runtime, "forget", None)
            if forget is not None:
                forget(handle)
        tunnel, record.tunnel = record.tunnel, None
        if tunnel is not None:
            await tunnel.close()
        session.transition(SessionState.STARTING)
        session.starting_since = self.clock()
        session.phase = f"failing over from target {target}"
        started = time.time()
        self.bus.publish(
            EventKind.FAILED_OVER,
            f"{session.session_id}: target {target} is still lost after {wait:g}s; starting "
            "a new workload on another target (its old one is removed when it returns)",
            session_id=session.session_id,
            user=session.user,
            from_target=target,
            at=started,
        )
        self._begin_flight(record, template, "fresh")
        return record.flight


def _same(a: WorkloadHandle, b: WorkloadHandle) -> bool:
    return (a.extra.get("target"), a.extra.get("target_session") or a.ref) == (
        b.extra.get("target"),
        b.extra.get("target_session") or b.ref,
    )
