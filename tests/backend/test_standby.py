"""Warm standby: ready, unclaimed workloads that a new user's first acquire claims.

Local-runtime tests use real demo workloads with a real login delay, so a claim that
quietly started cold would take at least that long and be caught.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.events import EventKind, Subscription
from backend.models import SessionState
from backend.operations import Operations
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend
from tests.backend.conftest import free_port_range
from tests.backend.host_backend import crash_settings
from tests.backend.test_local_pool import http_get, pid_alive, workload_pids

LOGIN = 1.0
"""Seconds the demo pretends to log in: a cold start takes at least this long."""


async def standby_ready(events: Subscription, backend: Backend, count: int = 1) -> list[str]:
    """Wait until ``count`` standby sessions are ready; their ids."""
    pool = backend.pool
    while True:
        ready = [s.session_id for s in pool.standby_sessions() if s.state is SessionState.READY]
        if len(ready) >= count:
            return ready
        await asyncio.wait_for(events.get(), 10)


@pytest.fixture
def standby_settings(tmp_path: Path) -> Settings:
    low, high = free_port_range(300)
    settings = crash_settings(tmp_path / "state", low, high)
    demo = settings.templates["demo"]
    demo.login_delay, demo.standby = LOGIN, 1
    settings.pool.max_sessions = 3
    return settings


@pytest.fixture
async def started(standby_settings: Settings) -> AsyncIterator[tuple[Backend, Subscription]]:
    backend = Backend(standby_settings)
    events = backend.bus.subscribe(kinds={EventKind.READY, EventKind.TERMINATING})
    await backend.start()
    yield backend, events
    events.close()
    await backend.stop(stop_sessions=True)
    assert workload_pids(standby_settings.state_dir) == set(), "a workload outlived its pool"


async def test_a_new_user_claims_the_warm_standby_and_it_is_refilled(
    started: tuple[Backend, Subscription],
) -> None:
    backend, events = started
    pool = backend.pool
    (standby_id,) = await standby_ready(events, backend)
    standby = pool.get(standby_id)
    assert standby.handle is not None
    pid = int(standby.handle.ref)
    health = backend.health()
    assert health.standby == 1 and health.active_sessions == 1
    (document,) = Operations(backend).list_sessions()
    assert document["standby"] is True and document["user"] == "" and document["cull_at"] is None

    with backend.bus.subscribe(kinds={EventKind.STANDBY_CLAIMED}) as claims:
        result = await pool.acquire("ana")
        claimed = await asyncio.wait_for(claims.get(), 5)
    session = result.session
    assert result.is_new_session is True
    assert result.took_ms < LOGIN * 1000 / 2, "a claim, not a cold start behind a login"
    assert session.session_id.startswith("ana-demo-") and session.user == "ana"
    assert session.handle is not None and int(session.handle.ref) == pid
    assert not session.standby and session.state is SessionState.READY
    assert claimed is not None and claimed.data["standby_id"] == standby_id
    assert session.tunnel is not None
    status, body = await http_get(session.tunnel.port, "/whoami")
    whoami = json.loads(body)
    assert status == 200 and whoami["user"] == "ana" and whoami["claimed"] is True
    assert whoami["session_id"] == session.session_id
    meta_file = Path(session.handle.extra["rundir"]) / "workload.json"
    meta = json.loads(meta_file.read_text())
    assert (meta["session_id"], meta["user"]) == (session.session_id, "ana")
    # The drift check's scan sees the process still carrying the standby's id in its
    # environment: it is the claimed session's workload, not an orphan to record anew.
    owned = {w.session_id for w in await backend.runtime.list_owned()}
    assert session.session_id in owned and standby_id not in owned
    assert json.loads(meta_file.read_text())["session_id"] == session.session_id

    again = await pool.acquire("ana")
    assert again.session is session and again.is_new_session is False
    refill = await standby_ready(events, backend)
    assert refill != [standby_id] and pool.metrics.standby["claimed"] == 1
    assert backend.health().standby == 1 and backend.health().active_sessions == 2


async def test_credentials_start_cold_unless_the_template_reads_them_from_a_file(
    started: tuple[Backend, Subscription],
) -> None:
    backend, events = started
    pool = backend.pool
    (standby_id,) = await standby_ready(events, backend)
    cold = await pool.acquire("bo", credentials={"API_KEY": "k-1"})
    assert cold.took_ms >= LOGIN * 1000, "credentials in the environment need a fresh start"
    assert pool.get(standby_id).standby and pool.get(standby_id).state is SessionState.READY

    backend.settings.templates["demo"].credentials_file = "secrets/credentials.json"
    warm = await pool.acquire("cy", credentials={"API_KEY": "k-2", "TOKEN": "t-2"})
    assert warm.took_ms < LOGIN * 1000 / 2
    handle = warm.session.handle
    assert handle is not None and warm.session.session_id.startswith("cy-demo-")
    written = Path(handle.extra["workdir"]) / "secrets" / "credentials.json"
    assert json.loads(written.read_text()) == {"API_KEY": "k-2", "TOKEN": "t-2"}
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert warm.session.tunnel is not None
    _, body = await http_get(warm.session.tunnel.port, "/whoami")
    assert json.loads(body)["credentials"] == ["API_KEY", "TOKEN"]


async def test_a_standby_killed_just_before_the_claim_is_never_handed_out(
    started: tuple[Backend, Subscription],
) -> None:
    backend, events = started
    pool = backend.pool
    (standby_id,) = await standby_ready(events, backend)
    handle = pool.get(standby_id).handle
    assert handle is not None
    dead = int(handle.ref)
    os.kill(dead, signal.SIGKILL)
    result = await pool.acquire("di")
    assert result.is_new_session is True and result.session.state is SessionState.READY
    assert result.session.handle is not None and int(result.session.handle.ref) != dead
    assert result.session.tunnel is not None
    status, body = await http_get(result.session.tunnel.port, "/whoami")
    assert status == 200 and json.loads(body)["user"] == "di"
    assert not pid_alive(dead)


async def test_standby_workloads_from_before_a_restart_are_re_adopted_not_replaced(
    standby_settings: Settings,
) -> None:
    first = Backend(standby_settings)
    events = first.bus.subscribe(kinds={EventKind.READY})
    await first.start()
    await standby_ready(events, first)
    kept = (await first.pool.acquire("ana")).session.session_id
    (spare,) = await standby_ready(events, first)
    spare_pid = int(first.pool.get(spare).handle.ref)  # type: ignore[union-attr]
    await first.stop()
    events.close()
    second = Backend(standby_settings)
    try:
        await second.start()
        assert second.recovery is not None
        assert {kept, spare} <= set(second.recovery.adopted)
        assert second.pool.get(kept).state is SessionState.READY
        assert [s.session_id for s in second.pool.standby_sessions()] == [spare]
        assert second.pool.get(spare).state is SessionState.READY and pid_alive(spare_pid)
        assert second.pool.metrics.standby["refilled"] == 0
        claimed = await second.pool.acquire("bo")
        assert claimed.is_new_session and claimed.took_ms < LOGIN * 1000
        assert int(claimed.session.handle.ref) == spare_pid  # type: ignore[union-attr]
        assert claimed.session.tunnel is not None
        status, body = await http_get(claimed.session.tunnel.port, "/whoami")
        assert status == 200 and json.loads(body)["user"] == "bo"
    finally:
        await second.stop(stop_sessions=True)
    assert workload_pids(standby_settings.state_dir) == set()


async def test_standbys_beyond_the_configured_count_are_stopped_at_restart(
    standby_settings: Settings,
) -> None:
    first = Backend(standby_settings)
    events = first.bus.subscribe(kinds={EventKind.READY})
    await first.start()
    (spare,) = await standby_ready(events, first)
    spare_pid = int(first.pool.get(spare).handle.ref)  # type: ignore[union-attr]
    await first.stop()
    events.close()
    standby_settings.templates["demo"].standby = 0
    second = Backend(standby_settings)
    try:
        await second.start()
        assert second.recovery is not None and spare in second.recovery.stopped
        assert second.pool.standby_sessions() == [] and not pid_alive(spare_pid)
        removed = [e for e in second.bus.recent(50) if e.kind is EventKind.ORPHAN_REMOVED]
        assert any("more standbys than demo's standby = 0" in e.message for e in removed)
    finally:
        await second.stop(stop_sessions=True)
    assert workload_pids(standby_settings.state_dir) == set()


# --------------------------------------------------------------------- capacity


@pytest.fixture
async def small_pool(settings: Settings) -> AsyncIterator[Backend]:
    settings.pool.max_sessions = 2
    settings.templates["demo"].standby = 1
    settings.templates["alt"] = dataclasses.replace(settings.templates["demo"], name="alt")
    settings.templates["alt"].standby = 0
    backend = Backend(settings, runtime=MemoryRuntime())
    await backend.start()
    yield backend
    await backend.stop(stop_sessions=True)


async def settle(backend: Backend) -> None:
    """Let the standby keeper and background starts and stops run."""
    pool = backend.pool
    for _ in range(20):
        await asyncio.sleep(0)
        records = [pool.record(s.session_id) for s in pool.list()]
        pending = [r.flight.future for r in records if r and r.flight]
        stops = [r.stop_task for r in records if r and r.stop_task]
        if pending or stops:
            await asyncio.gather(*pending, *stops, return_exceptions=True)


@pytest.mark.parametrize("when_full", ["evict-lru", "queue", "reject"])
async def test_a_standby_gives_its_slot_to_a_user_and_never_takes_a_users(
    small_pool: Backend, when_full: str
) -> None:
    pool = small_pool.pool
    small_pool.settings.pool.when_full = when_full
    await settle(small_pool)
    assert len(pool.standby_sessions()) == 1
    ana = (await pool.acquire("ana")).session  # claims the standby
    await settle(small_pool)
    (spare,) = pool.standby_sessions()  # refilled into the free slot
    assert pool.active_count == 2
    bo = (await pool.acquire("bo", "alt")).session  # full: the standby yields, ana stays
    await settle(small_pool)
    assert ana.state is SessionState.READY and bo.state is SessionState.READY
    assert spare.state in (SessionState.TERMINATING, SessionState.TERMINATED)
    assert pool.standby_sessions() == [] and pool.metrics.standby_yielded == 1
    assert pool.active_count == 2, "no standby started without a free slot"
    await pool.terminate(bo.session_id)
    await settle(small_pool)
    assert len(pool.standby_sessions()) == 1, "refilled once a slot was free"


async def test_a_dead_standby_falls_back_to_a_cold_start(small_pool: Backend) -> None:
    pool = small_pool.pool
    runtime = small_pool.runtime
    assert isinstance(runtime, MemoryRuntime)
    await settle(small_pool)
    (standby,) = pool.standby_sessions()
    runtime.workloads[standby.session_id].alive = False  # died without a word
    result = await pool.acquire("ana")
    assert result.is_new_session is True and result.session.state is SessionState.READY
    assert runtime.calls.get("claim") == 1 and pool.metrics.standby["fallback"] == 1
    assert result.session.session_id in runtime.workloads
    await settle(small_pool)
    assert all(s.state.is_live for s in pool.standby_sessions())


async def test_standby_is_not_idle_culled_and_drain_stops_refilling(small_pool: Backend) -> None:
    pool = small_pool.pool
    now = [10_000.0]
    pool.clock = lambda: now[0]
    small_pool.settings.pool.idle_timeout = 5.0
    await settle(small_pool)
    (standby,) = pool.standby_sessions()
    standby.idle_timeout = 5.0
    now[0] += 100
    assert small_pool.culler.round() == 0 and standby.state is SessionState.READY
    pool.set_drain(True)
    await pool.terminate(standby.session_id)
    await settle(small_pool)
    assert pool.standby_sessions() == [], "no refill while drained"
    pool.set_drain(False)
    await settle(small_pool)
    assert len(pool.standby_sessions()) == 1


async def test_a_template_whose_standby_fails_is_not_restarted_in_a_loop(
    small_pool: Backend,
) -> None:
    pool = small_pool.pool
    runtime = small_pool.runtime
    assert isinstance(runtime, MemoryRuntime)
    await settle(small_pool)
    (standby,) = pool.standby_sessions()
    now = [pool.clock()]
    pool.clock = lambda: now[0]
    runtime.fail_starts["demo"] = 100
    small_pool.settings.pool.start_attempts = 1
    await pool.terminate(standby.session_id)
    await settle(small_pool)
    failed = [s for s in pool.list() if s.standby and s.state is SessionState.FAILED]
    assert len(failed) == 1 and small_pool.standby.refill() == 0
    assert small_pool.health().users == 0, "a standby is nobody's session"
    runtime.fail_starts["demo"] = 0
    now[0] += 31
    assert small_pool.standby.refill() == 1
