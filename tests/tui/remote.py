"""The console against a real HTTP server on 127.0.0.1, which a test can take down.

The server is ``serve_api`` on an ephemeral port over the harness's deterministic
backend; the console talks to it with the real ``HttpClient``. The client is told the
backend lives at ``http://backend.test:5010`` and a transport sends each request to the
real port, so every text the screen shows (addresses, errors) is the same in every run
and snapshots stay stable.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from backend.api.listen import bind_socket
from backend.api.server import ApiServer, serve_api
from backend.http_client import HttpClient
from tests.tui.harness import Pool
from tui.app import PodwardenApp, make_app

TOKEN = "test-token-0123456789abcdef"
SHOWN_URL = "http://backend.test:5010"

T = TypeVar("T")


class ToPort(httpx.AsyncBaseTransport):
    """Sends every request to ``127.0.0.1:port`` whatever its URL says; counts them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[str] = []
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class RemoteBackend:
    """The pool's backend behind a real API server that can be stopped and started again
    on the same port (an outage the console must live through)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._sock: socket.socket | None = bind_socket("127.0.0.1", 0)
        self.port: int = self._sock.getsockname()[1]
        self.transport = ToPort(self.port)
        self.server: ApiServer | None = None
        self._backend_started = False

    def client(self, token: str = TOKEN) -> HttpClient:
        return HttpClient(SHOWN_URL, token, transport=self.transport)

    def app(self, token: str = TOKEN, **changes: Any) -> PodwardenApp:
        """A console over the HTTP client (no embedded lifecycle: the backend is remote)."""
        for key, value in changes.items():
            setattr(self.pool.tui, key, value)
        app = make_app(self.client(token), self.pool.tui)
        self.pool.apps.append(app)
        return app

    async def start(self) -> None:
        """Start the backend (first time) and the server on its port."""
        if not self._backend_started:
            await self.pool.backend.start()
            self._backend_started = True
        sock = self._sock or bind_socket("127.0.0.1", self.port)
        self._sock = None
        self.server = await serve_api(self.pool.backend, token=TOKEN, sock=sock, heartbeat=0.2)

    async def stop_server(self) -> None:
        """End the server (its event streams first); the backend keeps running."""
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def close(self) -> None:
        await self.stop_server()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._backend_started:
            await self.pool.backend.stop()
            self._backend_started = False


class ThreadedRemote(RemoteBackend):
    """``RemoteBackend`` in a thread with its own loop, for snapshot tests (whose app
    runs in a loop of its own); ``call`` runs a coroutine there and waits for it."""

    def __init__(self, pool: Pool) -> None:
        super().__init__(pool)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="remote-backend")
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def shutdown(self) -> None:
        """Stop server and backend, then the thread."""
        try:
            self.call(self.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
