"""``HttpClient`` against a real server: the same dicts as ``LocalClient``, the same errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.api.server import ApiServer
from backend.client import LocalClient, PodwardenClient
from backend.errors import (
    BackendUnreachable,
    CapacityError,
    InvalidRequest,
    SessionNotFound,
    StartError,
    Unauthorized,
    UnknownTemplate,
)
from backend.events import EventKind
from backend.http_client import HttpClient
from backend.runtime.base import WorkloadSpec
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend
from tests.backend.api.conftest import TOKEN, eventually


@pytest.fixture
async def remote(served: ApiServer) -> AsyncIterator[HttpClient]:
    client = HttpClient(served.url, TOKEN)
    yield client
    await client.close()


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and types, not the values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


async def test_same_shapes_as_the_local_client(remote: HttpClient, memory_backend: Backend) -> None:
    local = LocalClient(memory_backend)
    assert isinstance(remote, PodwardenClient)
    created = await remote.acquire("alice")
    assert created["is_new_session"] is True
    reused_remote = await remote.acquire("alice")
    reused_local = await local.acquire("alice")
    assert reused_remote["session_id"] == reused_local["session_id"] == created["session_id"]
    assert _shape(reused_remote) == _shape(reused_local)
    sid = created["session_id"]
    assert _shape(await remote.get_session(sid)) == _shape(await local.get_session(sid))
    assert _shape(await remote.list_sessions()) == _shape(await local.list_sessions())
    assert await remote.templates() == await local.templates()
    assert await remote.logs(sid, 10) == await local.logs(sid, 10)
    remote_events = await remote.recent_events(5)
    assert _shape(remote_events) == _shape(await local.recent_events(5))
    assert [e["seq"] for e in remote_events] == [e["seq"] for e in await local.recent_events(5)]
    remote_health = await remote.health()
    local_health = await local.health()
    remote_health.pop("uptime_s"), local_health.pop("uptime_s")
    assert remote_health == local_health
    deleted = await remote.delete_session(sid)
    assert deleted["session_id"] == sid and deleted["state"] in ("terminating", "terminated")
    assert remote.address.startswith("http://127.0.0.1:")
    assert remote.api_address is not None and remote.api_address.startswith("127.0.0.1:")


async def test_wait_false(remote: HttpClient, runtime: MemoryRuntime) -> None:
    runtime.ready_gate = asyncio.Event()
    started = await remote.acquire("bob", wait=False)
    assert started["state"] == "starting"
    runtime.ready_gate.set()


async def test_errors_come_back_as_their_classes(
    remote: HttpClient, runtime: MemoryRuntime, served: ApiServer
) -> None:
    with pytest.raises(SessionNotFound) as missing:
        await remote.get_session("ghost-demo-00000000")
    assert missing.value.session_id == "ghost-demo-00000000"
    assert missing.value.status == 404
    with pytest.raises(SessionNotFound):
        await remote.delete_session("ghost/../x")
    with pytest.raises(InvalidRequest) as invalid:
        await remote.acquire("")
    assert invalid.value.field == "user"
    with pytest.raises(UnknownTemplate) as unknown:
        await remote.acquire("u", "firefox")
    assert unknown.value.field == "template" and "firefox" in unknown.value.message
    runtime.fail_starts["demo"] = 10
    with pytest.raises(StartError, match="simulated start failure"):
        await remote.acquire("u")
    async with HttpClient(served.url, "wrong-token-wrong-token") as stranger:
        with pytest.raises(Unauthorized):
            await stranger.list_sessions()
        assert (await stranger.health())["status"] == "healthy"


async def test_capacity_error_carries_retry_after(
    remote: HttpClient, memory_backend: Backend
) -> None:
    memory_backend.settings.pool.max_sessions = 1
    memory_backend.settings.pool.when_full = "reject"
    await remote.acquire("a")
    with pytest.raises(CapacityError) as full:
        await remote.acquire("b")
    assert full.value.retry_after >= 1
    assert full.value.status == 503


async def test_unreachable_backend() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        async with HttpClient(f"http://127.0.0.1:{port}", TOKEN, timeout=2) as client:
            for call in (
                client.health(),
                client.list_sessions(),
                client.acquire("u"),
                client.get_session("x"),
                client.delete_session("x"),
                client.templates(),
                client.logs("x"),
                client.recent_events(),
                client.remove_orphan("x"),
            ):
                with pytest.raises(BackendUnreachable, match=str(port)):
                    await call
            with pytest.raises(BackendUnreachable):
                async for _ in client.events():
                    pass


async def test_event_stream(remote: HttpClient, memory_backend: Backend) -> None:
    before = memory_backend.bus.subscriber_count
    stream = remote.events()
    first = asyncio.ensure_future(stream.__anext__())
    # events published before the server subscribed would not be seen
    await eventually(lambda: memory_backend.bus.subscriber_count == before + 1)
    await remote.acquire("carol")
    event = await asyncio.wait_for(first, 5)
    assert event["kind"] == "created" and event["user"] == "carol"
    kinds = [event["kind"]]
    while "ready" not in kinds:
        kinds.append((await asyncio.wait_for(stream.__anext__(), 5))["kind"])
    await remote.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(stream.__anext__(), 5)


async def test_event_stream_reports_a_server_that_stops(memory_backend: Backend) -> None:
    from backend.api.server import serve_api

    server = await serve_api(memory_backend, "127.0.0.1", 0, token=TOKEN, heartbeat=60)
    before = memory_backend.bus.subscriber_count
    async with HttpClient(server.url, TOKEN) as client:
        stream = client.events()
        pending = asyncio.ensure_future(stream.__anext__())
        await eventually(lambda: memory_backend.bus.subscriber_count == before + 1)
        await server.stop()
        with pytest.raises(BackendUnreachable, match="ended the event stream"):
            await asyncio.wait_for(pending, 5)


async def _stray(backend: Backend, runtime: MemoryRuntime, session_id: str) -> None:
    """Start a workload behind the pool's back and let the drift check find it."""
    template = backend.settings.templates[backend.settings.default_template]
    spec = WorkloadSpec(session_id, "mallory", template, Path("/nonexistent"))
    await runtime.start(spec, lambda phase: None)
    await backend.check_drift()
    assert session_id in backend.orphans


async def test_remove_orphan_remote(
    remote: HttpClient, memory_backend: Backend, runtime: MemoryRuntime
) -> None:
    await _remove_orphan_through(remote, "mallory-demo-0000000a", memory_backend, runtime)


async def test_remove_orphan_local_answers_the_same_way(
    memory_backend: Backend, runtime: MemoryRuntime
) -> None:
    local = LocalClient(memory_backend)
    await _remove_orphan_through(local, "mallory-demo-0000000b", memory_backend, runtime)


async def _remove_orphan_through(
    client: HttpClient | LocalClient, sid: str, memory_backend: Backend, runtime: MemoryRuntime
) -> None:
    """Embedded and remote alike: the removal begins, and an event says when it is done."""
    await _stray(memory_backend, runtime, sid)
    assert (await client.health())["orphans"] == [sid]
    with memory_backend.bus.subscribe(kinds={EventKind.ORPHAN_REMOVED}) as removed:
        await client.remove_orphan(sid)  # the removal has begun (202 over HTTP)
        event = await asyncio.wait_for(removed.get(), 5)
        assert event is not None and event.session_id == sid
    assert sid not in runtime.workloads
    assert (await client.health())["orphans"] == []
    with pytest.raises(SessionNotFound) as missing:
        await client.remove_orphan(sid)
    assert missing.value.session_id == sid and missing.value.status == 404
