"""Counters and a latency histogram of the pool, and their Prometheus text rendering."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["Histogram", "PoolMetrics"]

START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class Histogram:
    """A cumulative histogram in the Prometheus sense (``le`` buckets, sum, count)."""

    buckets: tuple[float, ...] = START_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs, ending with ``+Inf``."""
        result = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            result.append((_fmt(bound), running))
        result.append(("+Inf", self.count))
        return result


def _fmt(value: float) -> str:
    return repr(float(value))


@dataclass
class PoolMetrics:
    """What the pool counts since it started."""

    acquires: dict[str, int] = field(
        default_factory=lambda: {"new": 0, "reused": 0, "refused": 0, "failed": 0}
    )
    """Acquires by outcome: a new session, a reused one, refused (capacity), failed start."""
    start_seconds: Histogram = field(default_factory=Histogram)
    """Seconds from the start of a workload to ready."""
    start_failures: int = 0
    """Starts that ended with the session failed (after all retries)."""
    start_retries: int = 0
    """Start attempts that failed and were retried."""
    evictions: int = 0
    """Sessions evicted to make room (LRU)."""
    refreshes: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    """Refresh probes by outcome."""
    liveness: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    """Liveness checks (between refreshes and before a stale reuse) by outcome."""
    recycles: int = 0
    """Sessions whose dead workload was replaced under the same id."""
    terminations: int = 0
    """Sessions whose cleanup finished."""
    cleanup_leftovers: int = 0
    """Cleanups that ended with something left behind."""
    culled: int = 0
    """Sessions stopped after their idle timeout."""
    aged_out: dict[str, int] = field(default_factory=lambda: {"idle": 0, "grace": 0})
    """Sessions stopped at their maximum age: at an idle moment, or busy after the grace."""
    drained_idle: int = 0
    """Idle sessions stopped by a drain with ``evict_idle``."""
    refused_draining: int = 0
    """New sessions refused because the pool is drained."""
    pins: dict[str, int] = field(default_factory=lambda: {"pinned": 0, "unpinned": 0})
    """Pin and unpin requests that changed a session."""
    standby: dict[str, int] = field(
        default_factory=lambda: {"claimed": 0, "missed": 0, "fallback": 0, "refilled": 0}
    )
    """Standby outcomes: claims, first acquires that found none ready, claims of a dead
    standby that fell back to a cold start, standby workloads started."""
    standby_yielded: int = 0
    """Standby workloads stopped to give their slot to a user's session."""
