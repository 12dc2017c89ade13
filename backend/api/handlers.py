"""Exception handlers: every failure leaves the API as ``{"error": {"code", "message"}}``.

``PodwardenError`` subclasses carry their own status and code (``backend.errors``);
FastAPI's validation errors become 422 naming the field (400 for a body that is not JSON
at all); Starlette's own 404/405 get the same shape. Messages never echo the rejected
value: it may be a credential.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from backend.api.guard import BodyTooLarge, error_bytes
from backend.errors import CapacityError, PodwardenError

__all__ = [
    "error_response",
    "install_handlers",
    "podwarden_error_response",
    "validation_message",
]

log = logging.getLogger("podwarden.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_bytes(code, message, field),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "credentials", "X")`` -> ``credentials.X``; the source alone -> ``body``."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    parts = [p for p in parts if p != "[key]"]
    return ".".join(parts) or "body"


def validation_message(error: dict[str, Any]) -> tuple[str, str]:
    """(field, message) for one pydantic error, in words a client author can act on."""
    loc: tuple[Any, ...] = tuple(error.get("loc") or ())
    kind = error.get("type", "")
    field = _field_of(loc)
    if kind == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "malformed")
        where = f" at position {loc[1]}" if len(loc) > 1 else ""
        return "body", f"body: not valid JSON ({detail}{where})"
    if field == "body":
        if kind == "missing":
            return field, "body: a JSON object is required"
        if isinstance(error.get("input"), (bytes, bytearray)):
            return field, "body: must be a JSON object sent with Content-Type: application/json"
        return field, "body: must be a JSON object"
    if kind == "missing":
        return field, f"{field}: is required"
    if kind == "extra_forbidden":
        return field, f"{field}: unknown field"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "[key]":
        return field, f"{field}: is not a valid environment variable name"
    if kind == "string_pattern_mismatch" and field.startswith("credentials."):
        return field, f"{field}: must not contain NUL characters"
    if kind == "string_pattern_mismatch" and field == "user":
        return field, "user: must be printable text with at least one non-space character"
    return field, f"{field}: {error.get('msg', 'is invalid')}"


def podwarden_error_response(exc: PodwardenError, where: str) -> Response:
    """The response for an error the backend raised on purpose (its status and code)."""
    headers = None
    if isinstance(exc, CapacityError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if exc.status >= 500 and exc.code == "internal":
        # A bug (e.g. InvalidTransition): the message is for the log, not the client.
        log.error("internal error in %s: %s", where, exc)
        return error_response(500, "internal", "internal error; the server log has the details")
    body = exc.to_dict()
    field = body.get("field")
    return error_response(
        exc.status,
        str(body["code"]),
        str(body["message"]),
        str(field) if field is not None else None,
        headers,
    )


async def _podwarden_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PodwardenError)
    return podwarden_error_response(exc, f"{request.method} {request.url.path}")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if not errors:
        return error_response(422, "invalid_request", "the request is invalid")
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        field, message = validation_message(first)
        return error_response(400, "invalid_json", message, field)
    messages = [validation_message(e) for e in errors]
    field = messages[0][0]
    text = "; ".join(m for _, m in messages[:5])
    if len(messages) > 5:
        text += f"; and {len(messages) - 5} more"
    return error_response(422, "invalid_request", text, field)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-read errors in a 400
        return error_response(413, "payload_too_large", str(exc.__cause__))
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error")
    if status == 404:
        message = f"no route {request.url.path!r}; see /openapi.json"
    elif status == 405:
        allowed = _allowed_methods(request)
        message = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        return error_response(status, code, message, headers={"Allow": ", ".join(allowed)})
    else:
        message = str(exc.detail)
    return error_response(status, code, message, headers=dict(exc.headers or {}))


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path (Starlette's 405 names only the
    first route that matched the path, but ``/sessions`` has a GET and a POST route)."""
    methods: set[str] = set()
    path = request.url.path
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _body_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLarge)
    return error_response(413, "payload_too_large", str(exc))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PodwardenError, _podwarden_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BodyTooLarge, _body_too_large)
