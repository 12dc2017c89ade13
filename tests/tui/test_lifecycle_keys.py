"""Pilot tests of the lifecycle keys: pin (P), drain (D), bulk evict (E), and what the
table, the detail pane and the header show of pins, culling, standby and a drain.

Like ``test_keys``: the real app over an in-process backend on the memory runtime, with
the fake clock; every wait is for the console's workers (``settle``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from backend.errors import Draining
from backend.models import SessionState
from tests.tui.harness import Pool, settle
from tui.app import PodwardenApp
from tui.format import duration
from tui.screens.bulk_evict import BulkEvictScreen
from tui.screens.drain import DrainScreen, UndrainScreen


def main_of(app: PodwardenApp) -> Any:
    assert app.main is not None
    return app.main


def detail(app: PodwardenApp) -> str:
    return str(main_of(app).detail._last)


def notes(app: PodwardenApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def body(app: PodwardenApp) -> str:
    return str(app.screen.query_one("Static").render())


def log_text(app: PodwardenApp) -> str:
    return "\n".join(main_of(app).log_panel.texts())


async def seeded(pilot: Any, pool: Pool, *users: str) -> list[str]:
    await settle(pilot)
    ids = [(await pool.acquire(user, reuse=False))["session_id"] for user in users]
    await settle(pilot)
    return ids


async def with_standby(pool: Pool, count: int) -> None:
    """``count`` standby workloads of ``demo``, started and ready."""
    settings = pool.backend.settings
    settings.templates["demo"] = replace(settings.templates["demo"], standby=count)
    pool.backend.standby.refill()
    for _ in range(100):
        standby = pool.backend.pool.standby_sessions("demo")
        if len(standby) == count and all(s.state is SessionState.READY for s in standby):
            return
        await asyncio.sleep(0)
    raise AssertionError("the standby workloads did not become ready")


class TestPin:
    async def test_P_pins_and_unpins_the_selected_session(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pilot.press("P")
            await settle(pilot)
            assert pool.backend.pool.get(sid).pinned
            table = main_of(app).table
            assert table.get_cell(sid, "cull").plain == "⚑ pin"
            assert "state ● ready · ⚑ pinned" in detail(app)
            assert "culls   never: ⚑ pinned" in detail(app)
            assert f"Pinned: {sid}: safe from eviction, idle culling and max age" in log_text(app)
            await pilot.press("P")
            await settle(pilot)
            assert not pool.backend.pool.get(sid).pinned
            assert table.get_cell(sid, "cull").plain == "-"  # no policy configured
            assert "pinned" not in detail(app).splitlines()[2]

    async def test_pins_of_two_rows_in_a_row_both_happen(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            ids = await seeded(pilot, pool, "alice", "bob")
            await pilot.press("g", "P", "G", "P")  # no wait in between
            await settle(pilot)
            assert all(pool.backend.pool.get(sid).pinned for sid in ids)

    async def test_the_pin_limit_is_said_and_nothing_changes(self, pool: Pool) -> None:
        pool.backend.settings.pool.max_pinned = 1
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            first, second = await seeded(pilot, pool, "alice", "bob")
            pool.backend.pool.pin(first)
            await settle(pilot)
            main_of(app).select(second)
            await pilot.press("P")
            await settle(pilot)
            assert not pool.backend.pool.get(second).pinned
            assert "max_pinned = 1; unpin one first" in notes(app)
            assert "Pin limit" in log_text(app)

    async def test_an_ended_session_or_a_standby_cannot_be_pinned(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pool.backend.pool.terminate(sid)
            await settle(pilot)
            await pilot.press("a", "P")
            await settle(pilot)
            assert "has ended: only live sessions can be pinned" in notes(app)
            await with_standby(pool, 1)
            app.request_sync(full=True)
            await settle(pilot)
            [standby] = pool.backend.pool.standby_sessions()
            main_of(app).select(standby.session_id)
            await pilot.press("P")
            await settle(pilot)
            assert "is a standby workload: pin it once a user has claimed it" in notes(app)
            assert not standby.pinned


class TestDrain:
    async def test_D_asks_with_focus_on_cancel_then_drains_and_D_resumes(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice")
            await pilot.press("D")
            await settle(pilot)
            assert isinstance(app.screen, DrainScreen)
            assert app.focused is not None and app.focused.id == "cancel"
            assert "the 1 live session keeps running" in body(app)
            assert "Stop admitting new sessions?" in body(app)
            await pilot.press("enter")  # Enter on Cancel: nothing happens
            await settle(pilot)
            assert not pool.backend.pool.drain.active
            await pilot.press("D")
            await settle(pilot)
            await pilot.press("tab", "enter")
            await settle(pilot)
            assert pool.backend.pool.drain.active
            assert not pool.backend.pool.drain.evict_idle
            assert main_of(app).status.draining
            assert "⊘ DRAINING" in main_of(app).status.render().plain
            try:
                await pool.acquire("bob")
                raise AssertionError("a new session was admitted while draining")
            except Draining:
                pass
            await pilot.press("D")
            await settle(pilot)
            assert isinstance(app.screen, UndrainScreen)
            assert app.focused is not None and app.focused.id == "cancel"
            assert "The pool is draining since 12:00:00 (0s ago)" in body(app)
            await pilot.press("escape")
            await settle(pilot)
            assert pool.backend.pool.drain.active
            await pilot.press("D")
            await settle(pilot)
            await pilot.press("tab", "enter")
            await settle(pilot)
            assert not pool.backend.pool.drain.active
            assert not main_of(app).status.draining
            assert "Admitting: new sessions are admitted again" in log_text(app)

    async def test_the_drain_can_also_stop_idle_sessions(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("D")
            await settle(pilot)
            await pilot.press("shift+tab", "space", "tab", "tab", "enter")
            await settle(pilot)
            assert pool.backend.pool.drain.active and pool.backend.pool.drain.evict_idle
            assert "idle sessions are stopped" in log_text(app)

    async def test_D_after_a_drain_from_elsewhere_offers_to_resume(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            pool.backend.pool.set_drain(True)  # as `podwarden drain` does: no sync follows
            await pilot.press("D")
            await settle(pilot)
            assert isinstance(app.screen, UndrainScreen)
            assert main_of(app).status.draining  # the header caught up, too


class TestBulkEvict:
    async def test_E_evicts_every_session_of_the_rows_user_pinned_ones_too(
        self, pool: Pool
    ) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            ids = await seeded(pilot, pool, "alice", "alice", "bob", "alice")
            alice = [sid for sid in ids if sid.startswith("alice")]
            pool.backend.pool.pin(alice[1])
            await settle(pilot)
            main_of(app).select(alice[0])
            await pilot.press("E")
            assert isinstance(app.screen, BulkEvictScreen)
            assert app.focused is not None and app.focused.id == "cancel"
            text = body(app)
            assert "Evict 3 sessions of alice?" in text
            assert all(sid in text for sid in alice) and ids[2] not in text
            assert "⚑ 1 pinned: it is evicted too" in text
            await pilot.press("enter")  # Cancel
            await settle(pilot)
            assert all(pool.backend.pool.get(sid).state is SessionState.READY for sid in ids)
            await pilot.press("E", "tab", "enter")
            await settle(pilot)
            for sid in alice:
                assert pool.backend.pool.get(sid).state is SessionState.TERMINATED
            assert pool.backend.pool.get(ids[2]).state is SessionState.READY
            assert "Evicting: 3 sessions of alice: stopping" in log_text(app)

    async def test_with_a_filter_E_evicts_what_the_filter_shows(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            ids = await seeded(pilot, pool, "alice", "bob", "bobby", "carol")
            await pilot.press("slash", *"user:bob", "enter")
            await settle(pilot)
            await pilot.press("E")
            assert isinstance(app.screen, BulkEvictScreen)
            assert "Evict 2 sessions matching 'user:bob'?" in body(app)
            assert "pinned" not in body(app)
            await pilot.press("tab", "enter")
            await settle(pilot)
            states = {sid: pool.backend.pool.get(sid).state for sid in ids}
            assert [s is SessionState.TERMINATED for s in states.values()] == [
                False,
                True,
                True,
                False,
            ]

    async def test_nothing_to_evict_or_a_standby_row_is_said(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice")
            await pilot.press("slash", *"nobody", "enter")
            await settle(pilot)
            await pilot.press("E")
            assert app.screen is app.main
            assert "No live sessions matching 'nobody'." in notes(app)
            await pilot.press("escape")
            await with_standby(pool, 1)
            app.request_sync(full=True)
            await settle(pilot)
            [standby] = pool.backend.pool.standby_sessions()
            main_of(app).select(standby.session_id)
            await pilot.press("E")
            assert app.screen is app.main
            assert "A standby workload belongs to no user" in notes(app)


class TestPolicyColumns:
    async def test_culls_in_counts_down_and_idle_is_the_apis_idle(self, pool: Pool) -> None:
        pool.backend.settings.pool.idle_timeout = 600
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            table = main_of(app).table
            assert table.get_cell(sid, "cull").plain == "10m"
            pool.clock.advance(100)
            app._tick()
            await settle(pilot)
            assert table.get_cell(sid, "cull").plain == "8m20s"
            assert "culls   in 8m20s (12:10:00)" in detail(app)
            # Tunnel traffic is use: idle restarts from it, though nobody acquired.
            record = pool.backend.pool.record(sid)
            assert record is not None
            pool.backend.pool.note_activity(record, pool.clock() - 30)
            app.request_sync(full=True)
            await settle(pilot)
            api = await pool.client.get_session(sid)
            assert api["idle_s"] == 30.0
            assert table.get_cell(sid, "idle").plain == duration(api["idle_s"]) == "30s"
            assert "idle    30s" in detail(app)
            assert "used    12:00:00 (1m40s ago)" in detail(app)
            assert table.get_cell(sid, "cull").plain == "9m30s"
            pool.clock.advance(600)
            app._tick()
            await settle(pilot)
            assert table.get_cell(sid, "cull").plain == "now"

    async def test_the_gauge_counts_standby_and_the_user_column_says_so(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice")
            await with_standby(pool, 2)
            app.request_sync(full=True)
            await settle(pilot)
            main = main_of(app)
            gauge = main.gauges.render().plain
            assert "3/10 30% · 2 standby" in gauge
            assert "Users alice" in gauge and "standby █" not in gauge
            [standby, _] = pool.backend.pool.standby_sessions()
            assert main.table.get_cell(standby.session_id, "user").plain == "standby"
            main.select(standby.session_id)
            await pilot.pause()
            assert "standby (unclaimed) · template demo" in detail(app)


class TestPaletteAndEmpty:
    async def test_the_palette_offers_pin_drain_and_evict_all(self, pool: Pool) -> None:
        from textual.command import CommandPalette

        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pilot.press("colon")
            assert isinstance(app.screen, CommandPalette)
            await pilot.press(*"Pin (P)")
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
            assert pool.backend.pool.get(sid).pinned

    async def test_on_an_empty_pool_the_keys_say_why_nothing_happens(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            for key in ("P", "E"):
                await pilot.press(key)
                await settle(pilot)
                assert app.screen is app.main
                assert "Select a session first" in notes(app)
            await pilot.press("D")  # a drain needs no session
            await settle(pilot)
            assert isinstance(app.screen, DrainScreen)
            assert "the 0 live sessions keep running" in body(app)
