"""Sessions, their states and their ids.

A session's state only changes through ``Session.transition``, which refuses the changes
the state machine does not allow::

    starting -> ready <-> refreshing
    ready | refreshing -> unreachable -> ready   (its target lost, and back)
    unreachable -> starting                      (failover: a new workload elsewhere)
    ready | refreshing -> starting               (recycle: a fresh workload, same id)
    starting | ready | refreshing -> terminating -> terminated
    starting | ready | refreshing -> failed -> terminating

so a dead or half-started session can never be reported ``ready`` by accident.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from backend.errors import InvalidRequest, InvalidTransition

__all__ = [
    "MAX_USER_LENGTH",
    "STANDBY_USER",
    "Session",
    "SessionState",
    "TunnelInfo",
    "WorkloadHandle",
    "WorkloadUsage",
    "make_session_id",
    "user_slug",
    "validate_user",
]

MAX_USER_LENGTH = 128
"""Longest user name accepted; longer names are refused, not truncated."""

STANDBY_USER = ""
"""The user of an unclaimed standby session: no real user can have it (an empty name is
refused), so a standby never answers anybody's reuse and is never counted as a user's."""


class SessionState(str, Enum):
    """Where a session is in its life."""

    STARTING = "starting"
    READY = "ready"
    REFRESHING = "refreshing"
    UNREACHABLE = "unreachable"
    """Its target is lost: not ready, not handed out; back to ready when the target
    returns, or started afresh elsewhere by a reuse (failover)."""
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"

    @property
    def is_live(self) -> bool:
        """True while the session holds (or is about to hold) a workload and capacity."""
        return self in _LIVE


_LIVE = frozenset(
    {
        SessionState.STARTING,
        SessionState.READY,
        SessionState.REFRESHING,
        SessionState.UNREACHABLE,
    }
)

_ALLOWED: dict[SessionState, frozenset[SessionState]] = {
    SessionState.STARTING: frozenset(
        {SessionState.READY, SessionState.FAILED, SessionState.TERMINATING}
    ),
    SessionState.READY: frozenset(
        {
            SessionState.REFRESHING,
            SessionState.STARTING,
            SessionState.TERMINATING,
            SessionState.FAILED,
            SessionState.UNREACHABLE,
        }
    ),
    SessionState.REFRESHING: frozenset(
        {
            SessionState.READY,
            SessionState.STARTING,
            SessionState.TERMINATING,
            SessionState.FAILED,
            SessionState.UNREACHABLE,
        }
    ),
    SessionState.UNREACHABLE: frozenset(
        {
            SessionState.READY,
            SessionState.STARTING,
            SessionState.TERMINATING,
            SessionState.FAILED,
        }
    ),
    SessionState.FAILED: frozenset({SessionState.TERMINATING, SessionState.TERMINATED}),
    SessionState.TERMINATING: frozenset({SessionState.TERMINATED, SessionState.FAILED}),
    SessionState.TERMINATED: frozenset(),
}


@dataclass(frozen=True)
class WorkloadHandle:
    """What a runtime needs to find a workload again, also after a restart.

    ``ref`` is the pid (local) or the Deployment name (Kubernetes); ``host``/``port`` is
    where the workload itself listens, the target of the session's tunnel; ``extra``
    holds runtime-specific strings (process group, working directory, namespace, pod).
    """

    runtime: str
    ref: str
    host: str
    port: int
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "ref": self.ref,
            "host": self.host,
            "port": self.port,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkloadHandle:
        return cls(
            runtime=str(data["runtime"]),
            ref=str(data["ref"]),
            host=str(data["host"]),
            port=int(data["port"]),
            extra={str(k): str(v) for k, v in dict(data.get("extra") or {}).items()},
        )


@dataclass(frozen=True)
class TunnelInfo:
    """A session's local endpoint: ``host:port`` relays to ``target_host:target_port``."""

    host: str
    port: int
    target_host: str
    target_port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "target_host": self.target_host,
            "target_port": self.target_port,
        }


@dataclass(frozen=True)
class WorkloadUsage:
    """One session's CPU and memory at the last sample, and where the figures come from.

    ``measured``: what the workload uses now (the local process group, or
    ``metrics.k8s.io``); ``requested``: what its pod asks the cluster for (Kubernetes
    without a metrics API), which says nothing about what it really uses.
    """

    cpu_percent: float | None
    """Percent of one core (100: one core busy; above 100 on several cores); None unknown."""
    memory_bytes: int | None
    """Resident memory (RSS summed over its processes) or the memory request; None unknown."""
    source: str
    """``measured`` or ``requested``."""


@dataclass(eq=False)
class Session:
    """One persistent workload for one user and template."""

    session_id: str
    user: str
    template: str
    state: SessionState = SessionState.STARTING
    created_at: float = field(default_factory=time.time)
    last_used_at: float = field(default_factory=time.time)
    use_count: int = 1
    tunnel: TunnelInfo | None = None
    handle: WorkloadHandle | None = None
    last_error: str | None = None
    phase: str = "queued"
    """What a starting session is doing now (for people: "launching", "login", ...)."""
    ready_at: float | None = None
    refresh_failures: int = 0
    cleanup: str | None = None
    """After termination: how the cleanup ended ("verified in 0.4s", "leftover: ...")."""
    listening: Callable[[], bool] | None = field(default=None, repr=False)
    """Asks the session's tunnel whether it accepts connections now (set by the pool)."""
    last_active_at: float = 0.0
    """When its tunnel last carried traffic or held a connection (sampled; 0: never)."""
    pinned: bool = False
    """Safe from LRU eviction, idle culling and the maximum age."""
    standby: bool = False
    """A warm workload no user has claimed yet."""
    idle_timeout: float | None = None
    """The idle timeout that applies to it (its template's or the pool's); None: none."""
    max_age: float | None = None
    """The maximum age that applies to it; None: none."""
    usage: WorkloadUsage | None = None
    """CPU and memory at the last resource sample (``backend.resources``); None: unknown."""
    starting_since: float | None = None
    """When its current start began (a recycle, a replacement pod, a failover); None:
    its first start, which began at ``created_at``."""
    recycles: int = 0
    """Workloads replaced under this id since podwarden started (dead ones recycled)."""
    last_refresh_at: float | None = None
    """When a background refresh last found it well; None: not since podwarden started."""

    @property
    def idle_since(self) -> float:
        """Since when it has been idle: its last acquire or its last tunnel activity."""
        return max(self.last_used_at, self.last_active_at)

    def cull_at(self) -> float | None:
        """When idle culling or the maximum age would stop it at the earliest, if idle
        from now on; None when neither applies (pinned, ended, no policy)."""
        if self.pinned or not self.state.is_live:
            return None
        times = []
        if self.idle_timeout is not None and not self.standby:
            times.append(self.idle_since + self.idle_timeout)
        if self.max_age is not None:
            times.append(self.created_at + self.max_age)
        return min(times) if times else None

    def transition(self, new: SessionState) -> None:
        """Move to ``new`` or raise ``InvalidTransition``."""
        if new is self.state:
            return
        if new not in _ALLOWED[self.state]:
            raise InvalidTransition(
                f"session {self.session_id}: {self.state.value} -> {new.value} is not allowed"
            )
        self.state = new

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """The JSON shape of a session in the HTTP API and the TUI."""
        now = time.time() if now is None else now
        return {
            "session_id": self.session_id,
            "user": self.user,
            "template": self.template,
            "state": self.state.value,
            "phase": self.phase,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "ready_at": self.ready_at,
            "age_s": round(max(0.0, now - self.created_at), 3),
            "idle_s": round(max(0.0, now - self.idle_since), 3),
            "use_count": self.use_count,
            "tunnel": self._tunnel_dict(),
            "runtime_ref": self.handle.ref if self.handle else None,
            "runtime": self.handle.runtime if self.handle else None,
            "last_error": self.last_error,
            "cleanup": self.cleanup,
            "last_active_at": self.last_active_at or None,
            "pinned": self.pinned,
            "standby": self.standby,
            "cull_at": self.cull_at(),
            "pod": self.pod,
            "target": self.target,
            "starting_since": self.starting_since or self.created_at,
            "recycles": self.recycles,
            "last_refresh_at": self.last_refresh_at,
            **self._usage_dict(),
        }

    def _usage_dict(self) -> dict[str, Any]:
        usage = self.usage if self.state.is_live else None
        if usage is None:
            return {"cpu_percent": None, "memory_bytes": None, "resources_source": None}
        return {
            "cpu_percent": usage.cpu_percent,
            "memory_bytes": usage.memory_bytes,
            "resources_source": usage.source,
        }

    @property
    def target(self) -> str | None:
        """The target its workload runs on (``runtime.kind = "multi"``), else None."""
        return self.handle.extra.get("target") if self.handle is not None else None

    @property
    def pod(self) -> str | None:
        """The Kubernetes pod its tunnel reaches now (None on other runtimes)."""
        if self.handle is None or self.handle.runtime != "kubernetes":
            return None
        return self.handle.extra.get("pod") or None

    def _tunnel_dict(self) -> dict[str, Any] | None:
        if self.tunnel is None:
            return None
        data = self.tunnel.to_dict()
        if self.listening is not None:
            data["listening"] = bool(self.listening())
        return data


_BAD_USER_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BIDI_CHARS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def validate_user(user: object) -> str:
    """Return ``user`` if it may own sessions, else raise ``InvalidRequest``.

    Any printable text up to ``MAX_USER_LENGTH`` characters is a valid user name; control
    characters (newlines included) are refused because they would corrupt logs and screens,
    bidirectional overrides because they make a name read as another, and a leading ``-``
    because a name that reaches a command line must never read as an option.
    """
    if not isinstance(user, str):
        raise InvalidRequest("user", "must be a string")
    if not user.strip():
        raise InvalidRequest("user", "must not be empty")
    if user != user.strip():
        raise InvalidRequest("user", "must not start or end with whitespace")
    if len(user) > MAX_USER_LENGTH:
        raise InvalidRequest("user", f"is {len(user)} characters long; at most {MAX_USER_LENGTH}")
    if _BAD_USER_CHARS.search(user):
        raise InvalidRequest("user", "must not contain control characters such as newlines")
    if _BIDI_CHARS.search(user):
        raise InvalidRequest("user", "must not contain bidirectional control characters")
    if user.startswith("-"):
        raise InvalidRequest("user", "must not start with '-'")
    return user


_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")


def _label_part(text: str, limit: int) -> str:
    """Lowercase, DNS-1123-safe form of ``text``; a hash suffix where it had to change."""
    cleaned = _LABEL_CHARS.sub("-", text.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if cleaned == text and len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]
    head = cleaned[: max(0, limit - 7)].strip("-")
    return f"{head}-{digest}" if head else f"u{digest}"


def user_slug(user: str) -> str:
    """The DNS-1123-safe form of ``user`` used in session ids (the ``{user_slug}``
    placeholder): lowercase letters, digits and ``-``, with a hash where it had to change."""
    return _label_part(user, 30)


def make_session_id(user: str, template: str, suffix: str | None = None) -> str:
    """``{user}-{template}-{8 hex}`` as a DNS-1123 label of at most 63 characters.

    A user or template name that needs changing to fit (upper case, spaces, ``/``,
    non-ASCII, too long) gets a short hash of the original, so two users never share an
    id prefix by accident; the 8 random hex digits keep ids unique per session.
    """
    suffix = suffix or secrets.token_hex(4)
    user_part = user_slug(user)
    template_part = _label_part(template, 20)
    session_id = f"{user_part}-{template_part}-{suffix}"
    return session_id[:63].strip("-")
