"""The routes of the HTTP API, bound to one ``Backend``.

Handlers close over the backend instead of looking it up per request, and answer with a
plain ``Response`` of ``json.dumps`` output: the response models in ``schemas`` describe
the shapes in ``/openapi.json`` but are not run over each answer, which keeps a warm reuse
to a dictionary lookup plus serialisation (see ``tests/bench/bench_api.py``).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from starlette.responses import Response

from backend.api.disconnect import ClientGone
from backend.api.exposure import health_answer
from backend.api.fastpath import acquire_answer
from backend.api.prometheus import CONTENT_TYPE, metrics_registry, render_metrics
from backend.api.schemas import (
    USER_PATTERN,
    AcquireOut,
    AcquireRequest,
    BulkDeleteOut,
    DrainOut,
    DrainRequest,
    ErrorOut,
    EventOut,
    HealthOut,
    LogsOut,
    OrphanOut,
    SessionOut,
    TemplateOut,
)
from backend.api.sse import SseHub, parse_event_id
from backend.errors import InvalidRequest
from backend.events import EventKind
from backend.models import MAX_USER_LENGTH
from backend.operations import Operations

__all__ = ["add_routes"]

log = logging.getLogger("podwarden.api")


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data).encode(), status_code=status, media_type="application/json")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all with the error model."""
    words = {
        400: "The body is not valid JSON, or a header is malformed.",
        401: "Missing or wrong bearer token.",
        404: "No session (or orphan) with this id.",
        409: "The session has ended, or `max_pinned` sessions are pinned already.",
        413: "The request body is too large.",
        422: "A field is missing or invalid; `error.field` names it.",
        429: "The user already holds `max_sessions_per_user` sessions (see Retry-After).",
        502: "The workload did not become ready; the message says why.",
        503: "The pool is full and nothing may be evicted (see Retry-After), the pool is "
        "draining (code `draining`), or the runtime is unavailable.",
    }
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorOut, "description": words[status]}
        if status in (429, 503):
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds after which a retry may find room.",
                    "schema": {"type": "integer"},
                }
            }
        responses[status] = entry
    return responses


async def known_query_only(request: Request) -> None:
    """Refuse query parameters the route does not declare (``?limt=5`` is a typo to report,
    not something to ignore)."""
    if not request.scope["query_string"]:
        return
    route = request.scope.get("route")
    allowed = {p.alias for p in getattr(getattr(route, "dependant", None), "query_params", ())}
    for key in request.query_params:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidRequest(key[:40], f"unknown query parameter (known: {known})")


STRICT_QUERY = [Depends(known_query_only)]

SessionId = Annotated[str, Path(description="The session id.", max_length=253)]


def add_routes(router: FastAPI, ops: Operations, hub: SseHub) -> None:
    """Register every route on the app itself (not through ``include_router``: an included
    router is one more matching layer on every request); the backend must be started
    before requests arrive. Every answer comes from ``ops``, as the embedded client's."""
    backend = ops.backend
    registry = metrics_registry(backend)

    @router.get("/health", response_model=HealthOut, tags=["health"], summary="Pool health")
    async def health(request: Request) -> Response:
        """The pool's state; needs no token, but without it only counts and status (no
        session ids). 200 for ``healthy`` and ``degraded`` alike."""
        return _json(health_answer(ops.health(), request.scope))

    @router.post(
        "/sessions",
        response_model=AcquireOut,
        tags=["sessions"],
        summary="Get the user's session",
        responses={
            202: {"model": AcquireOut, "description": "`wait` false: the session is starting."},
            **_errors(400, 401, 413, 422, 429, 502, 503),
        },
    )
    async def acquire(body: AcquireRequest, request: Request) -> Response:
        """The user's ready session for the template: reused when there is one
        (``is_new_session`` false), else started. With ``wait`` (the default) this answers
        200 once the session is ready; with ``wait`` false it answers 202 at once (200 when
        a ready session was reused). (Well-formed requests are answered by
        ``fastpath.AcquireShortcut`` before routing; this handles the rest.)"""
        try:
            status, document = await acquire_answer(ops, body, request.receive)
        except ClientGone:
            return Response(status_code=499)  # never sent: the connection is gone
        return _json(document, status)

    @router.get(
        "/sessions",
        response_model=list[SessionOut],
        tags=["sessions"],
        summary="List sessions",
        responses=_errors(401),
    )
    async def list_sessions() -> Response:
        """Every session: live ones and the recently ended (with how their cleanup went)."""
        return _json(ops.list_sessions())

    @router.get(
        "/sessions/{session_id}",
        response_model=SessionOut,
        tags=["sessions"],
        summary="One session",
        responses=_errors(401, 404, 422),
    )
    async def get_session(session_id: SessionId) -> Response:
        return _json(ops.get_session(session_id))

    @router.delete(
        "/sessions/{session_id}",
        response_model=SessionOut,
        status_code=202,
        tags=["sessions"],
        summary="End a session",
        responses=_errors(401, 404, 422),
    )
    async def delete_session(session_id: SessionId) -> Response:
        """Starts ending the session and answers 202 at once (state ``terminating``). The
        workload is stopped and its removal verified in the background; a
        ``cleanup_verified`` event (or ``cleanup_leftover``) says when it is done."""
        return _json(ops.delete_session(session_id), 202)

    @router.delete(
        "/sessions",
        response_model=BulkDeleteOut,
        status_code=202,
        tags=["sessions"],
        summary="End every session of a user",
        responses=_errors(401, 422),
        dependencies=STRICT_QUERY,
    )
    async def delete_user_sessions(
        user: Annotated[
            str,
            Query(
                min_length=1,
                max_length=MAX_USER_LENGTH,
                pattern=USER_PATTERN,
                description="Whose sessions to end.",
            ),
        ],
    ) -> Response:
        """Starts ending every live session of the user and answers 202 with how many;
        each cleanup is verified in the background like a single delete."""
        return _json(ops.delete_user_sessions(user), 202)

    @router.post(
        "/sessions/{session_id}/pin",
        response_model=SessionOut,
        tags=["sessions"],
        summary="Pin a session",
        responses=_errors(401, 404, 409, 422),
    )
    async def pin_session(session_id: SessionId) -> Response:
        """Keeps the session safe from LRU eviction, idle culling and the maximum age."""
        return _json(ops.pin(session_id))

    @router.post(
        "/sessions/{session_id}/unpin",
        response_model=SessionOut,
        tags=["sessions"],
        summary="Unpin a session",
        responses=_errors(401, 404, 409, 422),
    )
    async def unpin_session(session_id: SessionId) -> Response:
        return _json(ops.unpin(session_id))

    @router.post(
        "/pool/drain",
        response_model=DrainOut,
        tags=["pool"],
        summary="Drain the pool",
        responses=_errors(400, 401, 413, 422),
    )
    async def drain(body: DrainRequest | None = None) -> Response:
        """Admit no new sessions (503 `draining` with Retry-After); a user's existing
        session is still handed back. Kept across restarts until undrained. With
        ``evict_idle`` every session is also stopped as soon as it is idle."""
        return _json(ops.drain(body.evict_idle if body is not None else False))

    @router.post(
        "/pool/undrain",
        response_model=DrainOut,
        tags=["pool"],
        summary="Undrain the pool",
        responses=_errors(401),
    )
    async def undrain() -> Response:
        return _json(ops.undrain())

    @router.get(
        "/sessions/{session_id}/logs",
        response_model=LogsOut,
        tags=["sessions"],
        summary="A session's workload log",
        responses=_errors(401, 404, 422),
        dependencies=STRICT_QUERY,
    )
    async def session_logs(
        session_id: SessionId,
        limit: Annotated[int, Query(ge=1, le=10000, description="At most this many lines.")] = 200,
    ) -> Response:
        return _json(ops.logs(session_id, limit))

    @router.get(
        "/templates",
        response_model=list[TemplateOut],
        tags=["templates"],
        summary="Configured templates",
        responses=_errors(401),
    )
    async def templates() -> Response:
        return _json(ops.templates())

    @router.get(
        "/events",
        tags=["events"],
        summary="Event stream (server-sent events)",
        response_class=Response,
        responses={
            200: {
                "description": "One `id: <boot>-<seq>` + `data: {json}` block per event "
                "(see EventOut); comment lines as heartbeats; a named `event: dropped` block "
                "when events were lost. Use `curl -N`.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_errors(401, 422),
        },
        dependencies=STRICT_QUERY,
    )
    async def events(
        kinds: Annotated[
            list[EventKind] | None,
            Query(
                max_length=len(EventKind),
                description="Send only these event kinds (repeat the parameter: "
                "`?kinds=ready&kinds=failed`); default: all, log lines included.",
            ),
        ] = None,
        after: Annotated[
            str | None,
            Query(
                max_length=40,
                description="Resume after this event id (what the stream's `id:` lines "
                "carry): buffered events after it are sent first.",
            ),
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(
                alias="Last-Event-ID",
                max_length=40,
                description="The same as `after`, as browsers' EventSource send it.",
            ),
        ] = None,
    ) -> Response:
        resume = parse_event_id(after, "after") or parse_event_id(last_event_id, "Last-Event-ID")
        return hub.response(frozenset(kinds) if kinds else None, resume)

    @router.get(
        "/events/recent",
        response_model=list[EventOut],
        tags=["events"],
        summary="Recent events",
        responses=_errors(401, 422),
        dependencies=STRICT_QUERY,
    )
    async def recent_events(
        limit: Annotated[int, Query(ge=1, le=2000, description="At most this many.")] = 100,
    ) -> Response:
        """The last events (not log lines), oldest first."""
        return _json(ops.recent_events(limit))

    @router.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **_errors(401),
        },
    )
    async def metrics() -> Response:
        return Response(render_metrics(registry), media_type=CONTENT_TYPE)

    @router.delete(
        "/orphans/{session_id}",
        response_model=OrphanOut,
        status_code=202,
        tags=["sessions"],
        summary="Remove an orphaned workload",
        responses=_errors(401, 404, 422),
    )
    async def remove_orphan(session_id: SessionId) -> Response:
        """Stops a workload the runtime runs but the pool does not know (listed under
        ``orphans`` in ``/health``). Answers 202 at once; an ``orphan_removed`` event says
        when it is gone."""
        return _json(ops.remove_orphan(session_id), 202)
