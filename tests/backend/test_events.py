"""The event bus: many subscribers, and a slow one never blocks the publisher."""

from __future__ import annotations

import asyncio

from backend.events import EventBus, EventKind


async def test_every_subscriber_sees_every_event_in_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    for i in range(5):
        bus.publish(EventKind.CREATED, f"e{i}", session_id=f"s{i}")
    for sub in (a, b):
        got = [sub.get_nowait() for _ in range(5)]
        assert [e.message for e in got if e] == [f"e{i}" for i in range(5)]
        assert sub.get_nowait() is None


async def test_a_slow_subscriber_loses_the_oldest_events_and_is_told_how_many() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=10)
    fast = bus.subscribe(maxsize=1000)
    for i in range(100):
        bus.publish(EventKind.LOG, f"line {i}")
    assert slow.dropped == 90 and fast.dropped == 0
    first = slow.get_nowait()
    assert first is not None and first.message == "line 90"


async def test_kind_filter_and_close_end_the_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe(kinds={EventKind.READY})
    received: list[str] = []

    async def consume() -> None:
        async for event in sub:
            received.append(event.message)

    task = asyncio.create_task(consume())
    bus.publish(EventKind.LOG, "ignored")
    bus.publish(EventKind.READY, "ready")
    await asyncio.sleep(0)
    sub.close()
    await asyncio.wait_for(task, 1)
    assert received == ["ready"]
    assert bus.subscriber_count == 0


async def test_recent_keeps_history_without_log_lines() -> None:
    bus = EventBus(history=3)
    for i in range(5):
        bus.publish(EventKind.READY, f"r{i}", session_id="s")
        bus.publish(EventKind.LOG, "noise", session_id="s")
    assert [e.message for e in bus.recent()] == ["r2", "r3", "r4"]
    assert [e.to_dict()["kind"] for e in bus.recent(1)] == ["ready"]
