"""Snapshot tests: each screen at 80x24 and 120x40, stored in ``snapshots/``.

Deterministic by construction (see ``tests.tui.harness``): fixed clock, fixed ids, the
memory runtime, UTC, no cursor blink. Regenerate with ``pytest tests/tui
--snapshot-update`` and look at the SVGs before committing them.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.harness import Pool, settle

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def mixed(pool: Pool) -> Any:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pool.mixed()
        pilot.app.request_sync(full=True)  # type: ignore[attr-defined]
        await settle(pilot)

    return before


def full(pool: Pool) -> Any:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pool.full(10)
        pilot.app.request_sync(full=True)  # type: ignore[attr-defined]
        await settle(pilot)

    return before


def with_resources(pool: Pool, scope: str) -> Any:
    """The mixed pool with CPU and memory per session and the host's (or cluster's)."""

    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        ids = await pool.mixed()
        await pool.resources(ids, scope)
        pilot.app.request_sync(full=True)  # type: ignore[attr-defined]
        await settle(pilot)

    return before


def orphans(pool: Pool) -> Any:
    """The mixed pool plus two workloads the pool does not know (found by the drift check)."""

    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pool.mixed()
        await pool.orphan("mallory-demo-0000000a", user="mallory")
        await pool.orphan("trent-chromium-0000000b", user="trent")
        pilot.app.request_sync(full=True)  # type: ignore[attr-defined]
        await settle(pilot)

    return before


@pytest.mark.parametrize("size", SIZES)
class TestMainScreen:
    def test_empty(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        assert snap_compare(pool.app(), terminal_size=size, run_before=settle)

    def test_mixed_pool(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """Starting (phase and elapsed), ready, refreshing and failed sessions."""
        assert snap_compare(pool.app(), terminal_size=size, run_before=mixed(pool))

    def test_at_capacity(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """10/10: the gauge is full and says FULL."""
        assert snap_compare(pool.app(), terminal_size=size, run_before=full(pool))

    def test_no_color(
        self, pool: Pool, snap_compare: Any, size: tuple[int, int], monkeypatch: Any
    ) -> None:
        """NO_COLOR: every state still reads as a symbol and a word."""
        monkeypatch.setenv("NO_COLOR", "1")
        assert snap_compare(pool.app(), terminal_size=size, run_before=mixed(pool))

    def test_sixteen_colours(
        self, pool: Pool, snap_compare: Any, size: tuple[int, int], monkeypatch: Any
    ) -> None:
        """A 16-colour terminal: ANSI colours, red only for failure (not keys or focus)."""
        monkeypatch.setenv("TERM", "xterm")
        monkeypatch.delenv("COLORTERM", raising=False)
        assert snap_compare(pool.app(), terminal_size=size, run_before=mixed(pool))

    def test_read_only(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """--read-only: RO in the header, no mutating keys in the footer."""
        app = pool.app(read_only=True)
        assert snap_compare(app, terminal_size=size, run_before=mixed(pool))

    def test_resources(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """Local runtime: CPU/MEM per session (from 100 columns), the host's gauge."""
        app = pool.app()
        assert snap_compare(app, terminal_size=size, run_before=with_resources(pool, "host"))

    def test_resources_requested(
        self, pool: Pool, snap_compare: Any, size: tuple[int, int]
    ) -> None:
        """Kubernetes without metrics: requests, marked r and dimmed; the cluster's room."""
        app = pool.app()
        assert snap_compare(app, terminal_size=size, run_before=with_resources(pool, "cluster"))


@pytest.mark.parametrize("size", SIZES)
class TestModals:
    def test_new_session_validation_error(
        self, pool: Pool, snap_compare: Any, size: tuple[int, int]
    ) -> None:
        """An empty user is refused inline; the modal stays open."""
        assert snap_compare(pool.app(), terminal_size=size, run_before=settle, press=["n", "enter"])

    def test_evict_confirm(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """Names user, session and workload; the focus is on Cancel."""
        assert snap_compare(pool.app(), terminal_size=size, run_before=mixed(pool), press=["e"])

    def test_event_in_full(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """V lists the events; Enter opens the newest with every field and its data."""
        app = pool.app()
        assert snap_compare(app, terminal_size=size, run_before=mixed(pool), press=["V", "enter"])

    def test_users(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """u: every user with live sessions, busiest first; enter filters to one."""
        assert snap_compare(pool.app(), terminal_size=size, run_before=mixed(pool), press=["u"])

    def test_orphans_confirm(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """``⚠ 2 orphans`` in the header; O lists them, says what happens, focus on Cancel."""
        assert snap_compare(pool.app(), terminal_size=size, run_before=orphans(pool), press=["O"])

    def test_quit_confirm(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """Embedded with live sessions: q asks and says the API stops with the console."""
        assert snap_compare(pool.app(), terminal_size=size, run_before=mixed(pool), press=["q"])

    def test_help(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        assert snap_compare(pool.app(), terminal_size=size, run_before=settle, press=["?"])


@pytest.mark.parametrize("size", SIZES)
class TestLogAndSize:
    def test_log_maximized(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        assert snap_compare(pool.app(), terminal_size=size, run_before=mixed(pool), press=["l"])

    def test_too_small(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """Below the minimum size: the sizes and a request to resize, not a broken layout."""
        app = pool.app(min_width=size[0] + 20, min_height=size[1] + 6)
        assert snap_compare(app, terminal_size=size, run_before=settle)


def lifecycle(pool: Pool, drained: bool = True, then: tuple[str, ...] = ()) -> Any:
    """Idle culling on (1 h), two of alice's sessions (one pinned), bob, two standby
    workloads, and (unless ``drained`` is False) the pool drained; then press ``then``
    and wait for what the keys started."""

    async def before(pilot: Pilot[Any]) -> None:
        from tests.tui.test_lifecycle_keys import with_standby

        await settle(pilot)
        pool.backend.settings.pool.idle_timeout = 3600
        first = await pool.acquire("alice")
        pool.clock.advance(300)
        await pool.acquire("alice", reuse=False)
        await pool.acquire("bob")
        pool.clock.advance(1500)
        pool.backend.pool.pin(first["session_id"])
        await with_standby(pool, 2)
        pool.clock.advance(90)
        if drained:
            pool.backend.pool.set_drain(True)
        pilot.app.request_sync(full=True)  # type: ignore[attr-defined]
        await settle(pilot)
        if then:
            await pilot.press(*then)
            await settle(pilot)

    return before


@pytest.mark.parametrize("size", SIZES)
class TestLifecycle:
    def test_pinned_standby_culling_draining(
        self, pool: Pool, snap_compare: Any, size: tuple[int, int]
    ) -> None:
        """⚑ pin and culls-in in CULL, standby rows and gauge, ⊘ DRAINING in the header."""
        assert snap_compare(pool.app(), terminal_size=size, run_before=lifecycle(pool))

    def test_drain_confirm(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """D: what a drain refuses and keeps, the evict-idle option, focus on Cancel."""
        app = pool.app()
        before = lifecycle(pool, drained=False, then=("D",))
        assert snap_compare(app, terminal_size=size, run_before=before)

    def test_bulk_evict_confirm(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """E on alice's row: one dialog with the count, and the pinned one said."""
        app = pool.app()
        assert snap_compare(app, terminal_size=size, run_before=lifecycle(pool), press=["g", "E"])

    def test_undrain_confirm(self, pool: Pool, snap_compare: Any, size: tuple[int, int]) -> None:
        """D on a drained pool: since when, and the offer to resume admission."""
        app = pool.app()
        assert snap_compare(app, terminal_size=size, run_before=lifecycle(pool, then=("D",)))


def test_the_smallest_layout_wraps_nothing(pool: Pool, snap_compare: Any) -> None:
    """60x15, the smallest size before "too small": the pool line and rows fit one line."""
    assert snap_compare(pool.app(), terminal_size=(60, 15), run_before=mixed(pool))
