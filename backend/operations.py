"""The operations a front end may ask of a backend, answered as the API's JSON documents.

The HTTP routes, the warm-reuse shortcut in front of them and the embedded
``LocalClient`` all answer through this one class, so what a caller gets cannot depend on
how it reached the backend: the same documents, the same statuses, the same errors, and
the same asynchronous orphan removal (it begins and returns at once; an
``orphan_removed`` or ``cleanup_leftover`` event says how it ended).
"""

from __future__ import annotations

from typing import Any

from backend.errors import SessionNotFound
from backend.models import SessionState
from backend.service import Backend

__all__ = ["Operations"]


class Operations:
    """Backend data as API answers; raises ``PodwardenError`` subclasses."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.pool = backend.pool

    def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        return self.backend.health().to_dict()

    def list_sessions(self) -> list[dict[str, Any]]:
        now = self.pool.clock()  # the clock the culler decides by: idle_s is its idle time
        return [s.to_dict(now) for s in self.pool.list()]

    def get_session(self, session_id: str) -> dict[str, Any]:
        return self.pool.get(session_id).to_dict(self.pool.clock())

    async def acquire(
        self,
        user: str,
        template: str | None = None,
        *,
        reuse: bool = True,
        wait: bool = True,
        credentials: dict[str, str] | None = None,
        requires: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(status, document) of ``POST /sessions``: 200 once ready (or reused ready),
        202 for a session still starting (``wait`` false)."""
        result = await self.pool.acquire(
            user, template, reuse=reuse, wait=wait, credentials=credentials, requires=requires
        )
        ready = result.session.state is SessionState.READY or (
            result.session.state is SessionState.REFRESHING
        )
        return (200 if wait or ready else 202), result.to_dict()

    def reuse_at_once(
        self,
        user: str,
        template: str | None = None,
        *,
        credentials: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]] | None:
        """``acquire``'s answer when it is a warm reuse that needs no wait, else None."""
        result = self.pool.reuse_at_once(user, template, credentials=credentials)
        return None if result is None else (200, result.to_dict())

    def delete_session(self, session_id: str) -> dict[str, Any]:
        """Begin ending the session; the document shows it ``terminating``."""
        return self.pool.delete(session_id).to_dict()

    def pin(self, session_id: str) -> dict[str, Any]:
        """``POST /sessions/{id}/pin``: the session document, ``pinned`` true."""
        return self.pool.pin(session_id).to_dict()

    def unpin(self, session_id: str) -> dict[str, Any]:
        return self.pool.unpin(session_id).to_dict()

    def delete_user_sessions(self, user: str) -> dict[str, Any]:
        """``DELETE /sessions?user=NAME``: begin ending every live session of the user."""
        ids = self.pool.delete_user_sessions(user)
        return {"user": user, "count": len(ids), "session_ids": sorted(ids)}

    def drain(self, evict_idle: bool = False) -> dict[str, Any]:
        """``POST /pool/drain``: admit no new sessions (kept across restarts)."""
        return self.pool.set_drain(True, evict_idle).to_dict()

    def undrain(self) -> dict[str, Any]:
        return self.pool.set_drain(False).to_dict()

    def logs(self, session_id: str, limit: int = 200) -> dict[str, Any]:
        self.pool.get(session_id)
        return {"session_id": session_id, "lines": self.backend.logs.get(session_id, limit)}

    def templates(self) -> list[dict[str, Any]]:
        """The configured templates (no command line, no env: they may hold secrets)."""
        settings = self.backend.settings
        return [
            {
                "name": t.name,
                "port": t.port if settings.runtime.kind == "kubernetes" else None,
                "readiness": t.readiness,
                "image": t.image or None,
                "keepalive": bool(t.keepalive_path),
                "default": t.name == settings.default_template,
            }
            for t in sorted(settings.templates.values(), key=lambda t: t.name)
        ]

    def recent_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.backend.bus.recent(limit)]

    def remove_orphan(self, session_id: str) -> dict[str, Any]:
        """Begin stopping a workload the pool does not know; ``SessionNotFound`` if it is
        not a known orphan."""
        if session_id not in self.backend.orphans:
            raise SessionNotFound(session_id)
        self.backend.begin_orphan_removal(session_id)
        return {"session_id": session_id, "status": "removing"}
