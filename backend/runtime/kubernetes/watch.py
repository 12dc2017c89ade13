"""List-then-watch caches ("reflectors") of the objects podwarden owns.

One reflector per kind (Deployments, ReplicaSets, Pods, Services, Secrets), each over every
object labelled ``managed-by=podwarden`` in the namespace, serves every session at once:
fifty starting sessions share five watches instead of opening fifty, and waiting for a pod
to become ready or for a session's objects to be gone costs no API call at all.

The protocol is the one kopf and client-go use: list, remember the list's
``resourceVersion``, watch from it; when the server says 410 Gone (the version is too old),
list again. A list replaces the cache and reports what vanished in between, so nothing is
missed across a reconnect. A lost connection is retried over a fixed backoff for as long as
it takes and shown meanwhile (``healthy`` False), so the runtime reports itself degraded
and recovers on its own.

The blocking stream runs in a daemon thread of its own; every change is handed to the
event loop with ``call_soon_threadsafe``, and the cache is only ever touched on the loop,
so it needs no lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from backend.errors import KubernetesError
from backend.runtime.kubernetes.client import KubeClient, StreamThread, close_stream, iter_lines
from backend.runtime.kubernetes.kinds import Kind
from backend.runtime.kubernetes.manifests import LABEL_SESSION

__all__ = ["Reflector", "session_of"]

log = logging.getLogger(__name__)

WATCH_SECONDS = 240
"""Server-side timeout of one watch request; it then resumes from the last version."""
RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts to re-establish a failed list or watch (the last repeats)."""

ChangeCallback = Callable[["Reflector", str, dict[str, Any]], None]
StateCallback = Callable[["Reflector"], None]


class _Gone(Exception):
    """The watch's resourceVersion expired (410): list again."""


def session_of(obj: dict[str, Any]) -> str | None:
    """The session id an object belongs to, from its label."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    value = labels.get(LABEL_SESSION)
    return str(value) if value else None


class Reflector(StreamThread):
    """A live cache of one kind, grouped by session."""

    def __init__(
        self,
        client: KubeClient,
        kind: Kind,
        namespace: str,
        selector: str,
        loop: asyncio.AbstractEventLoop,
        *,
        on_change: ChangeCallback | None = None,
        on_state: StateCallback | None = None,
        retry_delays: tuple[float, ...] | None = None,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        super().__init__()
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.selector = selector
        self._loop = loop
        self._on_change = on_change
        self._on_state = on_state
        self._retry_delays = retry_delays or RETRY_DELAYS
        self._watch_seconds = watch_seconds
        self.objects: dict[str, dict[str, Any]] = {}
        """Name -> object; read and written on the event loop only."""
        self.by_session: dict[str, dict[str, dict[str, Any]]] = {}
        self.synced = asyncio.Event()
        """Set once the first list is in the cache."""
        self.healthy = True
        """False from a failed list or watch until the next one succeeds."""
        self.error = ""
        self.relists = 0
        self.events = 0
        self.thread_name = f"podwarden-watch-{kind.plural}"

    # ------------------------------------------------------------------ thread side
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if self._stop.is_set():
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()

    def _run(self) -> None:
        version = ""
        failures = 0
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
                failures = 0
            except _Gone:
                version = ""
            except Exception as e:  # any failure: report, back off, resume
                if self._stop.is_set():
                    break
                message = e.message if isinstance(e, KubernetesError) else repr(e)
                self._post(self._set_health, False, message)
                delay = self._retry_delays[min(failures, len(self._retry_delays) - 1)]
                failures += 1
                log.debug("%s watch failed (%s); retrying in %.1fs", self.kind.plural, e, delay)
                self._stop.wait(delay)

    def _list(self) -> str:
        query = [("labelSelector", self.selector)] if self.selector else []
        data = self.client.request_blocking(
            "GET",
            self.kind.path(self.namespace),
            query=query,
            action=f"list {self.kind.plural}",
            key=f"list {self.kind.name}",
        )
        items = [dict(i) for i in data.get("items") or []]
        self._post(self._replace, items)
        return str((data.get("metadata") or {}).get("resourceVersion") or "0")

    def _watch(self, version: str) -> str:
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self._watch_seconds)),
        ]
        if self.selector:
            query.append(("labelSelector", self.selector))
        if version:
            query.append(("resourceVersion", version))
        try:
            response = self.client.open_stream(
                self.kind.path(self.namespace),
                query,
                f"watch {self.kind.name}",
                read_timeout=self._watch_seconds + 30,
            )
        except KubernetesError as e:
            if e.status_code == 410:  # some servers refuse an expired version up front
                raise _Gone() from e
            raise
        self._response = response
        try:
            if self._stop.is_set():
                return version
            self._post(self._set_health, True, "")
            for line in iter_lines(response):
                if self._stop.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise KubernetesError(
                        f"watch {self.kind.plural}: {obj.get('message') or obj}",
                        int(obj.get("code") or 0),
                        str(obj.get("reason") or ""),
                    )
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._post(self._apply, kind, obj)
        finally:
            self._response = None
            close_stream(response)
        return version

    # ------------------------------------------------------------------ loop side
    def _set_health(self, healthy: bool, error: str) -> None:
        changed = healthy != self.healthy
        self.healthy = healthy
        self.error = error
        if changed and self._on_state is not None:
            self._on_state(self)

    def _index(self, name: str, obj: dict[str, Any] | None) -> None:
        old = self.objects.pop(name, None)
        if old is not None:
            sid = session_of(old)
            if sid is not None:
                bucket = self.by_session.get(sid)
                if bucket is not None:
                    bucket.pop(name, None)
                    if not bucket:
                        del self.by_session[sid]
        if obj is not None:
            self.objects[name] = obj
            sid = session_of(obj)
            if sid is not None:
                self.by_session.setdefault(sid, {})[name] = obj

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if not name:
            return
        self.events += 1
        self._index(name, None if kind == "DELETED" else obj)
        if self._on_change is not None:
            self._on_change(self, kind, obj)

    def _replace(self, items: list[dict[str, Any]]) -> None:
        fresh = {str((i.get("metadata") or {}).get("name") or ""): i for i in items}
        vanished = [obj for name, obj in self.objects.items() if name not in fresh]
        self.relists += 1
        for obj in vanished:
            self._apply("DELETED", obj)
        for name, obj in fresh.items():
            if name:
                self._apply("MODIFIED" if name in self.objects else "ADDED", obj)
        self.synced.set()
        self._set_health(True, "")

    # ------------------------------------------------------------------ queries
    def session_objects(self, session_id: str) -> list[dict[str, Any]]:
        """The cached objects of one session (empty when it has none)."""
        return list(self.by_session.get(session_id, {}).values())

    def sessions(self) -> set[str]:
        return set(self.by_session)
