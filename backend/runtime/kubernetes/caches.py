"""The five watch caches of a runtime, as one object, and waiting on them.

``SessionCaches`` owns the reflectors (one per kind in ``SESSION_KINDS``) and a registry of
waiters per session: whoever waits for a session's objects to change (``wait_ready``,
``stop``) sleeps on an ``asyncio.Event`` that the change feed sets. Everything here runs on
the event loop; the reflectors' threads only ever reach it through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import PODS, SESSION_KINDS, Kind
from backend.runtime.kubernetes.manifests import (
    LABEL_MANAGED_BY,
    LABEL_SESSION,
    MANAGED_BY,
    MANAGED_SELECTOR,
)
from backend.runtime.kubernetes.podstatus import is_pod_ready
from backend.runtime.kubernetes.watch import ChangeCallback, Reflector, session_of

__all__ = ["SessionCaches", "is_ours", "meta"]


def meta(obj: dict[str, Any] | None) -> dict[str, Any]:
    """An object's metadata (empty for None)."""
    return dict((obj or {}).get("metadata") or {})


def is_ours(obj: dict[str, Any], session_id: str) -> bool:
    """Whether ``obj`` carries the labels of this podwarden session."""
    labels = meta(obj).get("labels") or {}
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_SESSION) == session_id


class SessionCaches:
    """Reflectors of every session kind, grouped by session, plus change waiters."""

    def __init__(
        self,
        client: KubeClient,
        loop: asyncio.AbstractEventLoop,
        *,
        on_change: ChangeCallback,
        on_state: Callable[[Reflector], None],
    ) -> None:
        self._on_change = on_change
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self.reflectors = {
            kind.name: Reflector(
                client,
                kind,
                client.namespace,
                MANAGED_SELECTOR,
                loop,
                on_change=self._changed,
                on_state=on_state,
            )
            for kind in SESSION_KINDS
        }

    def start(self) -> None:
        for reflector in self.reflectors.values():
            reflector.start()

    def stop(self) -> None:
        for reflector in self.reflectors.values():
            reflector.stop()
        for events in self._waiters.values():
            for event in events:
                event.set()

    def __getitem__(self, kind: Kind) -> Reflector:
        return self.reflectors[kind.name]

    def current(self, *kinds: Kind) -> bool:
        """True when the caches of ``kinds`` (default: all) are listed and watching."""
        for kind in kinds or SESSION_KINDS:
            reflector = self.reflectors[kind.name]
            if not reflector.synced.is_set() or not reflector.healthy:
                return False
        return True

    def objects(self, kind: Kind, session_id: str) -> list[dict[str, Any]]:
        return self.reflectors[kind.name].session_objects(session_id)

    def leftovers(self, session_id: str) -> list[str]:
        """``kind/name`` of every cached object of the session."""
        return [
            f"{kind.name}/{meta(obj).get('name')}"
            for kind in SESSION_KINDS
            for obj in self.objects(kind, session_id)
        ]

    def ready_pod(self, session_id: str) -> dict[str, Any] | None:
        """The session's pod that serves now (ready, with an IP), if any."""
        for pod in self.objects(PODS, session_id):
            if is_pod_ready(pod):
                return pod
        return None

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every cached object, by kind name."""
        return {name: list(r.objects.values()) for name, r in self.reflectors.items()}

    def _changed(self, reflector: Reflector, kind: str, obj: dict[str, Any]) -> None:
        sid = session_of(obj)
        if sid is not None:
            for event in self._waiters.get(sid, ()):
                event.set()
        self._on_change(reflector, kind, obj)

    async def wait_change(self, session_id: str, timeout: float) -> None:
        """Sleep until an object of the session changes, or ``timeout`` passes."""
        event = asyncio.Event()
        waiters = self._waiters.setdefault(session_id, set())
        waiters.add(event)
        try:
            await asyncio.wait_for(event.wait(), max(0.0, timeout))
        except asyncio.TimeoutError:
            pass
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(session_id, None)
