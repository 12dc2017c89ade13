"""The health snapshot behind ``GET /health`` and the TUI's header."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DETAIL_FIELDS", "HealthSnapshot", "public_health"]

DETAIL_FIELDS = ("orphans", "ghosts")
"""Fields that name sessions (and so users): only for callers holding the token."""


@dataclass(frozen=True)
class HealthSnapshot:
    """The pool's state at one moment, as operators and load balancers read it.

    The first five fields are the field report's contract; the rest explain them.
    """

    status: str
    """``healthy`` when the runtime and the store work and the background tasks run;
    ``degraded`` otherwise (``degraded_reasons`` says why); ``draining`` when drained and
    not degraded. A full pool is healthy."""
    active_sessions: int
    """Sessions that hold capacity now: starting, ready or refreshing."""
    max_sessions: int
    """The pool's capacity (``pool.max_sessions``)."""
    session_capacity: str
    """``"active_sessions/max_sessions"``, e.g. ``"2/10"``."""
    persistent_sessions: int
    """Sessions kept warm for reuse now: ready or refreshing (starting ones not yet)."""
    starting_sessions: int = 0
    """Sessions whose workload is starting (or being recycled)."""
    failed_sessions: int = 0
    """Sessions that failed and are kept for people to read why (hold no capacity)."""
    queued_acquires: int = 0
    """Acquires waiting for room in the pool."""
    users: int = 0
    """Distinct users holding at least one active session."""
    max_sessions_per_user: int | None = None
    """The per-user limit (``pool.max_sessions_per_user``); None: only the pool's capacity."""
    runtime: str = ""
    """Which runtime runs the workloads (``local``, ``kubernetes ctx/ns``)."""
    runtime_ok: bool = True
    """Whether the runtime answered its last check."""
    runtime_workloads: int | None = None
    """Workloads the runtime itself sees; differs from ``active_sessions`` on drift."""
    orphans: list[str] = field(default_factory=list)
    """Workloads in the runtime that the pool does not know (drift)."""
    ghosts: list[str] = field(default_factory=list)
    """Sessions the pool believes live whose workload the runtime lacks (drift)."""
    store_ok: bool = True
    """Whether the last write to the state store succeeded."""
    degraded_reasons: list[str] = field(default_factory=list)
    """One line per reason the status is ``degraded``."""
    uptime_s: float = 0.0
    """Seconds since the backend started."""
    refresh_interval_s: float = 0.0
    """Seconds between background refreshes."""
    last_refresh_at: float | None = None
    """Unix time the refresher last finished a round, or None before the first."""
    draining: bool = False
    """Whether the pool is drained (admits no new sessions; reuse still served)."""
    draining_since: float | None = None
    """Unix time the drain began."""
    standby: int = 0
    """Standby sessions (warm, unclaimed; starting or ready); they count in
    ``active_sessions``."""
    pinned_sessions: int = 0
    """Live sessions that are pinned."""
    next_eviction: str | None = None
    """The session a new one would evict if the pool were full now (a standby first, else
    the least recently used evictable one under ``evict-lru``); None: none would be."""
    resources: dict[str, Any] | None = None
    """The host's (local) or the cluster's (Kubernetes) CPU and memory against what is used
    or requested, and the live sessions' sum, at the last resource sample
    (``backend.resources``); None before it, or when the runtime cannot tell."""
    targets: list[dict[str, Any]] = field(default_factory=list)
    """With ``runtime.kind = "multi"``: each target's name, state (``healthy``,
    ``degraded``, ``lost``), sessions, capacity, latency and last contact."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["orphan_count"] = len(self.orphans)
        data["ghost_count"] = len(self.ghosts)
        return data


def public_health(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` without the fields that name sessions or users (``/health`` without
    the token): counts and status only."""
    return {k: v for k, v in document.items() if k not in DETAIL_FIELDS}
