"""The liveness checker: a fast probe of every ready session, between refreshes.

The refresher's round (probe and keepalive) runs every ``refresh_interval``, 5 minutes by
default: too rarely to notice a hung workload before someone is handed it. Every half
``liveness_interval`` this checks each ready session whose last successful check is
older than that half, with the pool's ``check_liveness`` (the template's readiness
probe, ``liveness_timeout`` at most). So a reuse normally finds a check younger than
``liveness_interval`` and stays a dictionary lookup; one that does not probes first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from backend.background import BackgroundTask
from backend.models import Session, SessionState
from backend.pool import SessionPool

__all__ = ["LivenessChecker"]

log = logging.getLogger("podwarden.liveness")

Sleep = Callable[[float], Awaitable[None]]


class LivenessChecker:
    """Runs check rounds until stopped; ``check_round`` can be called directly."""

    def __init__(self, pool: SessionPool, *, sleep: Sleep = asyncio.sleep, concurrency: int = 16):
        self.pool = pool
        self._sleep = sleep
        self._concurrency = concurrency
        self._loop = BackgroundTask("podwarden: liveness")
        self.rounds = 0

    def start(self) -> None:
        self._loop.start(self._run)

    @property
    def running(self) -> bool:
        return self._loop.running

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            await self._sleep(self.pool.settings.pool.liveness_interval / 2)
            try:
                await self.check_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one round must not end the checks for good
                log.exception("liveness round failed")

    def due(self) -> list[Session]:
        """Ready sessions whose last successful check is older than half the interval."""
        pool = self.pool
        older_than = pool.clock() - pool.settings.pool.liveness_interval / 2
        due = []
        for session in pool.list():
            record = pool.record(session.session_id)
            if session.state is SessionState.READY and record is not None:
                if record.checked_at <= older_than:
                    due.append(session)
        return due

    async def check_round(self) -> int:
        """Check every due session once, bounded in concurrency; how many failed."""
        semaphore = asyncio.Semaphore(self._concurrency)

        async def one(session: Session) -> bool:
            async with semaphore:
                return await self.pool.check_liveness(session)

        results = await asyncio.gather(*(one(s) for s in self.due()))
        self.rounds += 1
        return results.count(False)
