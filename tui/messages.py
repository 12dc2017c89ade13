"""App-wide messages: how backend news reaches the widgets, as plain dataclasses.

Backend to UI flows only through these. The event worker never touches a widget: it
queues raw events and posts ``EventsArrived``; consecutive ``EventsArrived`` replace each
other (``can_replace``), so a burst of a thousand events costs one handler call, and the
handler drains the queue in one go. Snapshots of the pool come back from sync workers as
``PoolSynced``; link changes as ``LinkChanged``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

__all__ = ["CommandDone", "EventsArrived", "LinkChanged", "PoolSynced"]


@dataclass
class EventsArrived(Message):
    """Events are waiting in the app's queue (the message itself carries none)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsArrived)


@dataclass
class PoolSynced(Message):
    """Fresh session documents (and maybe health) read from the backend."""

    sessions: list[dict[str, Any]]
    """Session documents, as ``GET /sessions`` returns them."""
    complete: bool
    """True when ``sessions`` is the whole pool (missing ids are gone)."""
    health: dict[str, Any] | None = None
    """The ``/health`` document read with them, if it was."""
    missing: list[str] = field(default_factory=list)
    """Ids asked for that the backend no longer knows."""


@dataclass
class LinkChanged(Message):
    """The link to the backend changed: ``embedded``, ``live``, ``connecting``, ``stale``."""

    state: str
    detail: str = ""


@dataclass
class CommandDone(Message):
    """A command worker finished: what to tell the operator."""

    title: str
    message: str
    session: dict[str, Any] | None = None
