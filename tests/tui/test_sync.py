"""The backend-to-UI path: coalesced events, rows updated in place, a lost remote link."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.message import Message

from tests.tui.harness import FlakyClient, Pool, settle
from tui.app import make_app
from tui.messages import EventsArrived


async def test_a_burst_of_events_costs_few_handler_calls(pool: Pool) -> None:
    seen: list[Message] = []
    app = pool.app()
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        await settle(pilot)
        for i in range(2000):
            pool.backend.bus.publish(_kind(), f"e{i}")
        await settle(pilot)
        handled = sum(isinstance(m, EventsArrived) for m in seen)
        assert handled < 50, handled
        assert app.main is not None
        assert app.main.log_panel.texts()[-1].endswith("e1999")


def _kind() -> Any:
    from backend.events import EventKind

    return EventKind.REFRESH_OK


async def test_rows_update_in_place_and_the_cursor_stays(pool: Pool) -> None:
    pool.backend.settings.pool.max_sessions = 100
    app = pool.app()
    async with app.run_test(size=(90, 24)) as pilot:  # wide enough for USES
        await settle(pilot)
        for i in range(30):
            await pool.acquire(f"u{i:02d}")
        await settle(pilot)
        assert app.main is not None
        table = app.main.table
        table.move_cursor(row=12)
        chosen = table.selected_id
        rows_before = dict(table.rows)
        for i in range(30, 40):
            await pool.acquire(f"u{i:02d}")
        await pool.acquire("u03")  # a reuse: one cell changes
        pool.backend.pool.delete("u05-demo-00000006")
        await settle(pilot)
        assert table.selected_id == chosen
        assert table.row_count == 39  # the ended one left (ended rows are hidden)
        for key, row in rows_before.items():
            if key != "u05-demo-00000006":
                assert table.rows[key] is row  # the same row objects: updated, not re-added
        assert table.get_cell("u03-demo-00000004", "uses").plain == "2"
        await pilot.press("a")
        assert table.get_cell("u05-demo-00000006", "state").plain == "· ended"


async def test_a_lost_link_shows_stale_and_reconnects(pool: Pool) -> None:
    pool.tui.reconnect_backoff = (0.0,)
    flaky = FlakyClient(pool.client)
    app = make_app(flaky, pool.tui, pool.life)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.main is not None
        status = app.main.status
        assert status.link == "live"
        assert status.api_address == "backend.test:5010"
        flaky.down = True
        flaky.connected.clear()
        await pool.acquire("alice")  # an event: the stream notices the link is down
        await asyncio.wait_for(flaky.lost.wait(), 5)
        while status.link not in ("stale", "connecting"):
            await pilot.pause()
        assert "Link lost" in "\n".join(app.main.log_panel.texts())
        flaky.down = False
        await asyncio.wait_for(flaky.connected.wait(), 5)
        await settle(pilot)
        assert status.link == "live"
        assert flaky.connects >= 2
        assert app.main.table.row_count == 1  # re-read everything after the reconnect
