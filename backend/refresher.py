"""The background refresher: keeps ready sessions logged in and notices dead ones.

Every ``refresh_interval`` (shifted by up to ``refresh_jitter`` of it, so that many
backends, or many sessions started together, do not probe in lockstep) each ready session
is probed, at most ``refresh_concurrency`` at once, and its template's keepalive is called.
A probe that fails is retried a few times in quick succession; a workload that is gone or
keeps failing is handed to the pool, which recycles or removes it and says so in an event.
A session is never put back to ``ready`` after a failed probe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from backend.background import BackgroundTask
from backend.errors import PodwardenError, RuntimeUnavailable
from backend.events import EventKind
from backend.models import Session, SessionState
from backend.pool import SessionPool

__all__ = ["Refresher"]

log = logging.getLogger("podwarden.refresher")

Sleep = Callable[[float], Awaitable[None]]


class Refresher:
    """Runs refresh rounds until stopped; ``refresh_round`` can be called directly."""

    def __init__(
        self,
        pool: SessionPool,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        retry_delay: float = 0.5,
    ) -> None:
        self.pool = pool
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._retry_delay = retry_delay
        self._loop = BackgroundTask("podwarden: refresher")
        self.rounds = 0
        self.last_round_at: float | None = None

    def start(self) -> None:
        """Run rounds in a named background task."""
        self._loop.start(self._run)

    @property
    def running(self) -> bool:
        """False if the loop has ended (it only ends when stopped, or on a bug)."""
        return self._loop.running

    async def wait_stopped(self) -> None:
        """Wait until the loop has ended."""
        await self._loop.wait_stopped()

    async def stop(self) -> None:
        await self._loop.stop()

    def next_delay(self) -> float:
        """The interval, shifted by up to ± jitter of it."""
        settings = self.pool.settings.pool
        spread = settings.refresh_interval * settings.refresh_jitter
        return max(0.01, settings.refresh_interval + self._rng.uniform(-spread, spread))

    async def _run(self) -> None:
        while True:
            await self._sleep(self.next_delay())
            try:
                await self.refresh_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one round must not end refreshing for good
                log.exception("refresh round failed")

    async def refresh_round(self) -> None:
        """Probe every ready session once, bounded in concurrency."""
        semaphore = asyncio.Semaphore(self.pool.settings.pool.refresh_concurrency)
        sessions = [s for s in self.pool.list() if s.state is SessionState.READY]

        async def one(session: Session) -> None:
            async with semaphore:
                await self.refresh_session(session)

        await asyncio.gather(*(one(s) for s in sessions))
        self.rounds += 1
        self.last_round_at = time.time()

    async def refresh_session(self, session: Session) -> bool:
        """Probe (and keep alive) one session; True if it is fine.

        The session changes only through the pool's ``begin_refresh`` and
        ``finish_refresh``; the pool recycles or removes a session that failed.
        """
        pool = self.pool
        template = pool.settings.templates.get(session.template)
        if template is None or not pool.begin_refresh(session):
            return False
        attempts = pool.settings.pool.refresh_failures_before_recycle
        detail = ""
        ok = False
        for attempt in range(attempts):
            handle = session.handle
            if session.state is not SessionState.REFRESHING or handle is None:
                return False  # evicted or deleted meanwhile
            try:
                probe = await pool.runtime.probe(handle, template)
            except RuntimeUnavailable as e:
                # The runtime cannot be asked (cluster API down): that says nothing about
                # the workload, so do not count it against the session.
                pool.finish_refresh(session, None)
                pool.bus.publish_session(
                    EventKind.REFRESH_FAILED,
                    f"{session.session_id} not refreshed: {e.message}",
                    session,
                    reason=e.message,
                    runtime_unavailable=True,
                )
                return False
            if probe.alive and template.keepalive_path:
                try:
                    await pool.runtime.keepalive(handle, template)
                except PodwardenError as e:
                    probe = type(probe)(False, f"keepalive failed: {e.message}")
            if probe.alive:
                ok = True
                break
            detail = probe.detail
            session.refresh_failures += 1
            if probe.gone or attempt == attempts - 1:
                break
            await self._sleep(self._retry_delay)
        if session.state is not SessionState.REFRESHING:
            return False
        if ok:
            pool.finish_refresh(session, True)
            pool.metrics.refreshes["ok"] += 1
            pool.bus.publish_session(
                EventKind.REFRESH_OK, f"{session.session_id} refreshed", session
            )
            return True
        pool.metrics.refreshes["failed"] += 1
        pool.bus.publish_session(
            EventKind.REFRESH_FAILED,
            f"{session.session_id} failed its refresh: {detail}",
            session,
            reason=detail,
        )
        pool.finish_refresh(session, False, detail)
        return False
