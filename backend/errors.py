"""The one exception hierarchy of podwarden.

Every error a caller can act on is a ``PodwardenError``; its ``message`` says what went
wrong and, where there is one, what to do about it. The HTTP API maps each class to a
status code through ``status`` and ``code``::

    PodwardenError                    500 internal
    ├── ConfigError                   (exit code 2 on the command line)
    ├── InvalidRequest                422 invalid_request   (names the field)
    │   └── UnknownTemplate           422 unknown_template
    ├── SessionNotFound               404 not_found
    ├── SessionEnded                  409 session_ended     (it exists, but has ended)
    ├── PinLimit                      409 pin_limit         (``max_pinned`` reached)
    ├── CapacityError                 503 capacity          (carries retry_after)
    │   ├── QuotaExceeded             429 quota             (the user's own limit)
    │   ├── Draining                  503 draining          (the pool admits no new ones)
    │   └── NoTarget                  503 no_target         (every target is lost)
    ├── StartError                    502 start_failed      (reason, exit code, log tail)
    ├── RuntimeUnavailable            503 runtime_unavailable
    │   └── KubernetesError           (status from the API server)
    │       ├── KubeNotFound          404 from the cluster
    │       ├── KubeConflict          409 from the cluster
    │       ├── KubeTooManyRequests   429 from the cluster (carries retry_after)
    │       └── KubeServerError       5xx from the cluster
    ├── StoreError                    500 store
    ├── BackendUnreachable            (client side: the backend does not answer)
    ├── Unauthorized                  401 unauthorized
    └── InvalidTransition             500 internal   (a bug: a forbidden state change)
"""

from __future__ import annotations

__all__ = [
    "BackendUnreachable",
    "CapacityError",
    "ConfigError",
    "InvalidRequest",
    "InvalidTransition",
    "KubeConflict",
    "KubeNotFound",
    "KubeServerError",
    "KubeTooManyRequests",
    "KubernetesError",
    "PodwardenError",
    "QuotaExceeded",
    "Draining",
    "NoTarget",
    "PinLimit",
    "RuntimeUnavailable",
    "SessionEnded",
    "SessionNotFound",
    "StartError",
    "StoreError",
    "Unauthorized",
    "UnknownTemplate",
]


class PodwardenError(Exception):
    """Base of every error podwarden raises on purpose."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        """The JSON error body of the HTTP API: ``{"code": ..., "message": ...}``."""
        return {"code": self.code, "message": self.message}


class ConfigError(PodwardenError):
    """A configuration value is missing, of the wrong type or out of range."""

    code = "config"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


class InvalidRequest(PodwardenError):
    """A request names a field whose value cannot be used."""

    status = 422
    code = "invalid_request"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "field": self.field}


class UnknownTemplate(InvalidRequest):
    """The template named in a request is not configured."""

    code = "unknown_template"

    def __init__(self, name: str, known: list[str]) -> None:
        known_text = ", ".join(sorted(known)) or "none"
        super().__init__("template", f"unknown template {name!r} (known: {known_text})")
        self.name = name


class SessionNotFound(PodwardenError):
    """No session has this id (it may have been evicted or deleted)."""

    status = 404
    code = "not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session with id {session_id!r}")
        self.session_id = session_id


class SessionEnded(PodwardenError):
    """The session exists but has ended (terminating, terminated or failed)."""

    status = 409
    code = "session_ended"


class PinLimit(PodwardenError):
    """As many sessions as ``max_pinned`` allows are pinned already."""

    status = 409
    code = "pin_limit"


class CapacityError(PodwardenError):
    """The pool is full and nothing may be evicted within the wait allowed."""

    status = 503
    code = "capacity"

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(CapacityError):
    """The user already holds ``max_sessions_per_user`` sessions: refused at once, never
    queued, and never made room for by evicting the user's own sessions."""

    status = 429
    code = "quota"


class Draining(CapacityError):
    """The pool is drained: it admits no new session (reuse still works)."""

    code = "draining"


class NoTarget(CapacityError):
    """Every target of a multi-target pool is lost: nothing can start or be reached now."""

    code = "no_target"


class StartError(PodwardenError):
    """A workload did not become ready: the reason says why, for a person to act on."""

    status = 502
    code = "start_failed"

    def __init__(
        self,
        reason: str,
        *,
        exit_code: int | None = None,
        log_tail: list[str] | None = None,
        retryable: bool = True,
    ) -> None:
        text = reason
        if exit_code is not None:
            text += f" (exit code {exit_code})"
        if log_tail:
            text += "; last log lines: " + " | ".join(log_tail[-5:])
        super().__init__(text)
        self.reason = reason
        self.exit_code = exit_code
        self.log_tail = list(log_tail or [])
        self.retryable = retryable


class RuntimeUnavailable(PodwardenError):
    """The runtime (the local machine or the cluster) cannot be reached or used now."""

    status = 503
    code = "runtime_unavailable"


class KubernetesError(RuntimeUnavailable):
    """The Kubernetes API answered with an error status."""

    def __init__(self, message: str, status_code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason


class KubeNotFound(KubernetesError):
    """The object does not exist in the cluster (HTTP 404)."""


class KubeConflict(KubernetesError):
    """The object exists already or changed meanwhile (HTTP 409)."""


class KubeTooManyRequests(KubernetesError):
    """The API server asks to slow down (HTTP 429); ``retry_after`` is its hint."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, 429, "TooManyRequests")
        self.retry_after = retry_after


class KubeServerError(KubernetesError):
    """The API server failed (HTTP 5xx); worth retrying."""


class StoreError(PodwardenError):
    """The state store (SQLite) cannot be opened or written."""

    code = "store"


class InvalidTransition(PodwardenError):
    """A session or pool state change that the state machine forbids: a bug."""


class BackendUnreachable(PodwardenError):
    """A client cannot reach the backend (connection refused, reset or timed out)."""

    status = 503
    code = "unreachable"


class Unauthorized(PodwardenError):
    """The request lacks a valid bearer token."""

    status = 401
    code = "unauthorized"
