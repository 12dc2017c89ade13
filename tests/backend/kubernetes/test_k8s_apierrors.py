"""HTTP statuses to podwarden errors, and the retry policy."""

from __future__ import annotations

import json

from backend.errors import (
    KubeConflict,
    KubeNotFound,
    KubernetesError,
    KubeServerError,
    KubeTooManyRequests,
    RuntimeUnavailable,
)
from backend.runtime.kubernetes.apierrors import (
    MAX_RETRY_AFTER,
    connection_error,
    from_status,
    is_retryable,
    retry_delay,
)


def status(code: int, reason: str, message: str, **details: object) -> bytes:
    body = {"kind": "Status", "code": code, "reason": reason, "message": message}
    if details:
        body["details"] = details
    return json.dumps(body).encode()


def test_status_codes_map_to_classes() -> None:
    cases = [
        (404, KubeNotFound),
        (409, KubeConflict),
        (429, KubeTooManyRequests),
        (500, KubeServerError),
        (503, KubeServerError),
        (403, KubernetesError),
    ]
    for code, cls in cases:
        error = from_status(code, status(code, "R", "m"), {}, "create deployment/x")
        assert type(error) is cls
        assert isinstance(error, RuntimeUnavailable)
        assert error.message.startswith("create deployment/x: m")


def test_forbidden_says_what_to_do() -> None:
    error = from_status(403, status(403, "Forbidden", "no"), {}, "list pods")
    assert "deploy/rbac.yaml" in error.message
    assert not is_retryable(error)


def test_retry_after_from_header_or_details() -> None:
    error = from_status(429, b"", {"Retry-After": "3"}, "x")
    assert isinstance(error, KubeTooManyRequests) and error.retry_after == 3.0
    error = from_status(429, status(429, "TooManyRequests", "m", retryAfterSeconds=2), {}, "x")
    assert isinstance(error, KubeTooManyRequests) and error.retry_after == 2.0
    error = from_status(429, b"", {"Retry-After": "100000"}, "x")
    assert isinstance(error, KubeTooManyRequests) and error.retry_after == MAX_RETRY_AFTER


def test_non_json_body_and_long_messages_are_handled() -> None:
    error = from_status(502, b"<html>bad gateway</html>", None, "get pod/x")
    assert error.message == "get pod/x: HTTP 502"
    error = from_status(500, status(500, "E", "y" * 5000), None, "a")
    assert len(error.message) < 400


def test_what_is_retried() -> None:
    assert is_retryable(KubeServerError("m", 500))
    assert is_retryable(KubeTooManyRequests("m"))
    assert is_retryable(connection_error(ConnectionResetError(), "https://h", "a"))
    assert not is_retryable(KubeNotFound("m", 404))
    assert not is_retryable(KubeConflict("m", 409, "AlreadyExists"))
    assert not is_retryable(KubeConflict("m", 409, "Conflict"))
    assert is_retryable(KubeConflict("m", 409, "Conflict"), conflict=True)
    assert not is_retryable(KubeConflict("m", 409, "AlreadyExists"), conflict=True)
    assert not is_retryable(KubernetesError("m", 422))


def test_delays_follow_the_backoff_tuple_and_retry_after() -> None:
    backoff = (0.1, 0.5, 1.0)
    error = KubeServerError("m", 500)
    assert [retry_delay(error, n, backoff) for n in range(5)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    assert retry_delay(KubeTooManyRequests("m", 4.0), 0, backoff) == 4.0
    assert retry_delay(KubeTooManyRequests("m", 0.0), 1, backoff) == 0.5


def test_connection_error_is_status_zero() -> None:
    error = connection_error(ConnectionRefusedError(111, "refused"), "https://h:6443", "get x")
    assert error.status_code == 0
    assert "cannot reach the Kubernetes API at https://h:6443" in error.message
