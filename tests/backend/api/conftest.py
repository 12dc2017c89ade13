"""Fixtures for API tests: the app in-process (ASGI), on a real uvicorn, or in a thread.

- ``api``: an ``httpx.AsyncClient`` on the app through ``ASGITransport`` (no sockets);
- ``served``: the app on uvicorn at ``127.0.0.1:0`` in the test's own loop, for what
  needs a real connection (event streams, keep-alive, the HTTP client);
- ``ThreadedServer``: backend and server in a thread with their own loop, for
  synchronous callers (schemathesis, the ``health`` command's ``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from backend.api.app import make_api
from backend.api.server import ApiServer, serve_api
from backend.config import Settings
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

T = TypeVar("T")


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds, for state that has no event to await (a closed
    subscription on the server side of a dropped connection)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def api(memory_backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app = make_api(memory_backend, TOKEN)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://podwarden.test", headers=AUTH
    ) as client:
        yield client


@pytest.fixture
def runtime(memory_backend: Backend) -> MemoryRuntime:
    assert isinstance(memory_backend.runtime, MemoryRuntime)
    return memory_backend.runtime


@pytest.fixture
async def served(memory_backend: Backend) -> AsyncIterator[ApiServer]:
    server = await serve_api(memory_backend, "127.0.0.1", 0, token=TOKEN, heartbeat=0.2)
    yield server
    await server.stop()


@dataclass
class ThreadedServer:
    """A started backend (memory runtime) and API server running in their own thread."""

    backend: Backend
    server: ApiServer
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


def run_threaded(settings: Settings) -> Iterator[ThreadedServer]:
    """Start backend and server in a new thread; stop both when the generator closes."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="api-test-server", daemon=True)
    thread.start()

    async def start() -> ThreadedServer:
        backend = Backend(settings, runtime=MemoryRuntime())
        backend.runtime._logs = backend.logs  # type: ignore[attr-defined]
        await backend.start()
        server = await serve_api(backend, "127.0.0.1", 0, token=TOKEN, heartbeat=0.2)
        return ThreadedServer(backend, server, loop)

    running = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield running
    finally:

        async def stop() -> None:
            await running.server.stop()
            await running.backend.stop(stop_sessions=True)

        running.call(stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def threaded(settings: Settings) -> Iterator[ThreadedServer]:
    yield from run_threaded(settings)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error response, checking the envelope on the way."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str), error
    assert "Traceback" not in response.text
    return error
