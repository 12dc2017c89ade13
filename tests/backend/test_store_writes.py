"""The store's write queue: ``flush`` means committed; reuse touches are coalesced."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backend.models import Session
from backend.service import Backend
from backend.store import Store


async def test_flush_returns_once_the_writes_are_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "podwarden.db")
    store.open()
    try:
        for i in range(50):
            store.save(Session(f"u{i}-demo-0000000{i % 10}", f"u{i}", "demo"))
            await store.flush()
            # another connection (recovery's) sees the row at once
            assert len(store.load_sessions()) == i + 1
    finally:
        store.close()


async def test_touches_are_coalesced_and_never_resurrect_a_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "podwarden.db")
    store.open()
    try:
        a = Session("a-demo-00000001", "a", "demo")
        b = Session("b-demo-00000002", "b", "demo")
        store.save(a)
        store.save(b)
        for _ in range(100):
            a.last_used_at += 1
            a.use_count += 1
            store.touch(a)
        # a hundred touches of one session wait as one row in one queued write
        assert len(store._touches) <= 1
        store.delete(b.session_id)
        b.use_count = 99
        store.touch(b)  # after the delete: an UPDATE of nothing
        await store.flush()
        rows = {r.session_id: r for r in store.load_sessions()}
        assert set(rows) == {a.session_id}
        assert rows[a.session_id].use_count == a.use_count == 101
        assert rows[a.session_id].last_used_at == a.last_used_at
    finally:
        store.close()


async def test_reuses_are_not_persisted_as_events(memory_backend: Backend) -> None:
    for _ in range(3):
        await memory_backend.pool.acquire("u")
    assert memory_backend.store is not None
    await asyncio.sleep(0)  # let the event-store task take what was published
    await memory_backend.store.flush()
    kinds = [e["kind"] for e in memory_backend.store.recent_events()]
    assert "ready" in kinds and "reused" not in kinds
