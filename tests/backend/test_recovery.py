"""Restart with workloads alive: re-adoption from the store, and cleanup of the rest."""

from __future__ import annotations

import sqlite3

from backend.config import Settings
from backend.events import EventKind
from backend.models import SessionState
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend


async def started(settings: Settings, runtime: MemoryRuntime) -> Backend:
    backend = Backend(settings, runtime=runtime)
    await backend.start()
    return backend


async def test_live_sessions_come_back_with_their_ids_ports_and_reuse(
    settings: Settings,
) -> None:
    runtime = MemoryRuntime()  # outlives the backend, as processes outlive a crash
    first = await started(settings, runtime)
    a = await first.pool.acquire("jfernandez")
    b = await first.pool.acquire("Gustavoa")
    port_a = a.session.tunnel.port if a.session.tunnel else 0
    await first.stop()
    assert len(runtime.workloads) == 2, "stopping the backend leaves workloads running"

    second = await started(settings, runtime)
    try:
        assert second.recovery is not None
        assert sorted(second.recovery.adopted) == sorted(
            [a.session.session_id, b.session.session_id]
        )
        again = await second.pool.acquire("jfernandez")
        assert again.session.session_id == a.session.session_id
        assert again.is_new_session is False
        assert again.session.tunnel is not None and again.session.tunnel.port == port_a
        assert again.session.use_count == 2
        assert second.health().session_capacity == "2/10"
    finally:
        await second.stop(stop_sessions=True)
    assert runtime.workloads == {}


async def test_unknown_workloads_are_adopted_and_vanished_ones_are_marked(
    settings: Settings,
) -> None:
    runtime = MemoryRuntime()
    first = await started(settings, runtime)
    kept = await first.pool.acquire("kept")
    gone = await first.pool.acquire("gone")
    await first.stop()
    del runtime.workloads[gone.session.session_id]  # vanished while we were down
    with sqlite3.connect(settings.state_dir / "podwarden.db") as db:  # never written
        db.execute("DELETE FROM sessions WHERE session_id = ?", (kept.session.session_id,))

    second = await started(settings, runtime)
    try:
        recovery = second.recovery
        assert recovery is not None
        assert recovery.adopted == [kept.session.session_id]
        assert recovery.vanished == [gone.session.session_id]
        vanished = second.pool.get(gone.session.session_id)
        assert vanished.state is SessionState.FAILED
        assert "vanished" in (vanished.last_error or "")
        kinds = [e.kind for e in second.bus.recent()]
        assert EventKind.ADOPTED in kinds and EventKind.VANISHED in kinds
    finally:
        await second.stop(stop_sessions=True)


async def test_workloads_beyond_capacity_after_restart_are_stopped(settings: Settings) -> None:
    runtime = MemoryRuntime()
    first = await started(settings, runtime)
    for i in range(4):
        await first.pool.acquire(f"u{i}")
    await first.stop()
    settings.pool.max_sessions = 2
    second = await started(settings, runtime)
    try:
        assert second.recovery is not None
        assert len(second.recovery.adopted) == 2 and len(second.recovery.stopped) == 2
        assert {s.user for s in second.pool.list() if s.state.is_live} == {"u2", "u3"}
        assert len(runtime.workloads) == 2
    finally:
        await second.stop(stop_sessions=True)


async def test_credentials_never_reach_the_store_or_events(settings: Settings) -> None:
    secret = "s3cr3t-taffie-VALUE"
    runtime = MemoryRuntime()
    backend = await started(settings, runtime)
    try:
        await backend.pool.acquire("jfernandez", credentials={"PASSWORD": secret})
        await backend.pool.acquire("jfernandez")
        assert backend.store is not None
        await backend.store.flush()
        events = [str(e.to_dict()) for e in backend.bus.recent(500)]
    finally:
        await backend.stop(stop_sessions=True)
    assert not any(secret in e for e in events)
    for path in settings.state_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
