"""Drain: the pool stops admitting new sessions, for maintenance, and can say so.

While drained, an acquire that would start a session (or claim a standby) is refused with
``Draining`` (503, ``Retry-After``, a message naming the drain); a reuse of a live session
is still served, and starts already in flight finish. With ``evict_idle`` the culler also
stops every session as soon as it is idle (``backend.culling``), so the pool empties as
its users finish. The drain is a flag in the store, so it survives a restart; ``undrain``
clears it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from backend.errors import Draining

__all__ = ["DRAIN_FLAG", "DRAIN_RETRY_AFTER", "DrainState"]

DRAIN_FLAG = "drain"
"""The store flag holding the drain (JSON ``{"since", "evict_idle"}``)."""

DRAIN_RETRY_AFTER = 60.0
"""Seconds a refused caller is told to wait: a drain lasts minutes, not seconds."""


@dataclass
class DrainState:
    """Whether the pool is drained, since when, and whether idle sessions go."""

    active: bool = False
    since: float | None = None
    evict_idle: bool = False

    def begin(self, evict_idle: bool, now: float | None = None) -> None:
        if not self.active:
            self.since = time.time() if now is None else now
        self.active = True
        self.evict_idle = evict_idle

    def end(self) -> None:
        self.active, self.since, self.evict_idle = False, None, False

    def refusal(self) -> Draining:
        """The error an acquire for a new session gets now."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since or time.time()))
        return Draining(
            f"podwarden is draining (since {when}): it starts no new sessions; a user's "
            "existing session is still handed back. Retry later, or undrain "
            "(podwarden undrain, POST /pool/undrain)",
            retry_after=DRAIN_RETRY_AFTER,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"draining": self.active, "since": self.since, "evict_idle": self.evict_idle}

    def to_flag(self) -> str | None:
        """The store flag's value; None clears it."""
        if not self.active:
            return None
        return json.dumps({"since": self.since, "evict_idle": self.evict_idle})

    @classmethod
    def from_flag(cls, value: str | None) -> DrainState:
        if not value:
            return cls()
        try:
            data = json.loads(value)
            return cls(True, float(data.get("since") or time.time()), bool(data.get("evict_idle")))
        except (ValueError, TypeError, AttributeError):
            return cls(True, time.time(), False)  # unreadable: stay drained, to be safe
