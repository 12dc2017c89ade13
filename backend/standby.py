"""The standby keeper: keeps ``standby = N`` warm, unclaimed workloads per template.

It refills in the background whenever it is woken (a slot was freed, a standby was
claimed, the pool was undrained) and every ``activity_interval`` besides, starting what
is missing through the pool's ``start_standby``, which only ever takes a *free* slot: a
standby never makes a user wait and never causes a user's session to be evicted, and a
user who needs the slot takes it from a standby first (``capacity``). Standby sessions
are refreshed and liveness-checked like every other session; a dead one is recycled (so
replaced) and a claim verifies the workload before handing it out (``pool_policy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from backend.background import BackgroundTask
from backend.models import SessionState
from backend.pool import SessionPool

__all__ = ["StandbyKeeper"]

log = logging.getLogger("podwarden.standby")

FAILED_BACKOFF = 30.0
"""Seconds a template's standby is not started again after one failed to start (its
failure event says why), so a broken template does not start and fail in a loop."""


class StandbyKeeper:
    """Refills the standby sets; ``refill`` can be called directly."""

    def __init__(self, pool: SessionPool) -> None:
        self.pool = pool
        self._wake = asyncio.Event()
        self._loop = BackgroundTask("podwarden: standby keeper")
        pool.standby_wakeup = self._wake.set

    @property
    def wanted(self) -> dict[str, int]:
        """Template name -> standby count configured."""
        return {n: t.standby for n, t in self.pool.settings.templates.items() if t.standby > 0}

    def start(self) -> None:
        if self.wanted:
            self._loop.start(self._run)

    @property
    def running(self) -> bool:
        return self._loop.running

    async def stop(self) -> None:
        self.pool.standby_wakeup = None
        await self._loop.stop()

    async def _run(self) -> None:
        interval = self.pool.settings.pool.activity_interval
        while True:
            try:
                self.refill()
            except Exception:  # a bug in one round must not end the refills for good
                log.exception("standby refill failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()

    def refill(self) -> int:
        """Start the standby workloads missing now, as free slots allow; how many."""
        pool = self.pool
        started = 0
        now = pool.clock()
        failing = {
            s.template
            for s in pool.list()
            if s.standby and s.state is SessionState.FAILED and now - s.created_at < FAILED_BACKOFF
        }
        for name, count in self.wanted.items():
            if name in failing:
                continue
            template = pool.settings.templates[name]
            missing = count - len(pool.standby_sessions(name))
            for _ in range(missing):
                if not pool.start_standby(template):
                    return started
                started += 1
        return started
