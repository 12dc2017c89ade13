"""Orphans in the console: the header says how many, ``O`` asks and then removes them.

The orphans here are real: workloads started in the memory runtime behind the pool's
back and found by the backend's own drift check, removed through the client.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.widgets import Static

from tests.tui.harness import Pool, settle
from tests.tui.test_keys import log_text, main_of
from tui.app import PodwardenApp
from tui.screens.help import HelpScreen
from tui.screens.orphans import OrphansScreen

ORPHANS = ("mallory-demo-0000000a", "trent-demo-0000000b")


async def with_orphans(pilot: Any, pool: Pool, *ids: str) -> None:
    await settle(pilot)
    for sid in ids:
        await pool.orphan(sid, user=sid.split("-")[0])
    pilot.app.request_sync(full=True)  # what the periodic resync would do
    await settle(pilot)


def header(app: PodwardenApp) -> str:
    return main_of(app).status.render().plain


def plain(renderable: Any) -> str:
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def told(app: PodwardenApp, text: str) -> bool:
    """Whether the console said ``text``: in the toast on screen, or in the log panel,
    which keeps every command's outcome (routine successes are not toasted)."""
    shown = [f"{app.toast.title}: {app.toast.message}"] if app.toast else []
    assert app.main is not None
    return any(text in line for line in shown + list(app.main.log_panel.texts()))


class TestOrphans:
    async def test_marker_then_O_confirm_removes_them(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await with_orphans(pilot, pool, *ORPHANS)
            assert "⚠ 2 orphans" in header(app)
            await pilot.press("O")
            assert isinstance(app.screen, OrphansScreen)
            assert app.focused is not None and app.focused.id == "cancel"
            text = str(app.screen.query_one("Static").render())
            assert all(sid in text for sid in ORPHANS) and "Remove 2 orphans?" in text
            await pilot.press("tab", "enter")
            await settle(pilot)
            assert app.screen is app.main
            assert not set(ORPHANS) & set(pool.runtime.workloads)
            assert (await pool.client.health())["orphans"] == []
            assert "orphan" not in header(app)
            assert told(app, "Orphans: removing 2 orphans; orphan_removed events follow")
            log = log_text(app)
            assert "Orphans: removing 2 orphans; orphan_removed events follow" in log
            assert all(f"orphan_removed orphan {sid} removed" in log for sid in ORPHANS)

    async def test_cancel_and_esc_keep_them(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await with_orphans(pilot, pool, ORPHANS[0])
            assert "⚠ 1 orphan " in header(app)
            await pilot.press("O", "enter")  # Enter on Cancel: nothing happens
            await settle(pilot)
            await pilot.press("O", "escape")
            await settle(pilot)
            assert app.screen is app.main
            assert ORPHANS[0] in pool.runtime.workloads
            assert pool.backend.health().orphans == [ORPHANS[0]]

    async def test_more_than_eight_are_counted(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            ids = [f"u{i:02d}-demo-{i:08x}" for i in range(11)]
            await with_orphans(pilot, pool, *ids)
            await pilot.press("O")
            text = str(app.screen.query_one("Static").render())
            assert "+3 more" in text and ids[7] in text and ids[8] not in text

    async def test_one_already_gone_is_reported_not_failed(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await with_orphans(pilot, pool, *ORPHANS)
            await pool.backend.remove_orphan(ORPHANS[0])  # behind the console's back
            await pilot.press("O", "tab", "enter")
            await settle(pilot)
            expected = "Orphans: removing 1 orphan; orphan_removed events follow (1 already gone)"
            assert told(app, expected)
            assert pool.backend.orphans == {}

    async def test_O_without_orphans_says_so(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("O")
            assert app.screen is app.main
            assert told(app, "Orphans: No orphaned workloads")

    async def test_help_lists_them(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await with_orphans(pilot, pool, *ORPHANS)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            text = plain(app.screen.query_one(Static).content)
            assert "⚠ 2 orphans" in text and "O cleans them up" in text
            assert "Stop orphaned workloads (asks first)" in text

    async def test_read_only_shows_them_but_O_only_says_read_only(self, pool: Pool) -> None:
        app = pool.app(read_only=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await with_orphans(pilot, pool, ORPHANS[0])
            assert "⚠ 1 orphan" in header(app)
            await pilot.press("O")
            await settle(pilot)
            assert app.screen is app.main
            assert ORPHANS[0] in pool.runtime.workloads
            notes = " ".join(n.message for n in app._notifications)
            assert "Clean up orphans is unavailable in read-only mode" in notes
