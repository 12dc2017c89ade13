"""The six cases the pool-core issue found by using the product as a new user would.

Each failed on the pool before it had one record per session and a FIFO queue served on
every event: LRU order after a restart, a burst under ``evict-lru``, field report 002's
five sessions for one user, a hung workload handed out, credentials dropped silently on
a recycle after a restart, and a tunnel that moved port without a word.
"""

from __future__ import annotations

import asyncio
import os
import signal

from backend.config import Settings
from backend.events import EventKind
from backend.models import SessionState
from backend.runtime.memory import MemoryRuntime
from backend.runtime.procs import read_proc
from backend.service import Backend
from tests.backend.test_local_pool import local_backend, local_settings  # noqa: F401


async def started(settings: Settings, runtime: MemoryRuntime) -> Backend:
    backend = Backend(settings, runtime=runtime)
    backend.runtime._logs = backend.logs  # type: ignore[attr-defined]
    await backend.start()
    return backend


async def test_lru_order_survives_a_restart(settings: Settings) -> None:
    settings.pool.max_sessions = 3
    runtime = MemoryRuntime()
    first = await started(settings, runtime)
    ids = {u: (await first.pool.acquire(u)).session.session_id for u in ("a", "b", "c")}
    await first.pool.acquire("a")  # a is now the most recently used; b the least
    await first.stop()

    second = await started(settings, runtime)
    try:
        with second.bus.subscribe(kinds={EventKind.EVICTED}) as evicted:
            await second.pool.acquire("d")
            event = evicted.get_nowait()
        assert event is not None and event.session_id == ids["b"]
        assert "least recently used" in event.message
        assert second.pool.get(ids["a"]).state is SessionState.READY
        assert second.pool.get(ids["c"]).state is SessionState.READY
    finally:
        await second.stop(stop_sessions=True)


async def test_a_burst_on_a_full_pool_is_served_in_waves_first_come_first_served(
    memory_backend: Backend,
) -> None:
    settings = memory_backend.settings.pool
    settings.max_sessions, settings.queue_timeout = 5, 10.0
    runtime = memory_backend.runtime
    assert isinstance(runtime, MemoryRuntime)
    runtime.start_delay = 0.05
    pool = memory_backend.pool
    order: list[str] = []
    with memory_backend.bus.subscribe(kinds={EventKind.CREATED}) as created:
        tasks = []
        for i in range(30):
            tasks.append(asyncio.create_task(pool.acquire(f"user{i:02}")))
            await asyncio.sleep(0)  # arrive one after another, in this order
        results = await asyncio.wait_for(asyncio.gather(*tasks), 8)
        while (event := created.get_nowait()) is not None:
            order.append(event.user or "")
    assert all(r.session.state in (SessionState.READY, SessionState.TERMINATED) for r in results)
    assert all(r.is_new_session for r in results)
    assert order == [f"user{i:02}" for i in range(30)], "waiters are served in arrival order"
    assert pool.metrics.acquires["refused"] == 0 and pool.metrics.evictions == 25
    assert pool.active_count == 5 and pool.queued == 0


async def test_field_report_002_five_sessions_for_one_user_with_the_defaults(
    memory_backend: Backend,
) -> None:
    pool = memory_backend.pool
    results = await asyncio.wait_for(
        asyncio.gather(*(pool.acquire("admin", reuse=False) for _ in range(5))), 5
    )
    assert len({r.session.session_id for r in results}) == 5
    assert all(r.session.state is SessionState.READY for r in results), "all five stay ready"
    assert pool.user_count("admin") == 5 and pool.metrics.evictions == 0
    assert memory_backend.health().session_capacity == "5/10"


async def test_a_hung_workload_is_never_handed_out_as_ready(local_backend: Backend) -> None:  # noqa: F811
    pool = local_backend.pool
    first = await pool.acquire("hung")
    assert first.session.handle is not None
    pid = int(first.session.handle.ref)
    now = pool.clock()
    pool.clock = lambda: now  # the liveness check just ran
    assert not (await pool.acquire("hung")).is_new_session
    os.kill(pid, signal.SIGSTOP)
    try:
        await _until_stopped(pid)
        pool.clock = lambda: now + pool.settings.pool.liveness_interval + 1
        with local_backend.bus.subscribe(kinds={EventKind.LIVENESS_FAILED}) as failed:
            again = await asyncio.wait_for(pool.acquire("hung"), 30)
            event = failed.get_nowait()
        assert event is not None and "stopped" in event.message
        assert again.session.session_id == first.session.session_id
        assert again.is_new_session, "a recycled workload is new to its caller"
        assert again.session.state is SessionState.READY
        assert again.session.handle is not None and int(again.session.handle.ref) != pid
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


async def _until_stopped(pid: int) -> None:
    """SIGSTOP takes effect when the process next runs; on a busy machine that is later."""
    async with asyncio.timeout(10):
        while (info := read_proc(pid)) is None or info.state not in ("T", "t"):
            await asyncio.sleep(0.01)


async def test_a_recycle_without_its_credentials_says_so(settings: Settings) -> None:
    runtime = MemoryRuntime()
    first = await started(settings, runtime)
    secret = {"API_KEY": "s3cret"}
    sid = (await first.pool.acquire("ana", credentials=secret)).session.session_id
    await first.stop()

    second = await started(settings, runtime)
    try:
        pool = second.pool
        runtime.kill(sid)  # the workload dies after the restart: it is recycled
        again = await pool.acquire("ana")
        assert again.session.session_id == sid and again.is_new_session
        assert "without its credentials (API_KEY)" in (again.session.last_error or "")
        record = pool.record(sid)
        assert record is not None and record.credentials == {}

        supplied = await pool.acquire("ana", credentials=secret)
        assert not supplied.is_new_session and record.credentials == secret
        runtime.kill(sid)
        recycled = await pool.acquire("ana")
        assert recycled.is_new_session
        assert "without its credentials" not in (recycled.session.last_error or "")
        assert record.credentials == secret
    finally:
        await second.stop(stop_sessions=True)


async def test_a_tunnel_that_comes_back_on_another_port_says_so(settings: Settings) -> None:
    runtime = MemoryRuntime()
    first = await started(settings, runtime)
    session = (await first.pool.acquire("tom")).session
    assert session.tunnel is not None
    old_port = session.tunnel.port
    await first.stop()

    second = Backend(settings, runtime=runtime)
    second.ports.allocate(old_port)  # someone else holds the old port now
    with second.bus.subscribe(kinds={EventKind.TUNNEL_MOVED}) as moved:
        await second.start()
        event = moved.get_nowait()
    try:
        again = second.pool.get(session.session_id)
        assert again.tunnel is not None and again.tunnel.port != old_port
        assert event is not None and event.session_id == session.session_id
        moved_to = again.tunnel.port
        assert {k: event.data[k] for k in ("old_port", "new_port")} == {
            "old_port": old_port,
            "new_port": moved_to,
        }
        assert event.data["session"]["tunnel"]["port"] == moved_to
        assert f"from port {old_port} to {again.tunnel.port}" in event.message
    finally:
        await second.stop(stop_sessions=True)
