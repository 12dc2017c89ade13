"""The warm-reuse shortcut: ``POST /sessions`` answered without FastAPI's router.

A warm reuse is a dictionary lookup in the pool; FastAPI's per-request machinery
(middleware layers, routing, dependency solving, the content-type check) costs several
times that. ``AcquireShortcut`` answers the ordinary request directly: right token, a
``Content-Length`` under the limit, ``application/json``, and a body the same strict
``AcquireRequest`` model accepts. Anything else goes on to the full app with the body
replayed, so auth errors, validation messages and the 413 come from one place
(``guard``, ``handlers``). Errors raised by the pool itself are rendered here by the same
function the app's handler uses. ``acquire_answer`` is shared with the FastAPI route, so
the two paths cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from backend.api.disconnect import ClientGone, unless_client_leaves
from backend.api.guard import INTERNAL_MESSAGE, send_error
from backend.api.handlers import podwarden_error_response
from backend.api.schemas import AcquireRequest
from backend.errors import PodwardenError
from backend.operations import Operations

__all__ = ["AcquireShortcut", "acquire_answer"]

log = logging.getLogger("podwarden.api")

_JSON = b"application/json"


async def acquire_answer(
    ops: Operations, request: AcquireRequest, receive: Receive
) -> tuple[int, dict[str, Any]]:
    """(status, document) of ``POST /sessions``; raises what the pool raises, and
    ``ClientGone`` when the client leaves while the answer waits."""
    if request.reuse and not request.requires:
        answer = ops.reuse_at_once(request.user, request.template, credentials=request.credentials)
        if answer is not None:
            return answer
    return await unless_client_leaves(
        receive,
        ops.acquire(
            request.user,
            request.template,
            reuse=request.reuse,
            wait=request.wait,
            credentials=request.credentials,
            requires=request.requires,
        ),
    )


def _replay(body: bytes, receive: Receive, pending: Message | None = None) -> Receive:
    """A ``receive`` that hands out the already-read body first, then the rest."""
    first: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if pending is not None:
        first.append(pending)

    async def replayed() -> Message:
        if first:
            return first.pop(0)
        return await receive()

    return replayed


class AcquireShortcut:
    """Answers a well-formed ``POST /sessions``; returns a ``receive`` to fall back with."""

    def __init__(self, ops: Operations, token: str, body_limit: int) -> None:
        self.ops = ops
        self._expected = b"Bearer " + token.encode()
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        authorization = content_type = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        if (
            authorization is None
            or content_type is None
            or length is None
            or not length.isdigit()
            or int(length) > self.body_limit
            or content_type.partition(b";")[0].strip().lower() != _JSON
            or not secrets.compare_digest(authorization, self._expected)
        ):
            return receive
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay(body, receive, message)
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            request = AcquireRequest.model_validate_json(body)
        except ValidationError:
            return _replay(body, receive)  # the app words the error
        try:
            status, document = await acquire_answer(self.ops, request, receive)
        except ClientGone:
            return None  # nobody to answer
        except PodwardenError as e:
            await podwarden_error_response(e, "POST /sessions")(scope, receive, send)
            return None
        except Exception:
            log.exception("unhandled error in POST /sessions")
            await send_error(send, 500, "internal", INTERNAL_MESSAGE)
            return None
        payload = json.dumps(document).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", _JSON),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return None
