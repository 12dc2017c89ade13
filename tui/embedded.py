"""The main job's backend: ``Backend`` plus the HTTP API, living in the app's event loop.

The app calls ``start`` once its loop runs and ``stop`` on the way out, so the console,
the API and the pool share one loop and scripts can acquire sessions over the API while
the operator watches. Stopping leaves sessions running: the next start re-adopts them.
The client's ``api_address`` is read from the server once it is bound, which also
covers ``--port 0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
from pathlib import Path
from typing import Any

from backend.api.listen import ADDRESS_FILE, bind_socket
from backend.client import LocalClient
from backend.config import Settings
from backend.service import Backend

__all__ = ["EmbeddedBackend", "bind_socket"]


class _Client(LocalClient):
    """``LocalClient`` that learns the API address once the server is listening."""

    def __init__(self, backend: Backend, owner: EmbeddedBackend) -> None:
        super().__init__(backend)
        self._owner = owner

    @property
    def api_address(self) -> str | None:
        server = self._owner.server
        return server.address if server is not None else None


class EmbeddedBackend:
    """Backend and API server, started and stopped by the console (``tui.app.Lifecycle``)."""

    def __init__(self, settings: Settings, token: str, sock: socket.socket) -> None:
        self.settings = settings
        self._token = token
        self._sock: socket.socket | None = sock
        self.backend = Backend(settings)
        self.client = _Client(self.backend, self)
        self.server: Any = None
        self._started = False
        self._address_file = Path(settings.state_dir) / ADDRESS_FILE
        # Backend warnings would otherwise be printed over the screen.
        logging.getLogger("podwarden").propagate = False
        logging.getLogger("podwarden").addHandler(logging.NullHandler())

    async def start(self) -> None:
        """Recover and start the pool, then serve the API on the socket bound earlier."""
        try:
            # FastAPI and uvicorn take ~0.4 s to import: do it in a thread, so the first
            # screen is already up and keeps answering keys meanwhile.
            importing = asyncio.ensure_future(
                asyncio.to_thread(importlib.import_module, "backend.api.server")
            )
            try:
                await self.backend.start()
            finally:
                server = await importing
            self._started = True
            self.server = await server.serve_api(self.backend, token=self._token, sock=self._sock)
            self._sock = None
        except BaseException:
            if self._sock is not None:
                self._sock.close()
            raise
        with contextlib.suppress(OSError):
            self._address_file.write_text(self.server.local_url + "\n", encoding="utf-8")

    def api_clients(self) -> int:
        """HTTP connections open to the API now (0 when unknown)."""
        inner = getattr(self.server, "_server", None)
        state = getattr(inner, "server_state", None)
        return len(getattr(state, "connections", ()))

    async def stop(self) -> None:
        """Stop the API, then the backend; workloads keep running for re-adoption."""
        if self.server is not None:
            await self.server.stop()
            self.server = None
            self._address_file.unlink(missing_ok=True)
        if self._started:
            self._started = False
            await self.backend.stop()
