"""Pilot tests: every key reaches the backend, and the screen shows what happened.

Each test drives the real app over an in-process backend on the memory runtime and
waits for its workers (``settle``), never for wall-clock time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual.command import CommandPalette

from backend.events import EventKind
from backend.models import SessionState
from tests.tui.harness import Pool, settle
from tui.app import PodwardenApp
from tui.screens.events import EventDetailScreen, EventsScreen
from tui.screens.evict import EvictScreen
from tui.screens.filter import FilterScreen
from tui.screens.help import HelpScreen
from tui.screens.new_session import NewSessionScreen
from tui.screens.quit import QuitScreen
from tui.screens.users import UsersScreen
from tui.widgets.toggles import ChoiceList


def main_of(app: PodwardenApp) -> Any:
    assert app.main is not None
    return app.main


def log_text(app: PodwardenApp) -> str:
    return "\n".join(main_of(app).log_panel.texts())


def row_ids(app: PodwardenApp) -> list[str]:
    table = main_of(app).table
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


async def seeded(pilot: Any, pool: Pool, *users: str) -> list[str]:
    await settle(pilot)
    ids = [(await pool.acquire(user))["session_id"] for user in users]
    await settle(pilot)
    return ids


class TestNewSession:
    async def test_n_opens_the_modal_and_creates_the_session(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("n")
            assert isinstance(app.screen, NewSessionScreen)
            await pilot.press(*"alice", "enter")
            await settle(pilot)
            assert [s.user for s in pool.backend.pool.list()] == ["alice"]
            assert not isinstance(app.screen, NewSessionScreen)
            assert row_ids(app) == ["alice-demo-00000001"]
            assert "New session: alice-demo-00000001" in log_text(app)

    async def test_an_empty_user_is_refused_inline_and_the_modal_stays(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("n", "enter")
            await settle(pilot)
            assert isinstance(app.screen, NewSessionScreen)
            error = app.screen.query_one("#user-error")
            assert "must not be empty" in str(error.render())
            assert pool.backend.pool.list() == []
            await pilot.press(*"bob", "enter")
            await settle(pilot)
            assert [s.user for s in pool.backend.pool.list()] == ["bob"]

    async def test_a_backend_refusal_keeps_the_modal_open(self, pool: Pool) -> None:
        pool.backend.settings.pool.when_full = "reject"
        pool.backend.settings.pool.max_sessions = 1
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice")
            await pilot.press("n", *"bob", "enter")
            await settle(pilot)
            assert isinstance(app.screen, NewSessionScreen)
            assert "pool is full" in str(app.screen.query_one("#error").render())
            assert "Pool full" in log_text(app)
            await pilot.press("escape")
            assert not isinstance(app.screen, NewSessionScreen)

    async def test_the_template_list_and_reuse_toggle_are_sent(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [first] = await seeded(pilot, pool, "alice")
            await pilot.press("n")  # prefilled with the selected row's user
            modal = app.screen
            assert isinstance(modal, NewSessionScreen)
            modal.query_one("#reuse").value = False  # type: ignore[attr-defined]
            await pilot.press("enter")
            await settle(pilot)
            sessions = [s for s in pool.backend.pool.list() if s.user == "alice"]
            assert len(sessions) == 2 and first in {s.session_id for s in sessions}

    async def test_the_first_arrow_key_chooses_the_next_template(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("n", *"carol", "tab", "down", "enter")
            await settle(pilot)
            [session] = pool.backend.pool.list()
            assert (session.user, session.template) == ("carol", "chromium")

    async def test_a_click_on_a_template_chooses_it_without_sending(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("n", *"dave")
            modal = app.screen
            assert isinstance(modal, NewSessionScreen)
            choices = modal.query_one("#template", ChoiceList)
            assert choices.value == "demo"  # the configured default
            await pilot.click(ChoiceList, offset=(3, 0))  # the first line: chromium
            await settle(pilot)
            assert choices.value == "chromium" and app.screen is modal
            assert pool.backend.pool.list() == []

    async def test_enter_on_the_reuse_box_submits_and_space_toggles_it(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [first] = await seeded(pilot, pool, "alice")
            await pilot.press("n")
            modal = app.screen
            assert isinstance(modal, NewSessionScreen)
            await pilot.press("tab", "tab")
            assert modal.focused is modal.query_one("#reuse")
            await pilot.press("space", "enter")
            await settle(pilot)
            sessions = [s for s in pool.backend.pool.list() if s.user == "alice"]
            assert len(sessions) == 2 and first in {s.session_id for s in sessions}
            assert not isinstance(app.screen, NewSessionScreen)

    async def test_an_error_clears_once_the_input_is_edited(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("n", "-", "x", "enter")
            await settle(pilot)
            error = app.screen.query_one("#user-error")
            assert "must not start with '-'" in str(error.render())
            await pilot.press("backspace")
            assert str(error.render()) == "" and error.has_class("-empty")

    async def test_surrounding_whitespace_is_trimmed_so_the_user_is_reused(
        self, pool: Pool
    ) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [first] = await seeded(pilot, pool, "api15")
            await pilot.press("n", "ctrl+u", *" api15 ", "enter")
            await settle(pilot)
            assert [s.session_id for s in pool.backend.pool.list()] == [first]
            assert f"Reused: {first}" in log_text(app)


class TestToasts:
    async def test_a_new_session_gets_one_toast_when_it_is_ready(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await settle(pilot)
            await pilot.press("n", *"alice", "enter")
            await settle(pilot)
            assert "New session: alice-demo-00000001" in log_text(app)  # not toasted
            assert app.toast is not None and app.toast.title == "Session ready"
            await pilot.pause()
            assert len(app.screen.query("Toast")) == 1

    async def test_at_most_one_toast_is_on_screen(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pilot.press("c", "y")
            await pilot.pause()
            await pilot.pause()
            toasts = app.screen.query("Toast")
            assert len(toasts) == 1 and app.toast is not None and app.toast.message == sid


class TestEvents:
    async def test_event_lines_wrap_instead_of_being_cut(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            long = "the login page answered slowly " * 6 + "END-OF-MESSAGE"
            pool.backend.bus.publish(EventKind.REFRESH_FAILED, long, session_id="x-demo-1")
            await settle(pilot)
            panel = main_of(app).log_panel
            shown = "".join("".join(strip.text for strip in panel.lines).split())
            assert "".join(long.split()) in shown  # every word, over several lines

    async def test_enter_on_the_log_lists_events_and_opens_one_in_full(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            main_of(app).log_panel.focus()
            await pilot.press("enter")
            assert isinstance(app.screen, EventsScreen)
            events = app.screen.events
            assert events and events[-1]["session_id"] == sid
            await pilot.press("enter")  # the cursor starts on the newest
            assert isinstance(app.screen, EventDetailScreen)
            assert app.screen.event is events[-1]
            text = str(app.screen.query_one("#event-text").render())
            assert sid in text and str(events[-1]["message"]) in text
            await pilot.press("escape", "escape")
            assert not isinstance(app.screen, (EventsScreen, EventDetailScreen))

    async def test_v_shows_only_the_selected_sessions_events(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            alice, bob = await seeded(pilot, pool, "alice", "bob")
            main_of(app).select(bob)
            await pilot.press("v")
            assert isinstance(app.screen, EventsScreen)
            kinds = [e["kind"] for e in app.screen.events]
            assert {e["session_id"] for e in app.screen.events} == {bob}
            assert "ready" in kinds
            await pilot.press("escape", "V")
            assert isinstance(app.screen, EventsScreen)
            assert {alice, bob} <= {e.get("session_id") for e in app.screen.events}


class TestTerminals:
    async def test_sixteen_colours_keep_red_for_failure(self, pool: Pool, monkeypatch: Any) -> None:
        monkeypatch.setenv("TERM", "xterm")
        monkeypatch.delenv("COLORTERM", raising=False)
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app.console.color_system == "standard"
            assert app.theme == "podwarden-16"
            variables = app.theme_variables
            red = {variables["error"]}
            for name in ("accent", "border", "footer-key-foreground", "primary"):
                assert variables[name] not in red, name

    async def test_true_colour_keeps_the_default_theme(self, pool: Pool, monkeypatch: Any) -> None:
        monkeypatch.setenv("COLORTERM", "truecolor")
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app.theme != "podwarden-16"


class TestReuseAndEvict:
    async def test_r_reuses_the_selected_users_session(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pilot.press("r")
            await settle(pilot)
            assert pool.backend.pool.get(sid).use_count == 2
            assert len(pool.backend.pool.list()) == 1
            assert f"Reused: {sid} · is_new_session: false · took" in log_text(app)
            assert "· 2 uses" in str(main_of(app).detail._last)  # no USES column at 80

    async def test_e_asks_first_with_focus_on_cancel_and_esc_cancels(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pilot.press("e")
            assert isinstance(app.screen, EvictScreen)
            assert app.focused is not None and app.focused.id == "cancel"
            text = str(app.screen.query_one("Static").render())
            assert "alice" in text and sid in text and "mem-1" in text
            await pilot.press("enter")  # Enter on Cancel: nothing happens
            await settle(pilot)
            await pilot.press("e", "escape")
            await settle(pilot)
            assert pool.backend.pool.get(sid).state is SessionState.READY

    async def test_e_then_evict_stops_the_session_and_shows_the_cleanup(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pilot.press("e", "tab", "enter")
            await settle(pilot)
            assert pool.backend.pool.get(sid).state is SessionState.TERMINATED
            assert pool.runtime.workloads == {}
            main = main_of(app)
            assert row_ids(app) == []  # ended sessions are hidden by default
            assert "+1 ended, a shows" in str(main.table.border_title)
            await pilot.press("a")
            assert main.table.get_cell(sid, "state").plain == "· ended"
            assert main.table.get_cell(sid, "age").plain == "-"
            detail = str(main.detail._last)
            assert "state · ended" in detail
            assert "cleanup ✓ verified" in detail
            assert "cleanup_verified" in log_text(app)


class TestViewKeys:
    async def test_filter_narrows_and_esc_clears(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice", "bob", "carol")
            await pilot.press("slash")
            assert isinstance(app.screen, FilterScreen)
            await pilot.press(*"user:bo", "enter")
            await settle(pilot)
            assert row_ids(app) == ["bob-demo-00000002"]
            assert "filter: user:bo" in str(main_of(app).table.border_title)
            await pilot.press("escape")
            assert len(row_ids(app)) == 3

    async def test_a_followed_log_follows_the_selection_after_a_filter(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            alice, bob = await seeded(pilot, pool, "alice", "bob")
            main = main_of(app)
            main.select(alice)
            await pilot.press("o")  # follow the selected session's workload log
            await settle(pilot)
            assert main.log_panel.followed == alice
            main.set_filter("user=bob")  # alice's row is gone: the selection moved
            await settle(pilot)
            assert main.table.selected_id == bob and main.log_panel.followed == bob

    async def test_s_sorts_and_S_reverses(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            for user in ("carol", "alice", "bob"):
                await seeded(pilot, pool, user)
                pool.clock.advance(1)
            assert [r.split("-")[0] for r in row_ids(app)] == ["carol", "alice", "bob"]
            table = main_of(app).table
            assert table.ordered_columns[table.get_column_index("age")].label.plain == "AGE▼"
            shown = [c.key for c in table.columns_shown]
            await pilot.press("s")  # the next column to the right of AGE
            assert table.sort_by == shown[shown.index("age") + 1] and not table.sort_reverse
            for _ in range(len(shown) - 1):
                await pilot.press("s")
            assert table.sort_by == "age"  # round the shown columns, left to right
            # Clicking USER's header sorts by it, ascending; a second click reverses.
            x = 1 + sum(table.columns[k].get_render_width(table) for k in shown[:2]) + 2
            await pilot.click("#sessions", offset=(x, 1))
            await pilot.pause()
            assert table.sort_by == "user"
            assert [r.split("-")[0] for r in row_ids(app)] == ["alice", "bob", "carol"]
            assert "sort: user ▲" in str(table.border_title)
            await pilot.click("#sessions", offset=(x, 1))
            await pilot.pause()
            assert [r.split("-")[0] for r in row_ids(app)] == ["carol", "bob", "alice"]
            await pilot.press("S")
            assert [r.split("-")[0] for r in row_ids(app)] == ["alice", "bob", "carol"]

    async def test_c_and_y_copy_and_echo(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pilot.press("c")
            assert app.clipboard == "127.0.0.1:43000"
            assert app.toast is not None and app.toast.message == "127.0.0.1:43000"
            await pilot.press("y")
            assert app.clipboard == sid
            assert app.toast is not None and app.toast.message == sid

    async def test_p_pauses_live_updates(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice")
            await pilot.press("p")
            assert main_of(app).status.paused
            await pool.acquire("bob")
            await settle(pilot)
            assert len(row_ids(app)) == 1
            await pilot.press("p")
            await settle(pilot)
            assert len(row_ids(app)) == 2

    async def test_help_lists_every_key(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            for key in ("question_mark", "f1"):
                await pilot.press(key)
                assert isinstance(app.screen, HelpScreen)
                await pilot.press("escape")
                assert not isinstance(app.screen, HelpScreen)

    async def test_l_maximizes_the_log_and_o_follows_the_session_log(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            main = main_of(app)
            await pilot.press("l")
            assert main.maximized is main.log_panel
            await pilot.press("escape")
            assert main.maximized is None
            await pilot.press("o")
            await settle(pilot)
            assert main.log_panel.followed == sid
            assert main.log_panel.texts() == ["workload mem-1 started"]
            pool.backend.logs.append(sid, "hello from the workload")
            await settle(pilot)
            assert main.log_panel.texts()[-1] == "hello from the workload"
            await pilot.press("o")
            assert "created" in log_text(app)

    async def test_colon_opens_the_palette_with_the_same_actions(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            await pilot.press("colon")
            assert isinstance(app.screen, CommandPalette)
            await pilot.press(*"copy id")
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
            assert app.clipboard == sid
            await pilot.press("ctrl+p")
            assert isinstance(app.screen, CommandPalette)
            await pilot.press("escape")


class TestReadOnly:
    async def test_mutating_keys_do_nothing_and_say_read_only(self, pool: Pool) -> None:
        app = pool.app(read_only=True)
        async with app.run_test(size=(80, 24)) as pilot:
            [sid] = await seeded(pilot, pool, "alice")
            labels = {"n": "New", "r": "Reuse", "e": "Evict", "E": "Evict all", "P": "Pin"}
            for key, label in {**labels, "D": "Drain", "O": "Clean up orphans"}.items():
                await pilot.press(key)
                await settle(pilot)
                assert app.screen is app.main
                notes = " ".join(n.message for n in app._notifications)
                assert f"{label} is unavailable in read-only mode" in notes
            assert pool.backend.pool.get(sid).use_count == 1
            assert pool.backend.pool.get(sid).state is SessionState.READY
            assert not pool.backend.pool.get(sid).pinned
            assert not pool.backend.pool.drain.active
            assert main_of(app).status.read_only
            # Neither the footer nor the palette offers them.
            assert app.main is not None
            shown = {b.binding.key for b in app.main.active_bindings.values() if b.enabled}
            footer = {
                b.binding.key
                for b in app.main.active_bindings.values()
                if b.enabled and b.binding.show
            }
            assert {"n", "r", "e", "E", "P", "D", "O"} <= shown  # they answer, with the note
            assert not footer & {"n", "r", "e", "E", "P", "D", "O"}


class TestLongWork:
    async def test_a_starting_session_shows_phase_and_elapsed(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            pool.runtime.ready_gate = asyncio.Event()
            sid = (await pool.acquire("erin", wait=False))["session_id"]
            await settle(pilot)
            pool.clock.advance(12)
            app._tick()
            await settle(pilot)
            assert main_of(app).table.get_cell(sid, "state").plain == "◌ login 12s"
            pool.runtime.ready_gate.set()
            await settle(pilot)
            assert main_of(app).table.get_cell(sid, "state").plain == "● ready"

    async def test_a_slow_login_never_blocks_keys(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            pool.runtime.ready_gate = asyncio.Event()  # the login never ends by itself
            await pool.acquire("erin", wait=False)
            await settle(pilot)
            await pilot.press("r")  # waits for the start in a worker
            await pilot.pause()
            [reuse] = [w for w in app.workers if w.group == "acquire"]
            assert not reuse.is_finished
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            pool.runtime.ready_gate.set()
            await settle(pilot)
            assert "Reused" not in log_text(app)  # it was new: reported as such
            assert "is_new_session: true" in log_text(app)


class TestTerminal:
    async def test_too_small_and_back(self, pool: Pool) -> None:
        from tui.screens.too_small import TooSmallScreen

        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.resize_terminal(50, 12)
            await pilot.pause()
            assert isinstance(app.screen, TooSmallScreen)
            await pilot.resize_terminal(80, 24)
            await pilot.pause()
            assert app.screen is app.main

    async def test_columns_give_way_below_107(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(106, 30)) as pilot:
            await seeded(pilot, pool, "alice")
            table = main_of(app).table
            assert "ref" not in [c.value for c in table.columns]
            await pilot.resize_terminal(107, 30)
            await pilot.pause()
            assert "ref" in [c.value for c in table.columns]
            await pilot.resize_terminal(120, 30)
            await pilot.pause()
            assert "template" in [c.value for c in table.columns]
            assert table.get_cell("alice-demo-00000001", "tunnel").plain == ":43000 -> :3000 ✓"
            await pilot.resize_terminal(127, 30)
            await pilot.pause()
            assert table.get_cell("alice-demo-00000001", "tunnel").plain == (
                "127.0.0.1:43000 -> :3000 ✓"
            )

    async def test_q_asks_while_sessions_live_and_a_second_q_quits(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice")
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            body = str(app.screen.query_one("Static").render())
            assert "HTTP API at 127.0.0.1:5010 stops with it" in body
            assert "1 live session keeps running" in body
            await pilot.press("escape")
            assert not isinstance(app.screen, QuitScreen) and app.return_value is None
            await pilot.press("q", "q")
            await pilot.pause()
            assert app.return_value == 0
        assert pool.life.stopped
        assert list(pool.runtime.workloads) == ["alice-demo-00000001"]


class TestQuit:
    async def test_Q_quits_at_once(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice")
            await pilot.press("Q")
            await pilot.pause()
            assert app.return_value == 0

    async def test_q_quits_at_once_with_nothing_live(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("q")
            await pilot.pause()
            assert app.return_value == 0


class TestUsers:
    async def test_u_lists_every_user_and_enter_shows_exactly_theirs(self, pool: Pool) -> None:
        pool.backend.settings.pool.max_sessions = 20
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            users = ["al", "alice", "bo", "carol", "dave", "erin", "frank", "gina"]
            await seeded(pilot, pool, *users)
            await pool.acquire("alice", "chromium")
            await settle(pilot)
            assert "more (u)" in str(main_of(app).gauges.render())  # 8 do not fit one line
            await pilot.press("u")
            assert isinstance(app.screen, UsersScreen)
            assert [u for u, _ in app.screen.counts][:1] == ["alice"]  # busiest first
            assert sorted(u for u, _ in app.screen.counts) == sorted(users)
            await pilot.press("down", "enter")  # "al", not every user starting with "al"
            assert not isinstance(app.screen, UsersScreen)
            assert main_of(app).table.filter.text == "user=al"
            ids = row_ids(app)
            assert len(ids) == 1 and pool.backend.pool.get(ids[0]).user == "al"

    async def test_a_click_on_the_users_line_opens_the_list(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            await seeded(pilot, pool, "alice")
            await pilot.click("#gauges", offset=(10, 1))
            assert isinstance(app.screen, UsersScreen)
            await pilot.press("escape")
            assert not isinstance(app.screen, UsersScreen)


class TestNextEviction:
    async def test_the_next_eviction_is_marked_in_the_detail_and_when_full_the_title(
        self, pool: Pool
    ) -> None:
        pool.backend.settings.pool.max_sessions = 2
        app = pool.app()
        async with app.run_test(size=(80, 24)) as pilot:
            first, second = await seeded(pilot, pool, "alice", "bob")
            app.request_sync(full=True)
            await settle(pilot)
            main = main_of(app)
            assert "⏏ next: alice" in str(main.table.border_title)  # full: it is evicted next
            main.select(first)
            await settle(pilot)
            assert "⏏ next to evict" in str(main.detail._last)
            main.select(second)
            await settle(pilot)
            assert "next to evict" not in str(main.detail._last)
