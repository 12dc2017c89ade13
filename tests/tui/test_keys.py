"""Pilot tests: each key reaches the backend, and the screen shows what happened."""

from __future__ import annotations

from tests.tui.harness import Pool, settle
from tui.screens.new_session import NewSessionScreen


async def test_new_session_key_creates_a_session(pool: Pool) -> None:
    app = pool.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        assert isinstance(app.screen, NewSessionScreen)
        await pilot.press(*"alice", "enter")
        await settle(pilot)
        sessions = pool.backend.pool.list()
        assert [s.user for s in sessions] == ["alice"]
        assert not isinstance(app.screen, NewSessionScreen)
        assert app.main is not None
        assert app.main.table.row_count == 1
