"""The console's copy of the pool: sessions by id, health, and recent events per session.

The widgets never hold backend data of their own and never call the client: the app
feeds this view from client results and events, asks it what changed, and hands the
answer to the widgets. Keeping it free of Textual makes the filter, sort and diff logic
testable and lets the benchmark measure it alone.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tui.format import LIVE_STATES

__all__ = ["SORTS", "Filter", "PoolView"]

_STATE_ORDER = {"failed": 0, "starting": 1, "refreshing": 2, "ready": 3, "terminating": 4}

SORTS: tuple[tuple[str, str], ...] = (
    ("created", "created"),
    ("user", "user"),
    ("state", "state"),
    ("idle", "idle"),
    ("uses", "uses"),
    ("id", "id"),
)
"""Sort orders the ``s`` key cycles through: (name, column the arrow marks)."""


def sort_key(name: str, session: dict[str, Any]) -> Any:
    """The value a session sorts by under sort order ``name``."""
    if name == "user":
        return (str(session.get("user", "")).lower(), session.get("created_at") or 0)
    if name == "state":
        return (_STATE_ORDER.get(str(session.get("state")), 9), session.get("created_at") or 0)
    if name == "idle":
        return session.get("last_used_at") or 0
    if name == "uses":
        return -(session.get("use_count") or 0)
    if name == "id":
        return session.get("session_id", "")
    return session.get("created_at") or 0


@dataclass(frozen=True)
class Filter:
    """A parsed filter: ``user:alice state:failed demo`` (every term must match).

    ``user:``, ``state:`` and ``template:`` match that field (prefix, case-insensitive);
    a bare word matches any of user, state, template or session id (substring).
    """

    text: str = ""

    @property
    def active(self) -> bool:
        return bool(self.text.strip())

    def matches(self, session: dict[str, Any]) -> bool:
        for term in self.text.lower().split():
            field, sep, value = term.partition(":")
            if sep and field in ("user", "state", "template"):
                if not str(session.get(field, "")).lower().startswith(value):
                    return False
                continue
            haystack = " ".join(
                str(session.get(k, "")) for k in ("user", "state", "template", "session_id")
            ).lower()
            if term not in haystack:
                return False
        return True


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
        """Live sessions per user."""
        return collections.Counter(
            s["user"] for s in self.sessions.values() if s.get("state") in LIVE_STATES
        )

    def starting(self) -> list[str]:
        """Ids of sessions that are starting (their phase changes without events)."""
        return [sid for sid, s in self.sessions.items() if s.get("state") == "starting"]

    def ordered(self, sort: str, reverse: bool, flt: Filter) -> list[str]:
        """Ids matching ``flt`` in the order of ``sort``."""
        ids = [sid for sid, s in self.sessions.items() if flt.matches(s)]
        if sort != "created" or reverse:
            ids.sort(key=lambda sid: sort_key(sort, self.sessions[sid]), reverse=reverse)
        return ids


_VOLATILE = frozenset({"age_s", "idle_s"})


def _differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when anything but the server-computed ages changed."""
    if old.keys() != new.keys():
        return True
    return any(old[k] != new[k] for k in new if k not in _VOLATILE)
