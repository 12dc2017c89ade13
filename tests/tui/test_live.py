"""Live by events: a change reaches the table by the event that carries it, embedded and
over a real HTTP server; an outage is lived through (STALE, resume, "reconnected after");
a refused token says so and stops asking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.harness import Pool, settle
from tests.tui.remote import RemoteBackend, ThreadedRemote
from tui.app import PodwardenApp
from tui.sync import QUIET_KINDS

NEVER = 3600.0
"""A timer period no test lives to see: nothing polls."""


async def wait_for(pilot: Pilot[Any], check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until ``check()`` holds (what the screen shows has no event of
    its own to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("the screen did not get there in time")
        await pilot.pause()
        await asyncio.sleep(0.005)


def cell(app: PodwardenApp, sid: str, column: str) -> str:
    assert app.main is not None
    try:
        return app.main.table.get_cell(sid, column).plain
    except Exception:
        return ""


@pytest.fixture
async def remote(pool: Pool) -> AsyncIterator[RemoteBackend]:
    backend = RemoteBackend(pool)
    await backend.start()
    yield backend
    await backend.close()


class Reads:
    """Counts the reads of the pool a console makes (documents and health)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def wrap(self, client: Any) -> None:
        for name in ("list_sessions", "get_session", "health"):
            method = getattr(client, name)

            async def call(*args: Any, _m: Any = method, _n: str = name, **kw: Any) -> Any:
                self.calls.append(_n)
                return await _m(*args, **kw)

            setattr(client, name, call)


TIMERS: dict[str, Any] = dict(flush_interval=NEVER, tick_interval=NEVER, resync_interval=NEVER)


async def test_phase_changes_and_ready_reach_the_table_with_no_read(pool: Pool) -> None:
    await _phases_by_event(pool, pool.app(**TIMERS))


async def test_phase_changes_reach_a_remote_table_with_no_read(
    pool: Pool, remote: RemoteBackend
) -> None:
    await _phases_by_event(pool, remote.app(**TIMERS))


async def _phases_by_event(pool: Pool, app: PodwardenApp) -> None:
    """With every timer off, a start's phases, its ready and a pin all reach the table,
    and the console reads nothing from the backend meanwhile."""
    reads = Reads()
    reads.wrap(app.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: bool(app.view.health))  # the first full read
        reads.calls.clear()
        gate = pool.runtime.ready_gate = asyncio.Event()
        sid = (await pool.acquire("alice", wait=False))["session_id"]
        await wait_for(pilot, lambda: cell(app, sid, "state").startswith("◌ login"))
        gate.set()
        await wait_for(pilot, lambda: cell(app, sid, "state") == "● ready")
        assert cell(app, sid, "tunnel").endswith("✓")
        pool.backend.pool.pin(sid)
        await wait_for(pilot, lambda: app.view.sessions[sid]["pinned"] is True)
        assert reads.calls == []  # every change came with its event
        assert app.main is not None
        log = "\n".join(app.main.log_panel.texts())
        assert "ready in" in log and ": login" not in log  # steps are not log lines
        assert "phase" in QUIET_KINDS


async def test_a_reconnect_resumes_after_the_last_event_and_says_after_how_long(
    pool: Pool, remote: RemoteBackend
) -> None:
    app = remote.app(reconnect_backoff=(0.05,))
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.main is not None
        status, table = app.main.status, app.main.table
        await wait_for(pilot, lambda: status.link == "live")
        alice = (await pool.acquire("alice"))["session_id"]
        await wait_for(pilot, lambda: cell(app, alice, "state") == "● ready")
        assert cell(app, alice, "tunnel").endswith("✓")

        await remote.stop_server()
        await wait_for(pilot, lambda: status.link == "stale")
        assert table.stale
        assert cell(app, alice, "state") == "? unknown"
        app.main.select(alice)
        await pilot.pause()
        assert "state ? unknown (last heard: ready)" in str(app.main.detail._last)
        tunnel = cell(app, alice, "tunnel")
        assert tunnel.endswith("?") and "✓" not in tunnel
        assert "dim" in str(table.get_cell(alice, "user").spans or table.get_cell(alice, "user"))

        pool.clock.advance(12)  # while the link is down:
        bob = (await pool.acquire("bob"))["session_id"]
        await pool.backend.pool.terminate(alice)
        await remote.start()

        await wait_for(pilot, lambda: status.link == "live")
        await wait_for(pilot, lambda: cell(app, bob, "state") == "● ready")
        assert not table.stale
        assert status.note == "reconnected after 12s"
        assert "reconnected after 12s" in status.render().plain
        log = app.main.log_panel.texts()
        assert log[-1].endswith("reconnected after 12s") or any(
            "reconnected after 12s" in line for line in log
        )
        missed = "\n".join(log)  # events only the resumed stream can have brought
        assert f"bob gets new session {bob}" in missed
        assert f"{alice} cleanup verified" in missed
        assert alice not in {r.value for r in table.rows}  # ended: hidden


async def test_a_refused_token_says_authentication_failed_and_stops_retrying(
    pool: Pool, remote: RemoteBackend
) -> None:
    app = remote.app(token="wrong-token", reconnect_backoff=(0.01,), resync_interval=0.02)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.main is not None
        status = app.main.status
        await wait_for(pilot, lambda: status.link == "auth")
        asked = len(remote.transport.requests)
        for _ in range(20):  # many backoff and resync periods: nobody asks again
            await asyncio.sleep(0.02)
            await pilot.pause()
        assert len(remote.transport.requests) == asked
        assert status.link == "auth"
        line = status.render().plain
        assert "AUTH FAILED" in line and "STALE" not in line
        assert "--token-file" in line and "PODWARDEN_TOKEN" in line
        log = "\n".join(app.main.log_panel.texts())
        assert "Authentication failed: http://backend.test:5010 refused the token (HTTP 401)" in log
        assert "PODWARDEN_TOKEN" in log


def _stale(remote: ThreadedRemote) -> Any:
    async def before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PodwardenApp) and app.main is not None
        status = app.main.status
        await wait_for(pilot, lambda: status.link == "live" and app.is_quiet())
        await wait_for(pilot, lambda: app.main is not None and app.main.table.row_count == 5)
        remote.call(remote.stop_server())
        await wait_for(pilot, lambda: status.link == "stale")
        await pilot.pause()

    return before


def _auth(pilot_app_link: str = "auth") -> Any:
    async def before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PodwardenApp) and app.main is not None
        status = app.main.status
        await wait_for(pilot, lambda: status.link == pilot_app_link)
        await pilot.pause()

    return before


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.mark.parametrize("size", SIZES)
class TestRemoteLink:
    def test_stale(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """The server went away: STALE, rows dimmed, live states unknown, no ✓."""
        remote = ThreadedRemote(pool)
        try:
            remote.call(remote.start())
            remote.call(pool.mixed())
            app = remote.app(reconnect_backoff=(NEVER,))
            assert snap_compare(app, terminal_size=size, run_before=_stale(remote))
        finally:
            remote.shutdown()

    def test_auth_failed(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """A wrong token: AUTH FAILED, what to check, and no retries."""
        remote = ThreadedRemote(pool)
        try:
            remote.call(remote.start())
            app = remote.app(token="wrong-token")
            assert snap_compare(app, terminal_size=size, run_before=_auth())
        finally:
            remote.shutdown()


async def test_a_changed_row_on_screen_is_repainted_alone(pool: Pool) -> None:
    """The table drops only the changed row's render caches (Textual internals, see
    ``SessionsTable._repaint_rows``): the screen shows the new cell, no other line is
    rendered again, and the table-wide update count stays. Fails when a Textual
    release renames or rekeys those caches."""
    app = pool.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        ids = [(await pool.acquire(f"u{i}"))["session_id"] for i in range(5)]
        await settle(pilot)
        assert app.main is not None
        table = app.main.table
        row = table.get_row_index(ids[2])
        lines = {y: table.render_line(y).text for y in range(1, 6)}
        count = table._update_count
        await pool.acquire("u2")  # a reuse: its USES cell goes to 2
        await settle(pilot)
        assert table._update_count == count
        assert table.get_cell(ids[2], "uses").plain == "2"
        for y, before in lines.items():
            now = table.render_line(y).text
            if y == row + 1:
                assert now != before and " 2 " in now
            else:
                assert now == before
