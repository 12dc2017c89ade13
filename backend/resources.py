"""The resource sampler: every session's CPU and memory, and the host's or cluster's totals.

Every ``resources_interval`` (5 s) it hands the live sessions' workload handles to the
runtime's ``resources`` and keeps the answer: each figure on its session (``usage``, read
by ``/sessions`` and ``/metrics``), the totals here (``/health``'s ``resources`` and
``/metrics``). Requests never sample: they read the last sample, so a scrape or a console
refresh costs nothing extra, and the sampling itself (a pass over ``/proc`` in a worker
thread, or one list of pod metrics) runs a few times a minute.

The first sample is taken at once and the second a second later, so CPU rates (which need
two samples) show soon after a start. A runtime that answers None cannot tell at all (the
in-memory one): the loop ends there and costs nothing further.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from backend.background import BackgroundTask
from backend.models import WorkloadHandle
from backend.pool import SessionPool
from backend.runtime.base import ResourceTotals

__all__ = ["ResourceSampler"]

log = logging.getLogger("podwarden.resources")

Sleep = Callable[[float], Awaitable[None]]

_SECOND_SAMPLE_AFTER = 1.0
"""Seconds after the first sample that the second is taken (the first CPU rates)."""


class ResourceSampler:
    """Samples the runtime's resource figures in the background; see the module docstring."""

    def __init__(self, pool: SessionPool, *, sleep: Sleep = asyncio.sleep) -> None:
        self.pool = pool
        self._sleep = sleep
        self._loop = BackgroundTask("podwarden: resources")
        self.totals: ResourceTotals | None = None
        """The host's or the cluster's figures at the last sample; None before it, or when
        the runtime cannot tell."""
        self.supported: bool | None = None
        """Whether the runtime reports figures (None before the first sample)."""
        self.sampled_at: float | None = None
        """Unix time of the last sample that succeeded."""
        self.rounds = 0
        self.last_error = ""

    @property
    def interval(self) -> float:
        return self.pool.settings.pool.resources_interval

    def start(self) -> None:
        if self.interval > 0:
            self._loop.start(self._run)

    @property
    def running(self) -> bool:
        return self._loop.running

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        delay = min(_SECOND_SAMPLE_AFTER, self.interval)
        while True:
            try:
                if not await self.round():
                    return  # this runtime cannot tell: nothing to sample, ever
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one failed sample must not end sampling for good
                error = str(e) or type(e).__name__
                # Said once, not every few seconds while (say) the cluster is away.
                level = logging.DEBUG if error == self.last_error else logging.WARNING
                log.log(level, "resource sample failed: %s", error)
                self.last_error = error
            await self._sleep(delay)
            delay = self.interval

    async def round(self) -> bool:
        """Take one sample and keep it; False when the runtime cannot tell (None)."""
        sessions = [s for s in self.pool.list() if s.state.is_live]
        handles: dict[str, WorkloadHandle] = {
            s.session_id: s.handle for s in sessions if s.handle is not None
        }
        report = await self.pool.runtime.resources(handles)
        self.rounds += 1
        if report is None:
            self.supported = False
            self.totals = None
            return False
        self.supported = True
        self.last_error = ""
        for session in sessions:
            session.usage = report.sessions.get(session.session_id)
        self.totals = report.totals
        self.sampled_at = time.time()
        return True

    def summary(self) -> dict[str, Any] | None:
        """The ``resources`` section of ``/health``: the totals, what the live sessions
        use (or request) together, and when it was sampled; None when nothing is known."""
        if self.totals is None:
            return None
        cpu = 0.0
        memory = 0
        sources: set[str] = set()
        for session in self.pool.list():
            usage = session.usage
            if usage is None or not session.state.is_live:
                continue
            sources.add(usage.source)
            cpu += usage.cpu_percent or 0.0
            memory += usage.memory_bytes or 0
        data = self.totals.to_dict()
        data.update(
            sessions_cpu_percent=round(cpu, 1),
            sessions_memory_bytes=memory,
            sessions_source=_one(sources),
            sampled_at=self.sampled_at,
            interval_s=self.interval,
        )
        return data


def _one(sources: set[str]) -> str | None:
    """The sessions' common source; ``mixed`` when they differ, None with no figures."""
    if not sources:
        return None
    return sources.pop() if len(sources) == 1 else "mixed"
