"""Fixtures for backend tests: settings in a temporary state directory, embedded backends."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.config import Settings
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend


def free_port_range(size: int = 200) -> tuple[int, int]:
    """A port range that is free now, found by binding its first port."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + size < 65000:
            return start, start + size
    raise RuntimeError("no free port range")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(state_dir=tmp_path / "state")
    s.pool.refresh_interval = 3600
    s.pool.start_backoff = 0.01
    s.pool.stop_grace = 2.0
    s.tunnels.port_min, s.tunnels.port_max = free_port_range(400)
    return s


@pytest.fixture
async def memory_backend(settings: Settings) -> AsyncIterator[Backend]:
    """A started backend on the in-memory runtime (no processes), persisted to SQLite."""
    backend = Backend(settings, runtime=MemoryRuntime())
    backend.runtime._logs = backend.logs  # type: ignore[attr-defined]
    await backend.start()
    yield backend
    await backend.stop(stop_sessions=True)


class _LoginPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the name http.server wants)
        body = b"<!doctype html><title>login</title><p>welcome</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    """A page this test serves on 127.0.0.1, for a browser session to log in on."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LoginPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/login"
    server.shutdown()
    server.server_close()
