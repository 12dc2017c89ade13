"""``make_api(backend, token)``: the FastAPI app over an embedded ``Backend``.

The app holds no state of its own beyond the event-stream hub: the backend is started and
stopped by whoever hosts it (``podwarden serve``, the TUI process, a test), so the same
app runs in a daemon, next to the TUI in one event loop, or in a test on an in-memory
runtime. The OpenAPI document declares the bearer scheme on every route but ``/health``,
matching what ``Guard`` enforces. ``PodwardenApi`` is FastAPI with the warm-reuse shortcut
(``fastpath``) in front of its middleware stack.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import Receive, Scope, Send

from backend.api.fastpath import AcquireShortcut
from backend.api.guard import DEFAULT_BODY_LIMIT, PUBLIC_PATHS, Guard
from backend.api.handlers import install_handlers
from backend.api.routes import add_routes
from backend.api.sse import SseHub
from backend.config import Settings
from backend.operations import Operations
from backend.service import Backend
from backend.templates import Template

__all__ = ["API_VERSION", "PodwardenApi", "make_api"]

API_VERSION = "1.0.0"

_DESCRIPTION = """\
Per-user persistent sessions: ask for a user's session and get the same warm one back
(`is_new_session: false`) until it is evicted, deleted or fails.

Every route but `/health` needs `Authorization: Bearer <token>`; the token is
`PODWARDEN_TOKEN` or the file `<state-dir>/token`. Every error is
`{"error": {"code", "message", "field"?}}`.
"""


class PodwardenApi(FastAPI):
    """FastAPI plus the warm-reuse shortcut in front of its middleware stack."""

    shortcut: AcquireShortcut | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shortcut = self.shortcut
        if (
            shortcut is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/sessions"
        ):
            fallback = await shortcut(scope, receive, send)
            if fallback is None:
                return
            receive = fallback
        await super().__call__(scope, receive, send)


def make_api(
    backend: Backend,
    token: str,
    *,
    body_limit: int = DEFAULT_BODY_LIMIT,
    heartbeat: float = 15.0,
) -> FastAPI:
    """The API app for ``backend``; requests need ``Bearer token``."""
    if not token:
        raise ValueError("an API token is required")
    app = PodwardenApi(
        title="podwarden",
        version=API_VERSION,
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        **_no_telemetry(),
    )
    hub = SseHub(backend.bus, heartbeat=heartbeat)
    app.state.backend = backend
    app.state.sse = hub
    ops = Operations(backend)
    add_routes(app, ops, hub)
    install_handlers(app)
    app.add_middleware(Guard, token=token, body_limit=body_limit)
    app.shortcut = AcquireShortcut(ops, token, body_limit)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _name_templates(document, sorted(backend.settings.templates))
            _name_labels(document, backend.settings)
            _name_credentials(
                document, backend.settings.templates.values(), backend.settings.default_template
            )
            app.openapi_schema = _with_security(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _no_telemetry() -> dict[str, Any]:
    """FastAPI releases with built-in OpenTelemetry take a ``telemetry`` option: off here,
    since podwarden exports its own metrics and the hot path should not pay for spans."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def _name_templates(schema: dict[str, Any], names: list[str]) -> None:
    """List the configured templates as the allowed values of ``template`` (the model
    takes any string, and the pool answers an unknown one with a 422 naming the known)."""
    request = schema["components"]["schemas"]["AcquireRequest"]["properties"]
    request["template"]["anyOf"] = [{"type": "string", "enum": names}, {"type": "null"}]


def _name_labels(schema: dict[str, Any], settings: Settings) -> None:
    """List the labels the targets carry as what ``requires`` may ask for (the model takes
    any label, and the pool answers one no target has with a 422 naming it)."""
    values: dict[str, set[str]] = {}
    if settings.runtime.kind == "multi":
        for target in settings.runtime.targets.values():
            for key, value in target.labels.items():
                values.setdefault(key, set()).add(value)
    request = schema["components"]["schemas"]["AcquireRequest"]["properties"]
    request["requires"]["anyOf"] = [
        {
            "type": "object",
            "properties": {k: {"type": "string", "enum": sorted(v)} for k, v in values.items()},
            "additionalProperties": False,
        },
        {"type": "null"},
    ]


def _name_credentials(schema: dict[str, Any], templates: Iterable[Template], default: str) -> None:
    """List the credential names the templates declare as the allowed keys: the union on
    ``credentials`` itself, and each template's own in one ``anyOf`` branch per template
    (the request is valid when the names suit the template it names, or the default
    template when it names none); the pool answers any other name with a 422."""
    by_name = {t.name: sorted(t.credentials) for t in templates}
    names = sorted({name for names in by_name.values() for name in names})
    acquire = schema["components"]["schemas"]["AcquireRequest"]
    request = acquire["properties"]
    for option in request["credentials"].get("anyOf", [request["credentials"]]):
        if option.get("type") == "object":
            option.update(_names_schema(names))
    branches: list[dict[str, Any]] = [
        {
            "properties": {
                "template": {"const": name},
                "credentials": {"anyOf": [_names_schema(accepted), {"type": "null"}]},
            },
            "required": ["template"],
        }
        for name, accepted in sorted(by_name.items())
    ]
    if default in by_name:
        branches.append(
            {
                "properties": {
                    "template": {"type": "null"},
                    "credentials": {"anyOf": [_names_schema(by_name[default]), {"type": "null"}]},
                }
            }
        )
    acquire["anyOf"] = branches


def _names_schema(names: list[str]) -> dict[str, Any]:
    if not names:
        return {"type": "object", "maxProperties": 0}
    return {"type": "object", "propertyNames": {"enum": names}}


def _with_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer scheme, and require it on every operation but the public ones."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The token in <state-dir>/token, or PODWARDEN_TOKEN.",
    }
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if path in PUBLIC_PATHS:
                operation["security"] = []
            else:
                operation["security"] = [{"bearer": []}]
    return schema
