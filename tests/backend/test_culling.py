"""Idle culling and the maximum age, by real activity: tunnel connections and bytes.

The local-runtime tests drive real workloads through their real tunnels; the culler's
rounds are called directly at instants of a clock the test moves, so every decision is
deterministic (the background loop is set to a far-off interval).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.events import EventKind
from backend.models import SessionState
from backend.pool_policy import format_duration
from backend.runtime.memory import MemoryRuntime, MemoryTunnel
from backend.service import Backend
from tests.backend.api.conftest import eventually
from tests.backend.conftest import free_port_range
from tests.backend.host_backend import crash_settings
from tests.backend.test_local_pool import pid_alive, workload_pids


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def policy_settings(tmp_path: Path) -> Settings:
    low, high = free_port_range(300)
    settings = crash_settings(tmp_path / "state", low, high)
    pool = settings.pool
    pool.idle_timeout = 60.0
    pool.activity_interval = 3600.0  # rounds are called by the test
    pool.idle_bytes_threshold = 1000
    return settings


@pytest.fixture
async def local_backend(policy_settings: Settings, clock: Clock) -> AsyncIterator[Backend]:
    backend = Backend(policy_settings)
    backend.pool.clock = clock
    await backend.start()
    yield backend
    await backend.stop(stop_sessions=True)
    assert workload_pids(policy_settings.state_dir) == set(), "a workload outlived its pool"


async def http_through(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def closed_everywhere(backend: Backend, session_id: str) -> None:
    """Wait until the relay has seen both sides of every connection close (the
    workload closes its side a moment after the client)."""
    record = backend.pool.record(session_id)
    assert record is not None and record.tunnel is not None
    tunnel = record.tunnel
    await eventually(lambda: tunnel.stats().active == 0)


def test_durations_read_as_people_write_them() -> None:
    assert [format_duration(s) for s in (5, 65, 3720, 3725, 90000)] == [
        "5s",
        "1m05s",
        "1h02m",
        "1h02m",
        "1d01h",
    ]


async def test_an_open_tunnel_connection_keeps_a_session_alive_and_idle_culls_it_after(
    local_backend: Backend, clock: Clock
) -> None:
    pool = local_backend.pool
    session = (await pool.acquire("ana")).session
    assert session.tunnel is not None and session.handle is not None
    pid = int(session.handle.ref)
    assert session.cull_at() == pytest.approx(clock.now + 60)
    reader, writer = await asyncio.open_connection("127.0.0.1", session.tunnel.port)
    clock.now += 100  # long past the idle timeout, but a connection is open
    assert local_backend.culler.round() == 0
    document = pool.get(session.session_id).to_dict(clock.now)
    assert document["idle_s"] == 0 and document["last_active_at"] == clock.now
    assert document["cull_at"] == clock.now + 60
    writer.close()
    await writer.wait_closed()
    await reader.read()
    await closed_everywhere(local_backend, session.session_id)
    clock.now += 59
    assert local_backend.culler.round() == 0, "idle 59 s of 60"
    with local_backend.bus.subscribe(kinds={EventKind.CULLED}) as events:
        clock.now += 2
        assert local_backend.culler.round() == 1
        event = await asyncio.wait_for(events.get(), 5)
    assert event is not None and event.session_id == session.session_id
    assert event.message.endswith("culled (idle 1m01s)")
    await pool.terminate(session.session_id)
    assert not pid_alive(pid) and pool.metrics.culled == 1


async def test_keepalive_traffic_below_the_threshold_is_not_activity_but_real_traffic_is(
    local_backend: Backend, clock: Clock
) -> None:
    pool = local_backend.pool
    session = (await pool.acquire("bo")).session
    assert session.tunnel is not None
    started = clock.now
    clock.now += 30
    assert b"200" in (await http_through(session.tunnel.port, "/keepalive")).split(b"\r\n")[0]
    await closed_everywhere(local_backend, session.session_id)
    local_backend.culler.round()
    assert session.idle_since == started, "a keepalive of a few hundred bytes is not use"
    clock.now += 10
    for _ in range(8):  # the page and its headers: well over 1,000 bytes in all
        await http_through(session.tunnel.port, "/")
    await closed_everywhere(local_backend, session.session_id)
    local_backend.culler.round()
    assert session.idle_since == clock.now
    clock.now += 59
    assert local_backend.culler.round() == 0
    assert session.state is SessionState.READY


async def test_an_acquire_is_activity_and_the_idle_shown_is_the_one_culling_uses(
    local_backend: Backend, clock: Clock
) -> None:
    pool = local_backend.pool
    first = (await pool.acquire("cy")).session
    clock.now += 50
    await pool.acquire("cy")
    clock.now += 50
    local_backend.culler.round()
    assert first.state is SessionState.READY
    from backend.operations import Operations

    (listed,) = [d for d in Operations(local_backend).list_sessions() if d["user"] == "cy"]
    assert listed["idle_s"] == 50 and listed["cull_at"] == clock.now + 10


# --------------------------------------------------------------------- memory runtime


@pytest.fixture
async def memory_pool(settings: Settings, clock: Clock) -> AsyncIterator[Backend]:
    pool = settings.pool
    pool.activity_interval = 3600.0
    pool.max_age, pool.max_age_grace = 100.0, 50.0
    demo = settings.templates["demo"]
    settings.templates["short"] = dataclasses.replace(
        demo, name="short", max_age=10.0, idle_timeout=5.0
    )
    backend = Backend(settings, runtime=MemoryRuntime())
    backend.pool.clock = clock
    await backend.start()
    yield backend
    await backend.stop(stop_sessions=True)


def tunnel_of(backend: Backend, session_id: str) -> MemoryTunnel:
    record = backend.pool.record(session_id)
    assert record is not None and isinstance(record.tunnel, MemoryTunnel)
    return record.tunnel


async def test_max_age_stops_an_idle_session_at_once_and_a_busy_one_after_the_grace(
    memory_pool: Backend, clock: Clock
) -> None:
    pool = memory_pool.pool
    idle = (await pool.acquire("ana")).session
    busy = (await pool.acquire("bo")).session
    tunnel_of(memory_pool, busy.session_id).active = 1
    clock.now += 99
    assert memory_pool.culler.round() == 0
    with memory_pool.bus.subscribe(kinds={EventKind.AGED_OUT}) as events:
        clock.now += 1
        assert memory_pool.culler.round() == 1
        event = await asyncio.wait_for(events.get(), 5)
        assert event is not None and event.session_id == idle.session_id
        assert "aged out (max age 1m40s, stopped while idle)" in event.message
        clock.now += 49
        assert memory_pool.culler.round() == 0 and busy.state is SessionState.READY
        clock.now += 1
        assert memory_pool.culler.round() == 1
        event = await asyncio.wait_for(events.get(), 5)
    assert event is not None and event.session_id == busy.session_id
    assert "still busy after the 50s grace" in event.message
    assert pool.metrics.aged_out == {"idle": 1, "grace": 1}


async def test_a_template_sets_its_own_idle_timeout_and_max_age(
    memory_pool: Backend, clock: Clock
) -> None:
    pool = memory_pool.pool
    short = (await pool.acquire("ana", "short")).session
    long = (await pool.acquire("ana", "demo")).session
    assert (short.idle_timeout, short.max_age) == (5.0, 10.0)
    assert (long.idle_timeout, long.max_age) == (None, 100.0)
    clock.now += 6
    assert memory_pool.culler.round() == 1
    assert short.state is SessionState.TERMINATING or short.state is SessionState.TERMINATED
    assert long.state is SessionState.READY


async def test_a_pinned_session_is_neither_culled_nor_aged_out(
    memory_pool: Backend, clock: Clock
) -> None:
    pool = memory_pool.pool
    session = (await pool.acquire("ana", "short")).session
    pool.pin(session.session_id)
    assert session.cull_at() is None
    clock.now += 10_000
    assert memory_pool.culler.round() == 0 and session.state is SessionState.READY
    pool.unpin(session.session_id)
    assert memory_pool.culler.round() == 1
