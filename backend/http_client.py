"""``HttpClient``: the ``PodwardenClient`` interface over the HTTP API (httpx).

It returns exactly the dicts ``LocalClient`` returns, so the TUI's remote mode and the
tests cannot tell the two apart. One ``httpx.AsyncClient`` keeps connections alive, so a
warm reuse costs one round trip on an open connection. Failures come back as the
``backend.errors`` classes the server raised (read from the JSON error's ``code``); a
backend that cannot be reached, or that stops answering, raises ``BackendUnreachable``.

``events()`` reads ``GET /events`` (server-sent events). It ends quietly when the client is
closed; when the server ends the stream or the connection breaks it raises
``BackendUnreachable``, so a caller can show the link as down and call ``events()`` again.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from backend.errors import (
    BackendUnreachable,
    CapacityError,
    Draining,
    InvalidRequest,
    PinLimit,
    PodwardenError,
    QuotaExceeded,
    RuntimeUnavailable,
    SessionEnded,
    SessionNotFound,
    StartError,
    StoreError,
    Unauthorized,
    UnknownTemplate,
)

__all__ = ["HttpClient", "error_from_response"]

_CLASSES: dict[str, type[PodwardenError]] = {
    "invalid_request": InvalidRequest,
    "invalid_json": InvalidRequest,
    "payload_too_large": InvalidRequest,
    "unknown_template": UnknownTemplate,
    "not_found": SessionNotFound,
    "capacity": CapacityError,
    "draining": Draining,
    "session_ended": SessionEnded,
    "pin_limit": PinLimit,
    "quota": QuotaExceeded,
    "start_failed": StartError,
    "runtime_unavailable": RuntimeUnavailable,
    "store": StoreError,
    "unauthorized": Unauthorized,
}


def _rebuild(cls: type[PodwardenError], message: str, **attrs: Any) -> PodwardenError:
    """An instance of ``cls`` carrying the server's message verbatim (the classes'
    constructors compose messages; the server already did)."""
    error = cls.__new__(cls)
    PodwardenError.__init__(error, message)
    for name, value in attrs.items():
        setattr(error, name, value)
    return error


def error_from_response(response: httpx.Response) -> PodwardenError:
    """The ``PodwardenError`` an error response stands for."""
    status = response.status_code
    try:
        body = response.json()["error"]
        code = str(body["code"])
        message = str(body["message"])
        field = body.get("field")
    except (ValueError, KeyError, TypeError):
        error = PodwardenError(f"HTTP {status} from the backend: {response.text[:200]}")
        error.status = status
        return error
    cls = _CLASSES.get(code, PodwardenError)
    attrs: dict[str, Any] = {"status": status, "code": code}
    if issubclass(cls, InvalidRequest):
        field = str(field or "body")
        attrs.update(field=field, problem=message.removeprefix(f"{field}: "))
        if cls is UnknownTemplate:
            attrs["name"] = None
    elif cls is SessionNotFound:
        found = re.search(r"no session with id '(.*)'$", message)
        attrs["session_id"] = found.group(1) if found else ""
    elif issubclass(cls, CapacityError):
        attrs["retry_after"] = _retry_after(response.headers.get("retry-after"))
    elif cls is StartError:
        attrs.update(reason=message, exit_code=None, log_tail=[], retryable=True)
    return _rebuild(cls, message, **attrs)


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else 5.0
    except ValueError:
        return 5.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 5.0


class HttpClient:
    """A ``PodwardenClient`` for a backend at ``base_url`` (``http://127.0.0.1:5010``)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        acquire_timeout: float | None = 900.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._acquire_timeout = acquire_timeout
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            transport=transport,
        )
        self._streams: set[httpx.Response] = set()
        self._closed = False

    @property
    def address(self) -> str:
        return self._base_url

    @property
    def api_address(self) -> str | None:
        return urlsplit(self._base_url).netloc or None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, json=json_body, params=params, timeout=timeout
            )
        except httpx.TimeoutException as e:
            raise BackendUnreachable(
                f"podwarden at {self._base_url} did not answer {method} {path} in time"
            ) from e
        except httpx.TransportError as e:
            raise BackendUnreachable(
                f"cannot reach podwarden at {self._base_url}: {type(e).__name__}: {e}"
            ) from e
        if response.status_code >= 400:
            raise error_from_response(response)
        return response.json()

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/health")

    async def list_sessions(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/sessions")

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/sessions/{_segment(session_id)}")

    async def acquire(
        self,
        user: str,
        template: str | None = None,
        *,
        reuse: bool = True,
        wait: bool = True,
        credentials: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"user": user, "reuse": reuse, "wait": wait}
        if template is not None:
            body["template"] = template
        if credentials:
            body["credentials"] = credentials
        timeout = self._acquire_timeout if wait else httpx.USE_CLIENT_DEFAULT
        return await self._request("POST", "/sessions", json_body=body, timeout=timeout)

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        return await self._request("DELETE", f"/sessions/{_segment(session_id)}")

    async def pin(self, session_id: str) -> dict[str, Any]:
        return await self._request("POST", f"/sessions/{_segment(session_id)}/pin")

    async def unpin(self, session_id: str) -> dict[str, Any]:
        return await self._request("POST", f"/sessions/{_segment(session_id)}/unpin")

    async def drain(self, evict_idle: bool = False) -> dict[str, Any]:
        return await self._request("POST", "/pool/drain", json_body={"evict_idle": evict_idle})

    async def undrain(self) -> dict[str, Any]:
        return await self._request("POST", "/pool/undrain")

    async def delete_user_sessions(self, user: str) -> dict[str, Any]:
        return await self._request("DELETE", "/sessions", params={"user": user})

    async def remove_orphan(self, session_id: str) -> None:
        """``DELETE /orphans/{id}``: answers 202 once the removal has begun."""
        await self._request("DELETE", f"/orphans/{_segment(session_id)}")

    async def templates(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/templates")

    async def logs(self, session_id: str, limit: int = 200) -> list[str]:
        data = await self._request(
            "GET", f"/sessions/{_segment(session_id)}/logs", params={"limit": limit}
        )
        return list(data["lines"])

    async def recent_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return await self._request("GET", "/events/recent", params={"limit": limit})

    async def metrics(self) -> str:
        """The Prometheus text of ``GET /metrics``."""
        try:
            response = await self._http.get("/metrics")
        except httpx.TransportError as e:
            raise BackendUnreachable(f"cannot reach podwarden at {self._base_url}: {e}") from e
        if response.status_code >= 400:
            raise error_from_response(response)
        return response.text

    async def events(self, after: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every event from now on (log lines included) until ``close()``; with
        ``after`` (an event id), first those the server still buffers since that one."""
        timeout = httpx.Timeout(10.0, read=60.0)  # heartbeats arrive every 15 s
        headers = {"Last-Event-ID": after} if after else None
        try:
            async with self._http.stream(
                "GET", "/events", timeout=timeout, headers=headers
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(response)
                self._streams.add(response)
                try:
                    async for event in _parse_sse(response):
                        yield event
                finally:
                    self._streams.discard(response)
        except (httpx.TransportError, httpx.StreamClosed) as e:
            if self._closed:
                return
            raise BackendUnreachable(f"event stream from {self._base_url} broke: {e}") from e
        if not self._closed:
            raise BackendUnreachable(f"podwarden at {self._base_url} ended the event stream")

    async def close(self) -> None:
        self._closed = True
        for response in list(self._streams):
            await response.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _segment(value: str) -> str:
    """``value`` as one URL path segment (a ``/`` in an id must not change the route)."""
    return quote(value, safe="")


async def _parse_sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Bus events from an SSE body: ``data:`` blocks of unnamed events only."""
    name = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data and not name:
                yield json.loads("\n".join(data))
            name, data = "", []
        elif line.startswith(":"):
            continue
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
