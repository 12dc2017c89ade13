"""The one door to the API server: bounded threads, retries, errors, and a call counter.

The official client is blocking. Every request therefore runs in a ``ThreadPoolExecutor`` of
``api_threads`` workers, so the event loop never waits on a socket and a burst of creates
cannot start hundreds of threads. Long-lived streams (watches, log follows) do not take those
workers: their owners run them in dedicated threads through ``open_stream``.

Requests go through ``ApiClient.param_serialize``/``call_api`` with plain dicts rather than
the generated ``*Api`` methods and typed models: the answers are read as JSON, which is both
faster and immune to the 37.x client rejecting what a v1.20 server returns on deletes (a
``Status`` where it expects the object; the README of the k8s harness describes it). This is
what ``_preload_content=False`` does for the generated methods, applied everywhere.

Each request is counted under ``"<verb> <kind>"`` (``calls``), so a benchmark can report API
calls per create, and failures are retried over ``apierrors.BACKOFF`` honouring
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backend.errors import KubeNotFound, KubernetesError
from backend.runtime.kubernetes.apierrors import (
    BACKOFF,
    connection_error,
    from_status,
    is_retryable,
    retry_delay,
)
from backend.runtime.kubernetes.connect import Connection
from backend.runtime.kubernetes.kinds import Kind

__all__ = ["KubeClient", "iter_lines"]

log = logging.getLogger(__name__)

Query = list[tuple[str, Any]]
Sleep = Callable[[float], Awaitable[None]]


def iter_lines(response: Any) -> Iterator[str]:
    """The lines of a streamed (chunked) HTTP response, as they arrive."""
    buffer = bytearray()
    for chunk in response.stream(amt=None, decode_content=False):
        buffer.extend(chunk)
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(buffer[:end]).decode("utf-8", errors="replace")
            del buffer[: end + 1]
            yield line
    if buffer:
        yield bytes(buffer).decode("utf-8", errors="replace")


def close_stream(response: Any) -> None:
    """Abort a streamed response from any thread (a blocked read returns at once)."""
    for method in ("shutdown", "close"):
        try:
            getattr(response, method)()
        except Exception:  # closing is best effort by nature
            pass


class StreamThread:
    """A daemon thread reading one streamed response, stoppable from the event loop.

    Subclasses implement ``_run`` and keep the response they read in ``_response``, so
    ``stop`` can abort a blocked read at once.
    """

    thread_name = "podwarden-stream"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the stream; the thread exits as soon as its blocked read returns."""
        self._stop.set()
        response = self._response
        if response is not None:
            close_stream(response)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError


class KubeClient:
    """Blocking client calls made async, retried and counted."""

    def __init__(
        self,
        connection: Connection,
        *,
        threads: int = 16,
        backoff: tuple[float, ...] = BACKOFF,
        sleep: Sleep | None = None,
        request_timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        from kubernetes import client as k8s_client

        self.connection = connection
        self._api = k8s_client.ApiClient(connection.configuration)
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="podwarden-k8s-api"
        )
        self.backoff = backoff
        self._sleep: Sleep = sleep or asyncio.sleep
        self.request_timeout = request_timeout
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        """Requests sent, by ``"<verb> <kind>"`` (retries included)."""
        self.retries = 0
        self.last_error: str = ""
        self.last_failure_at = 0.0
        self.last_success_at = 0.0
        self._closed = False

    # ------------------------------------------------------------------ bookkeeping
    @property
    def host(self) -> str:
        return self.connection.host

    @property
    def namespace(self) -> str:
        return self.connection.namespace

    def count(self, key: str) -> None:
        with self._lock:
            self.calls[key] += 1

    def requests_sent(self, *, include_streams: bool = False) -> int:
        """Requests sent so far; watches and log streams only when asked."""
        with self._lock:
            return sum(
                n
                for key, n in self.calls.items()
                if include_streams or not key.startswith(("watch ", "stream "))
            )

    @property
    def reachable(self) -> bool:
        """False while the last request failed below HTTP (and none succeeded since)."""
        return self.last_success_at >= self.last_failure_at

    def _note(self, error: KubernetesError | None) -> None:
        now = time.monotonic()
        if error is None or error.status_code != 0:
            self.last_success_at = now
        else:
            self.last_failure_at = now
            self.last_error = error.message

    # ------------------------------------------------------------------ blocking layer
    def _send(
        self,
        method: str,
        path: str,
        query: Query | None,
        body: Any,
        content_type: str,
        timeout: Any,
        action: str,
        stream: bool = False,
        decode: bool = True,
    ) -> Any:
        """One HTTP exchange: the JSON answer (the raw bytes unless ``decode``), or the
        open response for ``stream``."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            request = self._api.param_serialize(
                method,
                path,
                query_params=list(query or []),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request, _request_timeout=timeout).response
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            error = connection_error(e, self.host, action)
            self._note(error)
            raise error from e
        if stream and 200 <= response.status < 300:
            self._note(None)
            return response
        try:
            data = response.data
        except (urllib3.exceptions.HTTPError, OSError) as e:
            error = connection_error(e, self.host, action)
            self._note(error)
            raise error from e
        finally:
            response.release_conn()
        if response.status >= 400:
            error = from_status(response.status, data, response.headers, action)
            self._note(error)
            raise error
        self._note(None)
        if not decode:
            return bytes(data or b"")
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError as e:
            raise KubernetesError(f"{action}: the API answered with something not JSON") from e

    def request_blocking(
        self, method: str, path: str, *, action: str, key: str, query: Query | None = None
    ) -> Any:
        """Blocking: one request from a thread of the caller's own, without retries."""
        self.count(key)
        return self._send(method, path, query, None, "", self.request_timeout, action)

    def open_stream(self, path: str, query: Query, action: str, read_timeout: float | None) -> Any:
        """Blocking: start a watch or log stream; iterate it with ``iter_lines``.

        Call it from a dedicated thread (it may block for as long as the stream lasts) and
        end it from anywhere with ``close_stream``.
        """
        self.count(action)
        timeout = (self.request_timeout[0], read_timeout)
        return self._send("GET", path, query, None, "", timeout, action, stream=True)

    # ------------------------------------------------------------------ async layer
    async def request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        key: str,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
        retry: bool = True,
        conflict_retry: bool = False,
        timeout: Any = None,
        decode: bool = True,
    ) -> Any:
        """Send a request in the thread pool; retry transient failures; map errors.

        ``action`` names the request in error messages (``create deployment/x``), ``key``
        counts it (``create deployment``).
        """
        if self._closed:
            raise KubernetesError(f"{action}: the Kubernetes client is closed")
        loop = asyncio.get_running_loop()
        send = functools.partial(
            self._send,
            method,
            path,
            query,
            body,
            content_type,
            timeout or self.request_timeout,
            action,
            decode=decode,
        )
        attempt = 0
        while True:
            self.count(key)
            try:
                return await loop.run_in_executor(self._executor, send)
            except KubernetesError as e:
                if not retry or attempt >= len(self.backoff):
                    raise
                if not is_retryable(e, conflict=conflict_retry):
                    raise
                delay = retry_delay(e, attempt, self.backoff)
                attempt += 1
                self.retries += 1
                log.info("%s; retry %d in %.2fs", e.message, attempt, delay)
                await self._sleep(delay)

    async def run_blocking(self, fn: Callable[[], Any]) -> Any:
        """Run another blocking call (a port-forward connect) in the bounded pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        return dict(
            await self.request(
                "GET",
                kind.path(namespace, name),
                action=f"get {kind.name}/{name}",
                key=f"get {kind.name}",
            )
        )

    async def list(
        self, kind: Kind, namespace: str | None, selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """Objects matching ``selector`` and the list's resourceVersion (to watch from)."""
        query: Query = [("labelSelector", selector)] if selector else []
        data = await self.request(
            "GET",
            kind.path(namespace),
            query=query,
            action=f"list {kind.plural}",
            key=f"list {kind.name}",
        )
        items = [dict(item) for item in data.get("items") or []]
        return items, str((data.get("metadata") or {}).get("resourceVersion") or "")

    async def create(self, kind: Kind, namespace: str | None, body: dict[str, Any]) -> dict:
        name = body.get("metadata", {}).get("name", "?")
        return dict(
            await self.request(
                "POST",
                kind.path(namespace),
                body=body,
                action=f"create {kind.name}/{name}",
                key=f"create {kind.name}",
            )
        )

    async def patch(
        self, kind: Kind, namespace: str | None, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch; 409 (changed meanwhile) is retried like a 5xx."""
        return dict(
            await self.request(
                "PATCH",
                kind.path(namespace, name),
                body=patch,
                content_type="application/merge-patch+json",
                conflict_retry=True,
                action=f"patch {kind.name}/{name}",
                key=f"patch {kind.name}",
            )
        )

    async def delete(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
    ) -> bool:
        """Delete ``name``; False when it was not there (404), True otherwise."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation:
            body["propagationPolicy"] = propagation
        try:
            await self.request(
                "DELETE",
                kind.path(namespace, name),
                body=body,
                action=f"delete {kind.name}/{name}",
                key=f"delete {kind.name}",
            )
        except KubeNotFound:
            return False
        return True

    async def delete_collection(
        self,
        kind: Kind,
        namespace: str | None,
        selector: str,
        *,
        propagation: str | None = None,
    ) -> None:
        """Delete every ``kind`` matching the label ``selector`` (one request)."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation:
            body["propagationPolicy"] = propagation
        await self.request(
            "DELETE",
            kind.path(namespace),
            query=[("labelSelector", selector)],
            body=body,
            action=f"delete {kind.plural} {selector}",
            key=f"deletecollection {kind.name}",
        )

    def close(self) -> None:
        """Stop the worker threads (queued calls are cancelled) and drop connections."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        try:
            self._api.close()
        except Exception:  # closing is best effort by nature
            log.debug("closing the API client failed", exc_info=True)
