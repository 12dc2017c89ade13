"""Fixtures for backend tests: settings in a temporary state directory, embedded backends."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
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
