"""The one way a workload is stopped: through the runtime, verified, and said in an event.

Ending a session, cleaning up a failed start try, recycling a dead workload, stopping a
workload at recovery and removing an orphan all stop a workload; they all come here, so
a stop that leaves something behind is always reported the same way
(``cleanup_leftover`` with the leftovers), and a verified stop with the kind its caller
names (``cleanup_verified``, ``orphan_removed``, or nothing for a step inside a start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.errors import PodwardenError
from backend.events import EventBus, EventKind
from backend.metrics import PoolMetrics
from backend.models import WorkloadHandle
from backend.runtime.base import Runtime

__all__ = ["StopOutcome", "WorkloadStopper"]


@dataclass(frozen=True)
class StopOutcome:
    """How one stop ended."""

    duration_s: float
    leftovers: list[str] = field(default_factory=list)
    verified_kinds: tuple[str, ...] = ()
    """The kinds of object the runtime confirmed gone (Kubernetes: ``Deployment``...)."""

    @property
    def verified(self) -> bool:
        return not self.leftovers

    def describe(self) -> str:
        """For the session's ``cleanup`` field."""
        if self.verified:
            return f"verified in {self.duration_s:.2f}s"
        return f"leftover after {self.duration_s:.2f}s: {'; '.join(self.leftovers)}"


class WorkloadStopper:
    """Stops workloads for the pool, the launcher, recovery and orphan removal."""

    def __init__(
        self, runtime: Runtime, bus: EventBus, metrics: PoolMetrics, grace: Callable[[], float]
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.metrics = metrics
        self.grace = grace
        """Seconds between SIGTERM (or the delete) and giving up waiting, read per stop."""

    async def stop(
        self,
        handle: WorkloadHandle | None,
        *,
        session_id: str,
        user: str | None,
        why: str,
        verified_kind: EventKind | None,
        started: float | None = None,
        finish: Callable[[StopOutcome], dict[str, Any]] | None = None,
    ) -> StopOutcome:
        """Stop the workload behind ``handle`` (none: nothing to stop) and publish how it
        went. ``started`` (``time.monotonic``) counts earlier steps, such as closing the
        tunnel, into the reported duration. ``finish`` is called with the outcome before
        the event is published, and what it returns is added to the event's data (the
        ended session's document). Never raises a runtime error: a stop that fails is a
        leftover, reported."""
        started = time.monotonic() if started is None else started
        leftovers: list[str] = []
        verified: tuple[str, ...] = ()
        if handle is not None:
            try:
                report = await self.runtime.stop(handle, self.grace())
                leftovers.extend(report.leftovers)
                verified = report.verified_kinds
            except PodwardenError as e:
                leftovers.append(f"stop failed: {e.message}")
            except Exception as e:  # never leave a caller stuck on a runtime bug
                leftovers.append(f"stop failed: {e!r}")
        outcome = StopOutcome(time.monotonic() - started, leftovers, verified)
        extra = finish(outcome) if finish is not None else {}
        if leftovers:
            self.metrics.cleanup_leftovers += 1
            self.bus.publish(
                EventKind.CLEANUP_LEFTOVER,
                f"{session_id}: {why}: cleanup incomplete: {'; '.join(leftovers)}",
                session_id=session_id,
                user=user,
                duration_s=round(outcome.duration_s, 3),
                leftovers=leftovers,
                verified_kinds=list(verified),
                reason=why,
                **extra,
            )
        elif verified_kind is not None:
            what = (
                "orphan {} removed"
                if verified_kind is EventKind.ORPHAN_REMOVED
                else "{} cleanup verified"
            )
            gone = f": {', '.join(verified)} gone" if verified else ""
            self.bus.publish(
                verified_kind,
                f"{what.format(session_id)} in {outcome.duration_s:.2f}s{gone} ({why})",
                session_id=session_id,
                user=user,
                duration_s=round(outcome.duration_s, 3),
                verified_kinds=list(verified),
                reason=why,
                **extra,
            )
        return outcome
