"""Idle culling, the maximum age and drain's idle eviction, by real activity.

Every ``activity_interval`` the culler samples each ready session's tunnel: its open
connections and its byte count (two integers the relay keeps anyway, one addition per
chunk; nothing here runs per packet). A session is *in use* in a sample when a tunnel
connection is open, or more than ``idle_bytes_threshold`` bytes crossed since the last
sample (a keepalive's few hundred bytes do not count), and then its ``last_active_at``
moves to the sample time. Its idle time is measured from the later of its last acquire
and its last activity: the same ``idle_s`` ``/sessions`` and ``/metrics`` show.

Decisions, each an event and a metric, never for a pinned session:

- idle at least its idle timeout: stopped, ``culled (idle 1h02m)``;
- older than its maximum age: stopped at the first sample it is idle (no acquire, no
  traffic, no open connection since the previous sample), or, busy, once ``max_age_grace``
  more has passed; the event says which;
- drained with ``evict_idle``: stopped at the first sample it is idle.

Standby sessions are idle by nature: only the maximum age applies to them (the standby
keeper starts a younger one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from backend.background import BackgroundTask
from backend.events import EventKind
from backend.pool import SessionPool
from backend.pool_policy import format_duration
from backend.record import SessionRecord

__all__ = ["Culler"]

log = logging.getLogger("podwarden.culling")

Sleep = Callable[[float], Awaitable[None]]


class Culler:
    """Samples activity and applies the policies, every ``activity_interval``."""

    def __init__(self, pool: SessionPool, *, sleep: Sleep = asyncio.sleep) -> None:
        self.pool = pool
        self._sleep = sleep
        self._loop = BackgroundTask("podwarden: culler")
        self.rounds = 0
        self.last_round_at: float | None = None
        """Pool-clock time of the last round: "idle now" means nothing since then."""

    def start(self) -> None:
        self._loop.start(self._run)

    @property
    def running(self) -> bool:
        return self._loop.running

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            await self._sleep(self.pool.settings.pool.activity_interval)
            try:
                self.round()
            except Exception:  # a bug in one round must not end culling for good
                log.exception("culling round failed")

    def round(self) -> int:
        """Sample every session once and stop those a policy says must go; how many."""
        pool = self.pool
        now = pool.clock()
        previous = self.last_round_at
        if previous is None:
            previous = now - pool.settings.pool.activity_interval
        stopped = 0
        for record in pool.live_records():
            busy = self._sample(record, now)
            idle_now = not busy and record.session.idle_since <= previous
            if self._decide(record, now, busy, idle_now):
                stopped += 1
        self.last_round_at = now
        self.rounds += 1
        return stopped

    def _sample(self, record: SessionRecord, now: float) -> bool:
        """Whether the session was in use since the last sample (and note it if so)."""
        tunnel = record.tunnel
        if tunnel is None:
            return False
        stats = tunnel.stats()
        total = stats.bytes_total
        moved = total - record.tunnel_bytes_seen
        record.tunnel_bytes_seen = total
        if stats.active > 0 or moved > self.pool.settings.pool.idle_bytes_threshold:
            self.pool.note_activity(record, now)
            return True
        return False

    def _decide(self, record: SessionRecord, now: float, busy: bool, idle_now: bool) -> bool:
        pool = self.pool
        session = record.session
        if session.pinned:
            return False
        settings = pool.settings.pool
        idle_for = now - session.idle_since
        age = now - session.created_at
        if session.max_age is not None and age >= session.max_age:
            limit = format_duration(session.max_age)
            if idle_now or session.standby:
                reason = f"aged out (max age {limit}, stopped while idle)"
                outcome = "idle"
            elif age >= session.max_age + settings.max_age_grace:
                grace = format_duration(settings.max_age_grace)
                reason = f"aged out (max age {limit}, still busy after the {grace} grace)"
                outcome = "grace"
            else:
                return False
            if pool.cull(record, reason, EventKind.AGED_OUT):
                pool.metrics.aged_out[outcome] += 1
                return True
            return False
        if session.standby:
            if pool.drain.active and pool.drain.evict_idle:
                return pool.cull(record, "drained (an unclaimed standby)", EventKind.CULLED)
            return False
        timeout = session.idle_timeout
        if timeout is not None and idle_for >= timeout and not busy:
            if pool.cull(record, f"culled (idle {format_duration(idle_for)})", EventKind.CULLED):
                pool.metrics.culled += 1
                return True
            return False
        if pool.drain.active and pool.drain.evict_idle and idle_now:
            reason = f"drained (idle {format_duration(idle_for)})"
            if pool.cull(record, reason, EventKind.CULLED):
                pool.metrics.drained_idle += 1
                return True
        return False
