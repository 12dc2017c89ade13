"""Capacity: slots, least-recently-used order and the queue of acquires waiting for room.

A session holds one slot from its creation until it starts terminating or fails; the
totals are kept per pool and per user. Ready sessions are kept in an ``OrderedDict`` in
order of last use, so the eviction candidate is found at its front.

When the pool is full, ``when_full`` decides: ``reject`` refuses at once; ``queue`` and
``evict-lru`` wait in one strictly first-in, first-out queue, and nobody overtakes those
already waiting. The queue is served (``serve``) whenever a waiter could have become
servable: a slot is given back, a session becomes ready (and so evictable), or the LRU
candidate's ``min_idle_before_evict`` runs out (a timer). So no waiter waits while it
could be served, and a burst completes in waves.

Pinned sessions are never evicted: with every ready session pinned, ``evict-lru`` waits
or refuses like ``queue``. Standby sessions (warm, unclaimed workloads) hold slots too,
but they are the first to go when a user needs one, whatever ``when_full`` says, and a
standby is only ever started in a free slot (``take_free``): it never makes anybody wait
or be evicted.

``max_sessions_per_user`` is a quota, not a reason to wait: a user at it is refused at
once (``QuotaExceeded``, 429), never queued, and none of the user's sessions is evicted.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass

from backend.config import PoolSettings
from backend.errors import CapacityError, QuotaExceeded, RuntimeUnavailable
from backend.events import EventBus, EventKind
from backend.metrics import PoolMetrics
from backend.models import Session, SessionState

__all__ = ["Capacity"]


@dataclass(eq=False)
class _Waiter:
    user: str
    future: asyncio.Future[Session | None]
    """Resolves to the victim evicted for this waiter (None when a slot was free)."""
    expiry: asyncio.TimerHandle | None = None


class Capacity:
    """The pool's capacity bookkeeping and its ``when_full`` policy."""

    def __init__(
        self,
        settings: PoolSettings,
        clock: Callable[[], float],
        evict: Callable[[Session, str], None],
        bus: EventBus,
        metrics: PoolMetrics,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._evict = evict
        self.bus = bus
        self.metrics = metrics
        self.live = 0
        """Slots held: sessions starting, ready or refreshing."""
        self.user_live: collections.Counter[str] = collections.Counter()
        self.lru: collections.OrderedDict[str, Session] = collections.OrderedDict()
        """Ready (and refreshing) sessions, least recently used first."""
        self.standby: dict[str, Session] = {}
        """Standby sessions holding a slot (starting or ready), oldest first."""
        self._queue: collections.deque[_Waiter] = collections.deque()
        self._serving = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self.closed = False
        """Set when the pool shuts down: waiters give up."""
        self.limit_of: Callable[[], int] | None = None
        """The runtime's own bound on live sessions now (a multi-target pool: the room of
        the targets not lost); None: only ``max_sessions``."""

    @property
    def max_sessions(self) -> int:
        """Live sessions allowed now: ``max_sessions``, lower while targets are lost."""
        if self.limit_of is None:
            return self.settings.max_sessions
        return min(self.settings.max_sessions, self.limit_of())

    # ----------------------------------------------------------------- counts

    @property
    def queued(self) -> int:
        """Acquires waiting for room now."""
        return sum(1 for w in self._queue if not w.future.done())

    def take(self, user: str) -> None:
        self.live += 1
        self.user_live[user] += 1

    def give_back(self, user: str) -> None:
        """Return a slot taken for ``user``; the next in line may take it."""
        self.live -= 1
        self.user_live[user] -= 1
        if self.user_live[user] <= 0:
            del self.user_live[user]
        self.serve()

    def release(self, session: Session) -> None:
        """Give back a session's slot and drop it from the LRU order."""
        self.lru.pop(session.session_id, None)
        self.standby.pop(session.session_id, None)
        self.give_back(session.user)

    def take_free(self, session_of: str) -> bool:
        """Take a slot for a standby session only if one is free and nobody waits."""
        if self.closed or self._waiting() or self.live >= self.max_sessions:
            return False
        self.take(session_of)
        return True

    def add_standby(self, session: Session) -> None:
        self.standby[session.session_id] = session

    def hand_over(self, session: Session, old_id: str, user: str) -> None:
        """A claimed standby's slot now belongs to ``user`` (quota checked by the caller)."""
        self.standby.pop(old_id, None)
        self.lru.pop(old_id, None)
        self.user_live[session.user] -= 1
        if self.user_live[session.user] <= 0:
            del self.user_live[session.user]
        self.user_live[user] += 1

    # ----------------------------------------------------------------- LRU order

    def lru_add(self, session: Session) -> None:
        """A session became ready: it joins the order at its place by ``idle_since``
        (a recycled session keeps the place its last use gave it), and may now be
        evicted for a waiter."""
        if self.lru:
            newest = next(reversed(self.lru.values()))
            if newest.idle_since > session.idle_since:
                self.rebuild_lru([*self.lru.values(), session])
                self.serve()
                return
        self.lru[session.session_id] = session
        self.serve()

    def lru_remove(self, session: Session) -> None:
        self.lru.pop(session.session_id, None)

    def rebuild_lru(self, sessions: list[Session]) -> None:
        """Order ``sessions`` by last use (after re-adoption: the store's ``last_used_at``)."""
        self.lru = collections.OrderedDict(
            (s.session_id, s) for s in sorted(sessions, key=lambda s: s.idle_since)
        )

    def touch(self, session: Session) -> None:
        """Make a ready session the most recently used."""
        if session.session_id in self.lru:
            self.lru.move_to_end(session.session_id)

    def candidate(self) -> Session | None:
        """The least recently used ready session that may be evicted (refreshing,
        pinned and standby ones are not LRU candidates)."""
        for session in self.lru.values():
            if session.state is SessionState.READY and not session.pinned:
                if not session.standby:
                    return session
        return None

    def standby_victim(self) -> Session | None:
        """A standby session to give its slot up: a starting one first (nothing is lost
        yet), else the oldest ready one."""
        for session in self.standby.values():
            if session.state is SessionState.STARTING:
                return session
        for session in self.standby.values():
            if session.state is SessionState.READY:
                return session
        return None

    def evictable(self) -> Session | None:
        """The LRU candidate, if it has been idle for ``min_idle_before_evict``."""
        session = self.candidate()
        if session is None:
            return None
        if self.clock() - session.idle_since >= self.settings.min_idle_before_evict:
            return session
        return None

    # ----------------------------------------------------------------- reserving

    def check_quota(self, user: str) -> None:
        """Refuse at once a user who already holds ``max_sessions_per_user`` sessions."""
        limit = self.settings.max_sessions_per_user
        if limit is not None and self.user_live.get(user, 0) >= limit:
            self.metrics.acquires["refused"] += 1
            raise QuotaExceeded(
                f"user {user!r} already holds {limit} sessions, the limit "
                f"max_sessions_per_user = {limit}; delete one or reuse it",
                retry_after=5,
            )

    def next_victim(self) -> Session | None:
        """The session a new session would take the slot of if one were asked for now
        with the pool full: a standby first, else (under ``evict-lru``) the evictable
        least recently used one; None when nothing would be evicted."""
        spare = self.standby_victim()
        if spare is not None:
            return spare
        if self.settings.when_full != "evict-lru":
            return None
        return self.evictable()

    def _grant(self, user: str) -> tuple[bool, Session | None]:
        """Take a slot for ``user`` now if the policy allows; maybe by evicting (returned)."""
        if self.live < self.max_sessions:
            self.take(user)
            return True, None
        spare = self.standby_victim()
        if spare is not None:
            self._evict(spare, user)  # standby goes first, whatever the policy
            self.metrics.standby_yielded += 1
            self.take(user)
            return True, spare
        if self.settings.when_full != "evict-lru":
            return False, None
        victim = self.evictable()
        if victim is None:
            return False, None
        self._evict(victim, user)  # gives its slot back (re-entrant serve is a no-op)
        self.metrics.evictions += 1
        self.take(user)
        return True, victim

    def _waiting(self) -> bool:
        return any(not w.future.done() for w in self._queue)

    def try_reserve(self, user: str) -> Session | None:
        """A slot now or ``CapacityError``; never waits. Returns the victim, if any."""
        self.check_quota(user)
        if not self._waiting():  # FIFO: nobody overtakes those already waiting
            ok, victim = self._grant(user)
            if ok:
                return victim
        self.metrics.acquires["refused"] += 1
        raise CapacityError(self.message(), retry_after=self._retry_after())

    async def reserve(self, user: str) -> Session | None:
        """Wait for a slot as the policy says; returns a victim being evicted, if any.

        Raises ``QuotaExceeded`` at once, ``CapacityError`` at once (``reject``) or after
        ``queue_timeout``, ``RuntimeUnavailable`` when the pool shuts down. Cancelled, it
        leaves the queue, or hands on the slot it was given just before.
        """
        if self.closed:
            raise RuntimeUnavailable("the pool is shutting down")
        self.check_quota(user)
        if not self._waiting():
            ok, victim = self._grant(user)
            if ok:
                return victim
        pool = self.settings
        if pool.when_full == "reject":
            self.metrics.acquires["refused"] += 1
            raise CapacityError(self.message(), retry_after=self._retry_after())
        loop = asyncio.get_running_loop()
        waiter = _Waiter(user, loop.create_future())
        waiter.expiry = loop.call_later(pool.queue_timeout, self._expire, waiter)
        self._queue.append(waiter)
        self.bus.publish(
            EventKind.QUEUED,
            f"{user} waits for room in the pool ({self.live}/{self.max_sessions} active, "
            f"{self.queued} waiting)",
            user=user,
        )
        self._arm_idle_timer()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.give_back(user)  # granted as we gave up: the slot is the next one's
            raise
        finally:
            waiter.expiry.cancel()
            if not waiter.future.done():
                waiter.future.cancel()
            self._drop_done()

    def withdraw_waiters(self, refusal: Callable[[str], BaseException]) -> int:
        """Fail every waiting acquire with ``refusal(user)`` (a drain began); how many."""
        withdrawn = 0
        for waiter in self._queue:
            if not waiter.future.done():
                waiter.future.set_exception(refusal(waiter.user))
                withdrawn += 1
        self._drop_done()
        self._arm_idle_timer()
        return withdrawn

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.future.done():
            return
        self.metrics.acquires["refused"] += 1
        waiter.future.set_exception(
            CapacityError(
                self.message() + f" (waited {self.settings.queue_timeout:g}s)",
                retry_after=self._retry_after(),
            )
        )
        self._drop_done()

    def _drop_done(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        if len(self._queue) > 64 and self.queued < len(self._queue) // 2:
            self._queue = collections.deque(w for w in self._queue if not w.future.done())

    def serve(self) -> None:
        """Hand slots to waiters, first in first out, for as long as the policy allows."""
        if self._serving or self.closed:
            return
        self._serving = True
        try:
            while self._queue:
                head = self._queue[0]
                if head.future.done():
                    self._queue.popleft()
                    continue
                try:
                    self.check_quota(head.user)
                except QuotaExceeded as e:  # the user's own sessions filled up meanwhile
                    self._queue.popleft()
                    head.future.set_exception(e)
                    continue
                ok, victim = self._grant(head.user)
                if not ok:
                    break
                self._queue.popleft()
                head.future.set_result(victim)
        finally:
            self._serving = False
        self._arm_idle_timer()

    def _arm_idle_timer(self) -> None:
        """Wake the queue when the LRU candidate has been idle long enough to evict."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.settings.when_full != "evict-lru" or not self._waiting():
            return
        candidate = self.candidate()
        if candidate is None:
            return  # serve() runs again when a session becomes ready
        due = candidate.idle_since + self.settings.min_idle_before_evict - self.clock()
        if due > 0:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(due + 0.001, self.serve)

    def close(self) -> None:
        """Refuse every waiter: the pool is shutting down."""
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for waiter in self._queue:
            if not waiter.future.done():
                waiter.future.set_exception(RuntimeUnavailable("the pool is shutting down"))
        self._queue.clear()

    # ----------------------------------------------------------------- words

    def _retry_after(self) -> float:
        return max(1.0, self.settings.min_idle_before_evict)

    def message(self) -> str:
        pool = self.settings
        return (
            f"the pool is full ({self.live}/{self.max_sessions}) and no session may be "
            f"evicted (policy {pool.when_full}, min_idle_before_evict "
            f"{pool.min_idle_before_evict:g}s); retry later or delete a session"
        )
