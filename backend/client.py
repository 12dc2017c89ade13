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

from backend.operations import Operations
from backend.service import Backend

__all__ = ["LocalClient", "PodwardenClient"]


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

    async def pin(self, session_id: str) -> dict[str, Any]:
        """Keep the session safe from eviction, idle culling and the maximum age; the
        session document. ``SessionNotFound``, ``SessionEnded``, ``PinLimit``."""
        ...

    async def unpin(self, session_id: str) -> dict[str, Any]:
        """Make a pinned session ordinary again; the session document."""
        ...

    async def drain(self, evict_idle: bool = False) -> dict[str, Any]:
        """Admit no new sessions (reuse still served); with ``evict_idle`` also stop
        sessions as they go idle. ``{"draining", "since", "evict_idle"}``."""
        ...

    async def undrain(self) -> dict[str, Any]:
        """Admit new sessions again."""
        ...

    async def delete_user_sessions(self, user: str) -> dict[str, Any]:
        """Begin ending every live session of ``user``: ``{"user", "count", "session_ids"}``."""
        ...

    async def remove_orphan(self, session_id: str) -> None:
        """Stop a workload the pool does not know (one of ``health()["orphans"]``).

        Returns once the removal has begun; the ``orphan_removed`` event (or
        ``cleanup_leftover``) says how it ended.
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

    def events(self, after: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every event from now on, log lines included, until the client is closed.

        Each carries its ``id`` (``<boot>-<seq>``); with ``after`` (the last id seen
        before a lost link) the events buffered since that one come first, so none is
        missed while the buffer holds them.
        """
        ...

    async def close(self) -> None: ...


class LocalClient:
    """``PodwardenClient`` over an embedded ``Backend`` in the same event loop; every
    answer comes from the same ``Operations`` as the HTTP API's."""

    def __init__(self, backend: Backend, api_address: str | None = None) -> None:
        self.backend = backend
        self.ops = Operations(backend)
        self._api_address = api_address
        self._subscriptions: list[Any] = []

    @property
    def address(self) -> str:
        return "embedded"

    @property
    def api_address(self) -> str | None:
        return self._api_address

    async def health(self) -> dict[str, Any]:
        return self.ops.health()

    async def list_sessions(self) -> list[dict[str, Any]]:
        return self.ops.list_sessions()

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return self.ops.get_session(session_id)

    async def acquire(
        self,
        user: str,
        template: str | None = None,
        *,
        reuse: bool = True,
        wait: bool = True,
        credentials: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        _, document = await self.ops.acquire(
            user, template, reuse=reuse, wait=wait, credentials=credentials
        )
        return document

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        return self.ops.delete_session(session_id)

    async def remove_orphan(self, session_id: str) -> None:
        self.ops.remove_orphan(session_id)

    async def pin(self, session_id: str) -> dict[str, Any]:
        return self.ops.pin(session_id)

    async def unpin(self, session_id: str) -> dict[str, Any]:
        return self.ops.unpin(session_id)

    async def drain(self, evict_idle: bool = False) -> dict[str, Any]:
        return self.ops.drain(evict_idle)

    async def undrain(self) -> dict[str, Any]:
        return self.ops.undrain()

    async def delete_user_sessions(self, user: str) -> dict[str, Any]:
        return self.ops.delete_user_sessions(user)

    async def templates(self) -> list[dict[str, Any]]:
        return self.ops.templates()

    async def logs(self, session_id: str, limit: int = 200) -> list[str]:
        lines: list[str] = self.ops.logs(session_id, limit)["lines"]
        return lines

    async def recent_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.ops.recent_events(limit)

    async def events(self, after: str | None = None) -> AsyncIterator[dict[str, Any]]:
        bus = self.backend.bus
        subscription = bus.subscribe(maxsize=5000)
        self._subscriptions.append(subscription)
        try:
            sent = 0
            if after is not None:  # subscribed first: nothing falls between the two
                replay, _ = bus.since(after)
                for event in replay:
                    yield {**event.to_dict(), "id": bus.event_id(event)}
                sent = replay[-1].seq if replay else 0
            async for event in subscription:
                if event.seq > sent:
                    yield {**event.to_dict(), "id": bus.event_id(event)}
        finally:
            subscription.close()

    async def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
