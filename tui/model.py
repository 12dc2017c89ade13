"""The console's copy of the pool: sessions by id, health, and recent events per session.

The widgets never hold backend data of their own and never call the client: the app
feeds this view from client results and events, asks it what changed, and hands the
answer to the widgets. Keeping it free of Textual makes the filter, sort and diff logic
testable and lets the benchmark measure it alone.
"""

from __future__ import annotations

import collections
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tui.format import LIVE_STATES, idle_since, state_word

__all__ = ["DEFAULT_SORT", "SORTS", "Filter", "PoolView", "sort_key", "user_filter"]

_STATE_ORDER = {
    "failed": 0,
    "unreachable": 1,
    "starting": 1,
    "refreshing": 2,
    "ready": 3,
    "terminating": 4,
}

SORTS: tuple[str, ...] = (
    "state",
    "id",
    "user",
    "template",
    "age",
    "idle",
    "cull",
    "uses",
    "res",
    "tunnel",
    "ref",
)
"""Sortable columns in the table's column order (``s`` cycles through the shown ones)."""

DEFAULT_SORT = ("age", True)
"""Oldest first: AGE descending."""


def sort_key(name: str, session: dict[str, Any]) -> Any:
    """The value a session sorts by under column ``name``: ascending means the value the
    column shows grows down the table (so ▲ and ▼ mean what they show)."""
    created = float(session.get("created_at") or 0)
    if name == "state":
        return (_STATE_ORDER.get(str(session.get("state")), 9), created)
    if name == "id":
        return (str(session.get("session_id", "")), 0.0)
    if name in ("user", "template"):
        return (str(session.get(name, "")).lower(), created)
    if name == "idle":
        return (-float(idle_since(session) or 0), created)
    if name == "cull":
        # Soonest first; pinned (never) and no policy after every timed one.
        if session.get("pinned"):
            return (float("inf"), created)
        cull_at = session.get("cull_at")
        return (float("inf") if cull_at is None else float(cull_at), created)
    if name == "uses":
        return (int(session.get("use_count") or 0), created)
    if name == "res":  # by CPU, then memory; unknown first
        cpu = session.get("cpu_percent")
        memory = session.get("memory_bytes")
        return ((-1.0 if cpu is None else float(cpu), memory or -1), created)
    if name == "tunnel":
        tunnel = session.get("tunnel") or {}
        return (int(tunnel.get("port") or 0), created)
    if name == "ref":
        return (str(session.get("runtime_ref") or ""), created)
    return (-created, str(session.get("session_id", "")))


@dataclass(frozen=True)
class Filter:
    """A parsed filter: ``user:alice state:failed demo`` (every term must match).

    ``user:``, ``state:`` and ``template:`` match that field (prefix, case-insensitive);
    ``user=`` (and the others with ``=``) match it exactly, and a value with spaces is
    quoted: ``user="Alice Smith"``. A bare word matches any of user, state, template or
    session id (substring). States match by the word the table shows (``ended``) as well
    as the API's (``terminated``). Ended sessions are hidden unless ``show_ended`` or a
    ``state`` term asks for them.
    """

    text: str = ""
    show_ended: bool = False

    @property
    def active(self) -> bool:
        return bool(self.text.strip())

    def terms(self) -> list[str]:
        """The terms, with shell-like quotes; unbalanced quotes are taken literally."""
        try:
            return shlex.split(self.text)
        except ValueError:
            return self.text.split()

    def matches(self, session: dict[str, Any]) -> bool:
        state = str(session.get("state", ""))
        asked_state = False
        for term in self.terms():
            exact = _FIELD_TERM.match(term)
            if exact is not None:
                field, op, value = exact.group(1).lower(), exact.group(2), exact.group(3).lower()
                have = str(session.get(field, "")).lower()
                if field == "state":
                    asked_state = True
                    words = (state, state_word(state))
                    if op == "=" and value not in words:
                        return False
                    if op == ":" and not any(w.startswith(value) for w in words):
                        return False
                elif (op == "=" and have != value) or (op == ":" and not have.startswith(value)):
                    return False
                continue
            haystack = " ".join(
                str(session.get(k, "")) for k in ("user", "state", "template", "session_id")
            ).lower()
            word = term.lower()
            if word not in haystack and word not in state_word(state):
                return False
        return self.show_ended or asked_state or state != "terminated"


_FIELD_TERM = re.compile(r"^(user|state|template)([:=])(.*)$", re.IGNORECASE | re.DOTALL)


def user_filter(user: str) -> str:
    """The filter text that shows exactly ``user``'s sessions."""
    return f"user={shlex.quote(user)}"


class PoolView:
    """What the console knows about the pool, and what changed since the last look."""

    def __init__(self, events_per_session: int = 12) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        """Session documents by id, in the order the backend first reported them."""
        self.health: dict[str, Any] = {}
        """The last ``/health`` document."""
        self.session_events: dict[str, collections.deque[dict[str, Any]]] = {}
        """The last few events of each session (for the detail pane)."""
        self._per_session = events_per_session

    def apply(self, docs: Iterable[dict[str, Any]], *, complete: bool) -> tuple[set[str], set[str]]:
        """Take new session documents; return (changed ids, removed ids).

        ``complete`` means ``docs`` is the whole pool: sessions missing from it are gone.
        """
        changed: set[str] = set()
        seen: set[str] = set()
        for doc in docs:
            sid = doc["session_id"]
            seen.add(sid)
            old = self.sessions.get(sid)
            if old is None or _differs(old, doc):
                self.sessions[sid] = doc
                changed.add(sid)
        removed: set[str] = set()
        if complete:
            removed = set(self.sessions) - seen
            for sid in removed:
                del self.sessions[sid]
                self.session_events.pop(sid, None)
        return changed, removed

    def forget(self, session_id: str) -> bool:
        """Drop a session the backend no longer knows; True if it was known."""
        self.session_events.pop(session_id, None)
        return self.sessions.pop(session_id, None) is not None

    def add_event(self, event: dict[str, Any]) -> None:
        """Remember a (non-log) event under its session."""
        sid = event.get("session_id")
        if not sid:
            return
        recent = self.session_events.get(sid)
        if recent is None:
            recent = self.session_events[sid] = collections.deque(maxlen=self._per_session)
        recent.append(event)

    def user_counts(self) -> collections.Counter[str]:
        """Live sessions per user (standby workloads belong to nobody yet)."""
        return collections.Counter(
            s["user"]
            for s in self.sessions.values()
            if s.get("state") in LIVE_STATES and not s.get("standby")
        )

    def ordered(self, sort: str, reverse: bool, flt: Filter) -> list[str]:
        """Ids matching ``flt`` in the order of ``sort``."""
        ids = [sid for sid, s in self.sessions.items() if flt.matches(s)]
        # Always sorted: the order documents arrived in (a resync, a restart) means nothing.
        ids.sort(key=lambda sid: sort_key(sort, self.sessions[sid]), reverse=reverse)
        return ids

    def ended(self) -> int:
        """How many ended sessions the pool still reports."""
        return sum(1 for s in self.sessions.values() if s.get("state") == "terminated")


_VOLATILE = frozenset({"age_s", "idle_s"})


def _differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when anything but the server-computed ages changed."""
    if old.keys() != new.keys():
        return True
    return any(old[k] != new[k] for k in new if k not in _VOLATILE)
