"""The client interface the TUI (and scripts) use, and its in-process implementation.

``PodwardenClient`` is the one way a front end talks to a backend; ``LocalClient`` calls an
embedded ``Backend`` directly, ``HttpClient`` (``backend.http_client``) goes over the HTTP
API. Both return the same JSON-shaped dicts as the API, so a front end cannot tell them
apart and needs no ``if remote`` branch. Errors are ``PodwardenError`` subclasses in both;
a remote link that is down raises ``BackendUnreachable``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from backend.service import Backend

__all__ = ["LocalClient", "PodwardenClient", "templates_of"]


@runtime_checkable
class PodwardenClient(Protocol):
    """What a front end may ask of a backend. Every dict is the HTTP API's JSON shape."""

    @property
    def address(self) -> str:
        """Where the backend is: ``embedded`` or the base URL."""
        ...

    @property
    def api_address(self) -> str | None:
        """The HTTP API address the backend serves, when known (``127.0.0.1:5010``)."""
        ...

    async def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        ...

    async def list_sessions(self) -> list[dict[str, Any]]:
        """Every session (live and recently ended)."""
        ...

    async def get_session(self, session_id: str) -> dict[str, Any]:
        """One session; ``SessionNotFound`` if unknown."""
        ...

    async def acquire(
        self,
        user: str,
        template: str | None = None,
        *,
        reuse: bool = True,
        wait: bool = True,
        credentials: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The session document plus ``is_new_session`` and ``took_ms``."""
        ...

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        """Start deleting; returns the session document (state ``terminating``)."""
        ...

    async def remove_orphan(self, session_id: str) -> None:
        """Stop a workload the pool does not know (one of ``health()["orphans"]``).

        Returns once the removal has begun (remote) or ended (embedded); the
        ``orphan_removed`` event (or ``cleanup_leftover``) says how it ended either way.
        ``SessionNotFound`` if ``session_id`` is not a known orphan.
        """
        ...

    async def templates(self) -> list[dict[str, Any]]:
        """The configured templates: ``name``, ``port``, ``readiness``, ``image``."""
        ...

    async def logs(self, session_id: str, limit: int = 200) -> list[str]:
        """The session's recent workload log lines, oldest first."""
        ...

    async def recent_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last events (not log lines), oldest first."""
        ...

    def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every event from now on, log lines included, until the client is closed."""
        ...

    async def close(self) -> None: ...


def templates_of(backend: Backend) -> list[dict[str, Any]]:
    """The template list as the API shows it (no command line, no env: they may hold secrets)."""
    return [
        {
            "name": t.name,
            "port": t.port if backend.settings.runtime.kind == "kubernetes" else None,
            "readiness": t.readiness,
            "image": t.image or None,
            "keepalive": bool(t.keepalive_path),
            "default": t.name == backend.settings.default_template,
        }
        for t in sorted(backend.settings.templates.values(), key=lambda t: t.name)
    ]


class LocalClient:
    """``PodwardenClient`` over an embedded ``Backend`` in the same event loop."""

    def __init__(self, backend: Backend, api_address: str | None = None) -> None:
        self.backend = backend
        self._api_address = api_address
        self._subscriptions: list[Any] = []

    @property
    def address(self) -> str:
        return "embedded"

    @property
    def api_address(self) -> str | None:
        return self._api_address

    async def health(self) -> dict[str, Any]:
        return self.backend.health().to_dict()

    async def list_sessions(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.backend.pool.list()]

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return self.backend.pool.get(session_id).to_dict()

    async def acquire(
        self,
        user: str,
        template: str | None = None,
        *,
        reuse: bool = True,
        wait: bool = True,
        credentials: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        pool = self.backend.pool
        if wait:
            result = await pool.acquire(user, template, reuse=reuse, credentials=credentials)
        else:
            result = pool.acquire_nowait(user, template, reuse=reuse, credentials=credentials)
        return result.to_dict()

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        return self.backend.pool.delete(session_id).to_dict()

    async def remove_orphan(self, session_id: str) -> None:
        await self.backend.remove_orphan(session_id)

    async def templates(self) -> list[dict[str, Any]]:
        return templates_of(self.backend)

    async def logs(self, session_id: str, limit: int = 200) -> list[str]:
        self.backend.pool.get(session_id)
        return self.backend.logs.get(session_id, limit)

    async def recent_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.backend.bus.recent(limit)]

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        subscription = self.backend.bus.subscribe(maxsize=5000)
        self._subscriptions.append(subscription)
        try:
            async for event in subscription:
                yield event.to_dict()
        finally:
            subscription.close()

    async def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
