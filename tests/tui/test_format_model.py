"""Pure parts of the console: formatting, filtering, sorting, diffing."""

from __future__ import annotations

from typing import Any

import pytest

from tui.format import duration, gauge_bar, ref_text, state_text, tunnel_text
from tui.model import Filter, PoolView, user_filter


def doc(sid: str = "alice-demo-1", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "session_id": sid,
        "user": sid.split("-")[0],
        "template": "demo",
        "state": "ready",
        "phase": "ready",
        "created_at": 1000.0,
        "last_used_at": 1000.0,
        "use_count": 1,
        "tunnel": {
            "host": "127.0.0.1",
            "port": 43981,
            "target_host": "10.0.0.5",
            "target_port": 3000,
            "listening": True,
        },
        "runtime": "local",
        "runtime_ref": "4242",
        "age_s": 0.0,
        "idle_s": 0.0,
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (59.9, "59s"),
        (75, "1m15s"),
        (600, "10m"),
        (3700, "1h01m"),
        (40000, "11h"),
        (200000, "2d"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_tunnel_text_gives_way_and_says_whether_it_listens() -> None:
    assert tunnel_text(doc(), 26).plain == "127.0.0.1:43981 -> :3000 ✓"
    assert tunnel_text(doc(), 17).plain == ":43981 -> :3000 ✓"
    assert tunnel_text(doc(), 8).plain == ":43981 ✓"
    closed = doc(tunnel={**doc()["tunnel"], "listening": False})
    assert tunnel_text(closed, 26).plain.endswith("✗")
    assert tunnel_text(doc(state="terminated"), 26).plain == "-"


def test_state_text_is_a_word_and_a_symbol_and_starting_shows_elapsed() -> None:
    assert state_text(doc(), 1000).plain == "● ready"
    assert state_text(doc(state="failed"), 1000).plain == "✗ failed"
    starting = doc(state="starting", phase="login")
    assert state_text(starting, 1012, 12).plain == "◌ login 12s"
    # A recycle (4 minutes after creation) counts from its own start, not the session's.
    recycling = doc(state="starting", phase="recycling", starting_since=1240.0)
    assert state_text(recycling, 1256, 14).plain == "◌ recycle 16s"


def test_ref_text_and_gauge() -> None:
    assert ref_text(doc()) == "pid 4242"
    assert ref_text(doc(runtime="kubernetes", runtime_ref="alice-demo-1")) == "alice-demo-1"
    assert gauge_bar(7, 10, 10) == "███████░░░"
    assert gauge_bar(1, 100, 10) == "█░░░░░░░░░"


def test_filter_terms() -> None:
    alice, bob = doc("alice-demo-1"), doc("bob-chromium-2", template="chromium", state="failed")
    assert Filter("user:al").matches(alice) and not Filter("user:al").matches(bob)
    assert Filter("state:fail").matches(bob)
    assert Filter("chromium").matches(bob) and not Filter("chromium").matches(alice)
    assert Filter("template:chr state:failed").matches(bob)
    assert Filter("").matches(alice) and not Filter("").active


def test_filter_exact_and_quoted_terms() -> None:
    smith = doc("smith-demo-1", user="Alice Smith")
    al, alice = doc("al-demo-2", user="al"), doc("alice-demo-3")
    assert Filter("user=al").matches(al) and not Filter("user=al").matches(alice)
    assert Filter('user="alice smith"').matches(smith) and not Filter("user=alice").matches(smith)
    assert Filter(user_filter("Alice Smith")).matches(smith)
    assert not Filter(user_filter("Alice Smith")).matches(alice)
    assert Filter("USER:AL").matches(alice)
    assert Filter("state=ready").matches(alice) and not Filter("state=rea").matches(alice)
    assert Filter('user="unbalanced').matches(alice) is False  # taken literally, no crash


def test_view_diff_ignores_server_computed_ages() -> None:
    view = PoolView()
    assert view.apply([doc()], complete=True) == ({"alice-demo-1"}, set())
    assert view.apply([doc(age_s=5.0, idle_s=5.0)], complete=True) == (set(), set())
    assert view.apply([doc(use_count=2)], complete=False) == ({"alice-demo-1"}, set())
    assert view.apply([], complete=True) == (set(), {"alice-demo-1"})


def test_view_orders_and_counts() -> None:
    view = PoolView()
    view.apply(
        [
            doc("carol-demo-3", created_at=3.0),
            doc("alice-demo-1", created_at=1.0, use_count=5),
            doc("bob-demo-2", created_at=2.0, state="failed"),
        ],
        complete=True,
    )
    assert view.ordered("user", False, Filter()) == ["alice-demo-1", "bob-demo-2", "carol-demo-3"]
    assert view.ordered("uses", True, Filter())[0] == "alice-demo-1"
    assert view.ordered("uses", False, Filter())[-1] == "alice-demo-1"
    assert view.ordered("state", False, Filter())[0] == "bob-demo-2"
    assert view.user_counts() == {"alice": 1, "carol": 1}


def test_ended_sessions_are_hidden_unless_asked_for_by_the_word_the_row_shows() -> None:
    ended = doc("bob-demo-2", state="terminated")
    assert state_text(ended, 1000).plain == "· ended"
    assert not Filter().matches(ended) and Filter(show_ended=True).matches(ended)
    assert Filter("state:ended").matches(ended) and Filter("state:term").matches(ended)
    assert Filter("ended", show_ended=True).matches(ended)
    assert not Filter("state:ended").matches(doc())


def test_dead_rows_do_not_tick() -> None:
    from tui.columns import COLUMNS

    ended = doc(state="terminated")
    for key in ("age", "idle"):
        assert COLUMNS[key].render(ended, 1000, 5).plain == "-"
        assert COLUMNS[key].render(ended, 9000, 5).plain == "-"


def test_sorts_follow_the_shown_value_whatever_order_documents_arrived_in() -> None:
    view = PoolView()
    newest_first = [
        doc("carol-demo-3", created_at=3.0, last_used_at=3.0, use_count=1),
        doc("bob-demo-2", created_at=2.0, last_used_at=9.0, use_count=3),
        doc("alice-demo-1", created_at=1.0, last_used_at=1.0, use_count=2),
    ]
    view.apply(newest_first, complete=True)
    oldest_first = ["alice-demo-1", "bob-demo-2", "carol-demo-3"]
    assert view.ordered("age", True, Filter()) == oldest_first  # AGE ▼: biggest age on top
    assert view.ordered("age", False, Filter()) == oldest_first[::-1]
    assert view.ordered("idle", False, Filter()) == ["bob-demo-2", "carol-demo-3", "alice-demo-1"]
    assert view.ordered("uses", False, Filter()) == ["carol-demo-3", "alice-demo-1", "bob-demo-2"]
