"""Session ids, user names and the session state machine."""

from __future__ import annotations

import re

import pytest

from backend.errors import InvalidRequest, InvalidTransition
from backend.models import Session, SessionState, make_session_id, validate_user

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def test_plain_names_keep_the_field_report_shape() -> None:
    assert make_session_id("admin", "firefox-browser", "1a791b8d") == (
        "admin-firefox-browser-1a791b8d"
    )


@pytest.mark.parametrize(
    "user",
    ["Gustavoa", "a/b", "../etc", "two words", 'quo"te', "o'brien", "jürgen", "用户", "x" * 128],
)
def test_awkward_user_names_map_to_valid_dns_labels(user: str) -> None:
    session_id = make_session_id(user, "demo")
    assert DNS_LABEL.match(session_id), session_id
    assert len(session_id) <= 63
    assert "/" not in session_id and ".." not in session_id


def test_users_that_clean_up_alike_never_share_a_prefix() -> None:
    a = make_session_id("Alice", "demo", "00000000")
    b = make_session_id("alice", "demo", "00000000")
    c = make_session_id("ALICE", "demo", "00000000")
    d = make_session_id("a/lice", "demo", "00000000")
    e = make_session_id("a-lice", "demo", "00000000")
    assert len({a, b, c, d, e}) == 5


@pytest.mark.parametrize("user", ["", "  ", "x" * 300, "a\nb", "tab\there", "nul\x00"])
def test_unusable_user_names_are_refused_by_field(user: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_user(user)
    assert info.value.field == "user"


def test_state_machine_refuses_illegal_transitions() -> None:
    session = Session("s", "u", "demo")
    with pytest.raises(InvalidTransition):
        session.transition(SessionState.TERMINATED)
    session.transition(SessionState.READY)
    session.transition(SessionState.REFRESHING)
    session.transition(SessionState.READY)
    session.transition(SessionState.TERMINATING)
    with pytest.raises(InvalidTransition):
        session.transition(SessionState.READY)
    session.transition(SessionState.TERMINATED)
    assert not session.state.is_live
