"""``serve_api``: uvicorn inside the caller's event loop, started and stopped as a task.

The TUI process hosts backend, API and UI in one loop, so the server must not own the
loop or the signals: ``EmbeddedServer`` turns off uvicorn's signal capture (the host
decides what Ctrl+C means) and serves on a socket bound beforehand
(``listen.bind_socket``), so a taken port raises ``OSError`` to the caller instead of
uvicorn's ``sys.exit``, and port 0 yields the real port at once. ``ApiServer.stop`` ends
the event streams first (they would otherwise keep uvicorn's graceful shutdown waiting
forever), then lets uvicorn close the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from backend.api.app import make_api
from backend.api.connections import connection_cap, guarded_protocol, raise_file_limit
from backend.api.listen import bind_socket, is_loopback
from backend.api.sse import SseHub
from backend.service import Backend

__all__ = ["ApiServer", "bind_socket", "is_loopback", "serve_api"]

log = logging.getLogger("podwarden.api")


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host and says when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """A running API server; ``await stop()`` ends it."""

    def __init__(self, server: EmbeddedServer, task: asyncio.Task[None], sock: socket.socket):
        self._server = server
        self._task = task
        name = sock.getsockname()
        self.host: str = name[0]
        self.port: int = name[1]

    @property
    def address(self) -> str:
        """``host:port`` as bound (``[::1]:5010`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def local_url(self) -> str:
        """A URL a client on this machine can use (a wildcard bind maps to loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def wait(self) -> None:
        """Return when the server task ends (it only ends on ``stop`` or a crash)."""
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        """End event streams, stop accepting, finish in-flight requests, close."""
        hub: SseHub = self._server.config.app.state.sse  # type: ignore[union-attr]
        hub.close()
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _http_impl() -> str:
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def guarded_http(impl: str, header_timeout: float, max_connections: int) -> type[Any]:
    """uvicorn's ``impl`` protocol class with the header timeout and connection cap."""
    base = uvicorn.config.import_from_string(uvicorn.config.HTTP_PROTOCOLS[impl])
    cap = connection_cap(max_connections, raise_file_limit())
    return guarded_protocol(base, header_timeout, cap)


async def serve_api(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 5010,
    *,
    token: str,
    sock: socket.socket | None = None,
    heartbeat: float = 15.0,
) -> ApiServer:
    """Start serving ``backend`` on ``host:port`` (or an already bound ``sock``) in the
    running loop; returns once the server accepts connections."""
    app = make_api(backend, token, heartbeat=heartbeat)
    if sock is None:
        sock = bind_socket(host, port)
    api = backend.settings.api
    config = uvicorn.Config(
        app,
        http=guarded_http(_http_impl(), api.header_timeout, api.max_connections),
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
    )
    server = EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(
        server.serve(sockets=[sock]), name="podwarden: api server"
    )
    listening = asyncio.ensure_future(server.listening.wait())
    await asyncio.wait({listening, task}, return_when=asyncio.FIRST_COMPLETED)
    if not server.listening.is_set():
        listening.cancel()
        sock.close()
        await task  # raises what stopped it
        raise RuntimeError("the API server stopped during start-up")
    return ApiServer(server, task, sock)
