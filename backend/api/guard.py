"""One pure-ASGI middleware in front of every route: auth, body size, last-resort errors.

It is a plain ASGI callable rather than Starlette's ``BaseHTTPMiddleware`` because it sits
on the warm-reuse hot path: a header scan and a constant-time compare cost microseconds,
a task-per-request wrapper does not. It does three things:

- **auth**: every path but ``/health`` needs ``Authorization: Bearer <token>``; the check
  uses ``secrets.compare_digest`` so the answer time says nothing about the token, and
  its verdict is left in the scope (``AUTHORIZED``) for ``/health``'s detail;
- **body size**: a declared ``Content-Length`` over the limit is refused with 413 before
  the app reads a byte; a chunked body is counted as it streams and cut off the same way;
- **last resort**: an exception no handler took becomes a 500 JSON error without
  internals (logged here with its traceback), instead of Starlette's re-raise.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "AUTHORIZED",
    "DEFAULT_BODY_LIMIT",
    "INTERNAL_MESSAGE",
    "BodyTooLarge",
    "Guard",
    "error_bytes",
    "send_error",
]

log = logging.getLogger("podwarden.api")

PUBLIC_PATHS = frozenset({"/health"})
AUTHORIZED = "podwarden.authorized"
"""Scope key the guard sets: whether the request carried the right token."""
DEFAULT_BODY_LIMIT = 64 * 1024
INTERNAL_MESSAGE = "internal error; the server log has the details"


class BodyTooLarge(Exception):
    """A streamed request body grew past the limit (turned into a 413 by the app)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


def error_bytes(code: str, message: str, field: str | None = None) -> bytes:
    """The JSON error body every non-2xx answer carries."""
    body: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return json.dumps({"error": body}).encode()


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    body = error_bytes(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Auth, body size limit and a last-resort 500, around the FastAPI app."""

    def __init__(self, app: ASGIApp, token: str, body_limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.app = app
        self._expected = b"Bearer " + token.encode()
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
        authorized = authorization is not None and secrets.compare_digest(
            authorization, self._expected
        )
        scope[AUTHORIZED] = authorized  # public routes answer more to a caller with the token
        if not authorized and scope["path"] not in PUBLIC_PATHS:
            await send_error(
                send,
                401,
                "unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                "(the token is in <state-dir>/token or PODWARDEN_TOKEN)",
                [(b"www-authenticate", b'Bearer realm="podwarden"')],
            )
            return
        if length is not None:
            if not length.isdigit():
                await send_error(send, 400, "bad_request", "Content-Length is not a number")
                return
            if int(length) > self.body_limit:
                await send_error(
                    send,
                    413,
                    "payload_too_large",
                    f"the request body is {int(length)} bytes; at most {self.body_limit}",
                )
                return
        elif scope["method"] in ("POST", "PUT", "PATCH"):
            receive = self._counting(receive)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:
                raise
            await send_error(send, 500, "internal", INTERNAL_MESSAGE)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.body_limit

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted
