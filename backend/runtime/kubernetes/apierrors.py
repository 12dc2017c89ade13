"""API answers to podwarden errors, and which of them are worth another try.

Kept apart from the client (and free of the ``kubernetes`` package) so the policy reads in
one screen and is tested on its own::

    status   class                 retried
    404      KubeNotFound          no (the caller decides what absence means)
    409      KubeConflict          only for updates (a stale resourceVersion); on create it
                                   means AlreadyExists, which ``start`` adopts
    429      KubeTooManyRequests   yes, after max(backoff, Retry-After)
    5xx      KubeServerError       yes
    0        KubernetesError       yes (connection refused or reset, read timeout)
    other    KubernetesError       no (401/403/422: a person must fix something)

Messages quote the API server's own ``Status.message``, truncated, so a request body (which
may hold credentials) never reaches a log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from backend.errors import (
    KubeConflict,
    KubeNotFound,
    KubernetesError,
    KubeServerError,
    KubeTooManyRequests,
)

__all__ = [
    "BACKOFF",
    "MAX_RETRY_AFTER",
    "connection_error",
    "from_status",
    "is_retryable",
    "parse_status",
    "retry_delay",
    "truncate",
]

BACKOFF: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
"""Seconds before each retry; its length is the number of retries (~8 s in all)."""
MAX_RETRY_AFTER = 30.0
"""A Retry-After longer than this is capped: a start must not hang on one hint."""


def truncate(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters with a mark, for logs and messages."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_status(body: bytes | str | None) -> dict[str, Any]:
    """The ``Status`` object of an error answer, or ``{}`` when the body is not one."""
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(headers: Mapping[str, str] | None, status: dict[str, Any]) -> float | None:
    raw = None
    if headers is not None:
        raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw is None:
        raw = (status.get("details") or {}).get("retryAfterSeconds")
    if raw is None:
        return None
    try:
        return max(0.0, min(float(raw), MAX_RETRY_AFTER))
    except (TypeError, ValueError):
        return None


_ADVICE = {
    401: "the credentials of the kubeconfig were refused; log in again or fix the context",
    403: "the account lacks a permission; apply deploy/rbac.yaml in the namespace",
}


def from_status(
    code: int,
    body: bytes | str | None,
    headers: Mapping[str, str] | None,
    action: str,
) -> KubernetesError:
    """The podwarden error for an HTTP error answer to ``action`` ("create deployment/x")."""
    status = parse_status(body)
    reason = str(status.get("reason") or "")
    detail = truncate(str(status.get("message") or reason or f"HTTP {code}"))
    message = f"{action}: {detail}"
    if code in _ADVICE:
        message += f" ({_ADVICE[code]})"
    if code == 404:
        return KubeNotFound(message, code, reason or "NotFound")
    if code == 409:
        return KubeConflict(message, code, reason or "Conflict")
    if code == 429:
        return KubeTooManyRequests(message, _retry_after(headers, status))
    if code >= 500:
        return KubeServerError(message, code, reason or "InternalError")
    return KubernetesError(message, code, reason)


def connection_error(exc: BaseException, host: str, action: str) -> KubernetesError:
    """A failure below HTTP (refused, reset, timed out), as status 0."""
    detail = truncate(f"{type(exc).__name__}: {exc}", 200)
    return KubernetesError(
        f"{action}: cannot reach the Kubernetes API at {host} ({detail})", 0, "ConnectionError"
    )


def is_retryable(error: KubernetesError, *, conflict: bool = False) -> bool:
    """Whether another try may succeed; ``conflict`` allows 409 (updates only)."""
    if isinstance(error, KubeConflict):
        return conflict and error.reason != "AlreadyExists"
    if isinstance(error, (KubeTooManyRequests, KubeServerError)):
        return True
    return error.status_code == 0


def retry_delay(error: KubernetesError, attempt: int, backoff: tuple[float, ...]) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based)."""
    delay = backoff[min(attempt, len(backoff) - 1)] if backoff else 0.0
    if isinstance(error, KubeTooManyRequests) and error.retry_after is not None:
        delay = max(delay, error.retry_after)
    return delay
