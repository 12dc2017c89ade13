"""The targets of a multi-target pool: one record per target, and handle tags.

A ``Target`` is everything ``MultiRuntime`` keeps about one place sessions run: its child
runtime, its capacity, weight and labels, the sessions placed there, and how it answers its
heartbeats. ``tag``/``untag`` put the target (and session) into a child's handle and take
them out again, so any later call can be routed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from backend.models import WorkloadHandle
from backend.placement import TargetView
from backend.runtime.base import Runtime

__all__ = ["SESSION_KEY", "TARGET_KEY", "Target", "TargetState", "tag", "untag"]

TARGET_KEY = "target"
SESSION_KEY = "target_session"


class TargetState(str, Enum):
    """How a target answers its heartbeats."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    """Slow (over ``degraded_latency``) or its last heartbeat failed."""
    LOST = "lost"
    """No successful heartbeat for ``target_lost_after``: takes no new sessions."""


@dataclass
class Target:
    """One target: its child runtime, what runs there, and how it answers."""

    name: str
    runtime: Runtime
    capacity: int
    weight: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)
    workdir_root: Path | None = None
    """Local targets: where session working directories go (each target its own)."""
    sessions: dict[str, str] = field(default_factory=dict)
    """Session id -> user of every workload placed here (starting ones too)."""
    state: TargetState = TargetState.HEALTHY
    latency_s: float | None = None
    last_contact: float | None = None
    """Wall-clock time of the last successful heartbeat."""
    last_error: str = ""
    failing_since: float | None = None
    """Wall-clock time of the first failed heartbeat since the last good one."""
    heartbeats: int = 0
    heartbeat_failures: int = 0

    def view(self) -> TargetView:
        users: dict[str, int] = {}
        for user in self.sessions.values():
            if user:
                users[user] = users.get(user, 0) + 1
        return TargetView(
            self.name,
            self.capacity,
            self.weight,
            len(self.sessions),
            self.labels,
            users,
            self.state is not TargetState.LOST,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runtime": self.runtime.describe(),
            "state": self.state.value,
            "active_sessions": len(self.sessions),
            "max_sessions": self.capacity,
            "weight": self.weight,
            "labels": dict(self.labels),
            "latency_ms": None if self.latency_s is None else round(self.latency_s * 1000, 3),
            "last_contact": self.last_contact,
            "last_error": self.last_error,
            "heartbeats": self.heartbeats,
            "heartbeat_failures": self.heartbeat_failures,
        }


def tag(handle: WorkloadHandle, target: str, session_id: str) -> WorkloadHandle:
    """The child's handle with the target (and session) it belongs to."""
    extra = dict(handle.extra)
    extra[TARGET_KEY] = target
    extra[SESSION_KEY] = session_id
    return dataclasses.replace(handle, extra=extra)


def untag(handle: WorkloadHandle) -> WorkloadHandle:
    """The handle as the child made it."""
    if TARGET_KEY not in handle.extra and SESSION_KEY not in handle.extra:
        return handle
    extra = {k: v for k, v in handle.extra.items() if k not in (TARGET_KEY, SESSION_KEY)}
    return dataclasses.replace(handle, extra=extra)
