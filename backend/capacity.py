"""Capacity: slots, least-recently-used order and the queue of acquires waiting for room.

A session holds one slot from its creation until it starts terminating or fails; the
totals are kept per pool and per user. Ready sessions are kept in ``OrderedDict``s in
order of last use (global and per user), so the eviction candidate is the first entry:
O(1) whatever the pool's size. Acquires that find no room wait in a FIFO queue; nobody
overtakes those already waiting, and each waiter also wakes by itself when the LRU
candidate becomes idle long enough to be evicted.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from backend.config import PoolSettings
from backend.errors import CapacityError, RuntimeUnavailable
from backend.events import EventBus, EventKind
from backend.metrics import PoolMetrics
from backend.models import Session, SessionState

__all__ = ["Capacity"]


class Capacity:
    """The pool's capacity bookkeeping and its ``when_full`` policy."""

    def __init__(
        self,
        settings: PoolSettings,
        sessions: dict[str, Session],
        clock: Callable[[], float],
        evict: Callable[[Session, str], None],
        bus: EventBus,
        metrics: PoolMetrics,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self._evict = evict
        self.bus = bus
        self.metrics = metrics
        self.live = 0
        """Slots held: sessions starting, ready or refreshing."""
        self.user_live: collections.Counter[str] = collections.Counter()
        self.lru: collections.OrderedDict[str, None] = collections.OrderedDict()
        """Ready session ids, least recently used first."""
        self.user_lru: dict[str, collections.OrderedDict[str, None]] = {}
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False
        """Set when the pool shuts down: waiters give up."""

    @property
    def queued(self) -> int:
        """Acquires waiting for room now."""
        return sum(1 for w in self.waiters if not w.done())

    def give_back(self, user: str, *, wake: bool = True) -> None:
        """Return a slot taken for ``user``."""
        self.live -= 1
        self.user_live[user] -= 1
        if self.user_live[user] <= 0:
            del self.user_live[user]
        if wake:
            self.wake()

    def release(self, session: Session, *, wake: bool = True) -> None:
        """Give back a session's slot and drop it from the LRU order."""
        self.lru_remove(session)
        self.give_back(session.user, wake=wake)

    def touch(self, session: Session) -> None:
        """Make a ready session the most recently used."""
        sid = session.session_id
        if sid in self.lru:
            self.lru.move_to_end(sid)
            self.user_lru[session.user].move_to_end(sid)

    def close(self) -> None:
        """Refuse every waiter: the pool is shutting down."""
        self.closed = True
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeUnavailable("the pool is shutting down"))
                waiter.exception()

    def take(self, user: str) -> None:
        self.live += 1
        self.user_live[user] += 1

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def lru_add(self, session: Session) -> None:
        self.lru[session.session_id] = None
        self.user_lru.setdefault(session.user, collections.OrderedDict())[session.session_id] = None

    def lru_remove(self, session: Session) -> None:
        self.lru.pop(session.session_id, None)
        per_user = self.user_lru.get(session.user)
        if per_user is not None:
            per_user.pop(session.session_id, None)
            if not per_user:
                del self.user_lru[session.user]

    def evictable(self, order: collections.OrderedDict[str, None] | None) -> Session | None:
        """The least recently used ready session of ``order`` if it may be evicted now."""
        if not order:
            return None
        session = self.sessions[next(iter(order))]
        idle = self.clock() - session.last_used_at
        if session.state is SessionState.READY and idle >= self.settings.min_idle_before_evict:
            return session
        return None

    def next_evictable_in(self, user: str) -> float | None:
        """Seconds until the LRU candidate becomes evictable (for a queued waiter)."""
        pool = self.settings
        order = (
            self.user_lru.get(user)
            if self.user_live[user] >= pool.max_sessions_per_user
            else self.lru
        )
        if not order:
            return None
        session = self.sessions[next(iter(order))]
        return max(0.0, session.last_used_at + pool.min_idle_before_evict - self.clock())

    def try_reserve(self, user: str, *, queued: bool) -> tuple[bool, Session | None]:
        """Take a slot for ``user`` now if the policy allows; maybe by evicting (returned)."""
        pool = self.settings
        if not queued and any(not w.done() for w in self.waiters):
            return False, None  # FIFO: nobody overtakes those already waiting
        user_full = self.user_live.get(user, 0) >= pool.max_sessions_per_user
        total_full = self.live >= pool.max_sessions
        if not user_full and not total_full:
            self.take(user)
            return True, None
        if pool.when_full != "evict-lru":
            return False, None
        victim = self.evictable(self.user_lru.get(user) if user_full else self.lru)
        if victim is None:
            return False, None
        self._evict(victim, user)
        self.metrics.evictions += 1
        self.take(user)
        return True, victim

    def message(self, user: str) -> str:
        pool = self.settings
        if self.user_live.get(user, 0) >= pool.max_sessions_per_user:
            return (
                f"user {user!r} already holds {pool.max_sessions_per_user} sessions "
                f"(max_sessions_per_user); delete one or reuse it"
            )
        return (
            f"the pool is full ({self.live}/{pool.max_sessions}) and no session may be "
            f"evicted (policy {pool.when_full}, min_idle_before_evict "
            f"{pool.min_idle_before_evict:g}s); retry later or delete a session"
        )

    async def reserve(self, user: str) -> Session | None:
        """Wait for a slot as the policy says; returns a victim being evicted, if any."""
        pool = self.settings
        ok, victim = self.try_reserve(user, queued=False)
        if ok:
            return victim
        if pool.when_full == "reject":
            raise CapacityError(self.message(user), retry_after=5)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + pool.queue_timeout
        self.bus.publish(
            EventKind.QUEUED, f"{user} waits for room in the pool ({self.live} active)", user=user
        )
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.append(waiter)
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise CapacityError(
                        self.message(user) + f" (waited {pool.queue_timeout:g}s)",
                        retry_after=max(1.0, pool.min_idle_before_evict),
                    )
                timeout = remaining
                if pool.when_full == "evict-lru":
                    soon = self.next_evictable_in(user)
                    if soon is not None:
                        timeout = min(timeout, soon + 0.001)
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), timeout)
                except TimeoutError:
                    pass
                if self.closed:
                    raise RuntimeUnavailable("the pool is shutting down")
                # Only the head of the queue and those woken with it try; others wait on.
                ok, victim = self.try_reserve(user, queued=True)
                if ok:
                    return victim
                if waiter.done():
                    self.waiters.remove(waiter)
                    waiter = loop.create_future()
                    self.waiters.append(waiter)
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            if not waiter.done():
                waiter.cancel()
            # A slot freed while we were giving up belongs to the next in line.
            self.wake()
