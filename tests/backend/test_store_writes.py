"""The store's write queue: ``flush`` means committed; reuse touches are coalesced."""

from __future__ import annotations

from pathlib import Path

from backend.models import Session
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
