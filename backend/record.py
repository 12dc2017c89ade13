"""One record per session: everything the pool holds about it, in one place.

The ``Session`` is what people and the API see; the ``SessionRecord`` around it is what
the pool needs to run it: whether it answers reuse acquires for its (user, template), the
local port and open tunnel, the credentials (in memory only), the start in flight and the
stop task, and when its workload last passed a liveness check. Every piece of a session's
state lives here and nowhere else, so nothing can be forgotten when a session ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from backend.models import Session
from backend.runtime.base import Tunnel

__all__ = ["Flight", "Key", "SessionRecord"]

Key = tuple[str, str]
"""(user, template): what a reuse acquire looks a session up by."""


@dataclass(eq=False)
class Flight:
    """One start in flight: every acquire that waits for it awaits ``future``.

    A fresh start has no record until the pool has room for it (``record`` is None while
    it waits in the queue); a recycle or resumed start belongs to its record from the
    beginning.
    """

    key: Key
    future: asyncio.Future[Session]
    record: SessionRecord | None = None
    task: asyncio.Task[None] | None = None
    announced: bool = False
    """Whether a caller was told this start's session exists (``wait: false``); with
    callers still waiting when it is ready, the workload is not new to the next reuse."""
    callers: int = 0
    """Acquires awaiting the future now; when the last gives up before the session
    exists, the start is withdrawn from the queue (a cancelled waiter holds no slot)."""


@dataclass(eq=False)
class SessionRecord:
    """A session and everything the pool keeps for it while it is known."""

    session: Session
    primary: bool
    """Answers reuse acquires for its (user, template)."""
    port: int | None = None
    """The local tunnel port it holds, from creation until it ends."""
    tunnel: Tunnel | None = None
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    """Environment variables for the workload; never persisted."""
    credential_names: tuple[str, ...] = ()
    """The names of the credentials it was started with (persisted: they are no secret),
    so that a restart which lost the values can say so."""
    stop_queued: bool = False
    """Its stop waits for a lost target: a shutdown leaves it to the next start."""
    requires: dict[str, str] = field(default_factory=dict)
    """Target labels the request asked for (``runtime.kind = "multi"``); not persisted."""
    flight: Flight | None = None
    stop_task: asyncio.Task[None] | None = None
    announced: bool = False
    """Whether the current workload has been handed to a caller. A workload started in
    the background (a recycle) is new to the next caller: that answer says
    ``is_new_session`` true."""
    checked_at: float = 0.0
    """Pool-clock time of the last successful liveness check (or of becoming ready)."""
    checking: asyncio.Task[bool] | None = None
    """The liveness check running now; concurrent stale reuses await the same one."""
    tunnel_bytes_seen: int = 0
    """The tunnel's byte count at the last activity sample (``backend.culling``)."""

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def key(self) -> Key:
        return (self.session.user, self.session.template)
