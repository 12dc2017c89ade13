"""The event bus: every state change of the pool, as typed events, to many subscribers.

Publishing never waits: each subscriber has a bounded queue, and a subscriber that falls
behind loses its oldest events and is told how many (``Subscription.dropped``). A slow
TUI or a stalled SSE client therefore never slows the pool down.

Events are numbered (``seq``) within one run of the bus, and the run has a random
``boot`` name, so ``"<boot>-<seq>"`` names one event across restarts: a client that lost
its link resumes after the last id it saw (``EventBus.since``), from a replay buffer that
keeps every kind.

Every change to a session that a person can see is published through
``publish_session``, whose event carries the session's whole document as ``/sessions``
returns it (``data["session"]``, taken when the change happened): a front end applies it
as it comes, with no read of its own, and the events of one session, in order, always
end on its current state.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

__all__ = ["Event", "EventBus", "EventKind", "SessionLike", "Subscription"]


class EventKind(str, Enum):
    """What happened."""

    CREATED = "created"
    READY = "ready"
    REUSED = "reused"
    EVICTED = "evicted"
    QUEUED = "queued"
    REFUSED = "refused"
    REFRESH_OK = "refresh_ok"
    REFRESH_FAILED = "refresh_failed"
    RECYCLED = "recycled"
    START_RETRY = "start_retry"
    FAILED = "failed"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    TUNNEL_OPENED = "tunnel_opened"
    TUNNEL_CLOSED = "tunnel_closed"
    TUNNEL_MOVED = "tunnel_moved"
    """A session's tunnel came back on another local port (its old one was taken)."""
    LIVENESS_FAILED = "liveness_failed"
    """A liveness check (the fast probe between refreshes, or before a reuse) failed."""
    CLEANUP_VERIFIED = "cleanup_verified"
    CLEANUP_LEFTOVER = "cleanup_leftover"
    ADOPTED = "adopted"
    ORPHAN_REMOVED = "orphan_removed"
    VANISHED = "vanished"
    RUNTIME_DEGRADED = "runtime_degraded"
    RUNTIME_RECOVERED = "runtime_recovered"
    CULLED = "culled"
    """Stopped after its idle timeout."""
    AGED_OUT = "aged_out"
    """Stopped at its maximum age (at an idle moment, or busy after the grace)."""
    PINNED = "pinned"
    UNPINNED = "unpinned"
    DRAINING = "draining"
    """The pool stopped admitting new sessions."""
    UNDRAINED = "undrained"
    STANDBY_CLAIMED = "standby_claimed"
    """A new session was served by claiming a warm standby workload."""
    STANDBY_REFILLED = "standby_refilled"
    """A standby workload was started to keep the template's standby count."""
    POD_REPLACED = "pod_replaced"
    """A session's pod was replaced (deleted, evicted): data ``old_pod``, ``new_pod``."""
    PHASE = "phase"
    """A starting session's phase changed (``launching``, ``login``, ``waiting for a
    replacement pod``...): data ``phase``."""
    REFRESH_STARTED = "refresh_started"
    """A ready session is being refreshed (probe and keepalive)."""
    UNREACHABLE = "unreachable"
    """A session's target is lost: the session is not ready until it returns."""
    REACHABLE = "reachable"
    """An unreachable session's target returned: the session is ready again as it was."""
    FAILED_OVER = "failed_over"
    """A reuse of an unreachable session started a new workload on another target; the
    old one is removed when its target returns."""
    DELETE_QUEUED = "delete_queued"
    """A stop aimed at a lost target waits for it (kept in the store) and is retried with
    backoff once it returns, then verified."""
    TARGET_STATE = "target_state"
    """A target's heartbeat state changed: data ``target``, ``state``, ``previous``."""
    LOG = "log"


_NOT_IN_HISTORY = frozenset(
    {EventKind.LOG, EventKind.REUSED, EventKind.PHASE, EventKind.REFRESH_STARTED}
)
"""Kinds too frequent for the short history: thousands of reuses a second would push
every eviction and failure out of it, and every start and refresh says more in the
events that end them. Subscribers still see them."""


class SessionLike(Protocol):
    """What ``publish_session`` needs of a session (``backend.models.Session``)."""

    session_id: str
    user: str

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Event:
    """One thing that happened, with the session it concerns (if any)."""

    kind: EventKind
    message: str
    session_id: str | None = None
    user: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by the SSE stream, the store and the TUI."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind.value,
            "session_id": self.session_id,
            "user": self.user,
            "message": self.message,
            "data": self.data,
        }


class Subscription:
    """A subscriber's bounded queue; iterate it with ``async for``."""

    def __init__(self, bus: EventBus, maxsize: int, kinds: frozenset[EventKind] | None) -> None:
        self._bus = bus
        self._queue: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self._wakeup = asyncio.Event()
        self._closed = False
        self.kinds = kinds
        self.dropped = 0
        """How many events this subscriber lost because it fell behind."""

    def _offer(self, event: Event) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._wakeup.set()

    def get_nowait(self) -> Event | None:
        """The next queued event, or None."""
        return self._queue.popleft() if self._queue else None

    async def get(self) -> Event | None:
        """The next event; None once the subscription is closed and drained."""
        while not self._queue:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def close(self) -> None:
        """Stop receiving; a waiting ``get`` returns None."""
        if not self._closed:
            self._closed = True
            self._bus._unsubscribe(self)
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            event = await self.get()
            if event is None:
                return
            yield event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to subscribers, plus a short history for late joiners."""

    def __init__(self, history: int = 500, replay: int = 10_000) -> None:
        self._subscribers: list[Subscription] = []
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._replay: collections.deque[Event] = collections.deque(maxlen=replay)
        self._seq = itertools.count(1)
        self.boot = os.urandom(4).hex()
        """Names this run of the bus: event ids are ``<boot>-<seq>``."""
        self.published = 0

    def publish(
        self,
        kind: EventKind,
        message: str,
        *,
        session_id: str | None = None,
        user: str | None = None,
        **data: Any,
    ) -> Event:
        """Build an event and hand it to every subscriber; never blocks."""
        event = Event(kind, message, session_id, user, data, time.time(), next(self._seq))
        self.published += 1
        self._replay.append(event)
        if kind not in _NOT_IN_HISTORY:
            self._history.append(event)
        for subscriber in list(self._subscribers):
            subscriber._offer(event)
        return event

    def publish_session(
        self, kind: EventKind, message: str, session: SessionLike, **data: Any
    ) -> Event:
        """Publish a change of ``session``, carrying its whole current document
        (``data["session"]``, the shape ``/sessions`` returns)."""
        return self.publish(
            kind,
            message,
            session_id=session.session_id,
            user=session.user or None,
            session=session.to_dict(),
            **data,
        )

    def subscribe(
        self, maxsize: int = 1000, kinds: set[EventKind] | frozenset[EventKind] | None = None
    ) -> Subscription:
        """A new subscription that sees every event published from now on."""
        subscription = Subscription(self, maxsize, frozenset(kinds) if kinds else None)
        self._subscribers.append(subscription)
        return subscription

    def recent(self, limit: int = 100, session_id: str | None = None) -> list[Event]:
        """The last ``limit`` events (not log lines, not reuses), oldest first."""
        events = [e for e in self._history if session_id is None or e.session_id == session_id]
        return events[-limit:]

    def event_id(self, event: Event) -> str:
        return f"{self.boot}-{event.seq}"

    def since(self, after: str) -> tuple[list[Event], int | None]:
        """The buffered events after the event id ``after``, and how many are gone.

        Gone means published after ``after`` but no longer buffered: a count when ``after``
        is from this run, None (unknown) when it is from an earlier run of the daemon.
        """
        boot, _, number = after.rpartition("-")
        seq = int(number) if boot == self.boot else 0
        events = [e for e in self._replay if e.seq > seq]
        if boot != self.boot:
            return events, None
        first = events[0].seq if events else (self._replay[-1].seq + 1 if self._replay else 1)
        return events, max(0, first - seq - 1)

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
