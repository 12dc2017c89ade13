"""``GET /events``: the event bus as server-sent events, resumable by event id.

sse-starlette writes the stream: it sends a comment (``: heartbeat``) every ``heartbeat``
seconds, which keeps proxies from closing an idle stream and lets the server notice a
client that went away; it ends the generator when the client disconnects, and a send
stalled for ``send_timeout`` ends the stream instead of holding it forever.

Each event is one block with ``id: <boot>-<seq>`` and ``data: {json}``, so ``curl -N``
shows one line per event and a browser's ``EventSource`` resumes by itself. A client that
lost its link asks for what it missed with the ``Last-Event-ID`` header (or ``?after=``):
the stream first replays the buffered events after that id. When some of them are no
longer buffered, or the id is from an earlier run of the daemon, a named ``event:
dropped`` block says so before the replay (plain ``data:`` blocks are always bus events).
A client that reads too slowly loses the oldest events (the bus never waits for anyone)
and is told the same way.

The bus subscription is closed when the stream ends, by the client or by the server's
shutdown (``SseHub.close``), so neither leaks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent

from backend.errors import InvalidRequest
from backend.events import Event, EventBus, EventKind

__all__ = ["SseHub", "parse_event_id"]

_QUEUE = 5000
_BATCH = 200
_EVENT_ID = re.compile(r"[0-9a-f]{8}-[0-9]{1,18}")


def parse_event_id(value: str | None, field: str) -> str | None:
    """``value`` if it is an event id this server hands out (``<boot>-<seq>``)."""
    if value is None or value == "":
        return None
    if not _EVENT_ID.fullmatch(value):
        raise InvalidRequest(field, f"not an event id like 'a1b2c3d4-17' (got {value[:40]!r})")
    return value


class SseHub:
    """Opens event streams and ends them all at shutdown."""

    def __init__(self, bus: EventBus, heartbeat: float = 15.0, send_timeout: float = 30.0) -> None:
        self.bus = bus
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self._closing = asyncio.Event()
        self.open_streams = 0

    def close(self) -> None:
        """End every open stream (each finishes its current write, then returns)."""
        self._closing.set()

    def response(
        self, kinds: frozenset[EventKind] | None = None, after: str | None = None
    ) -> EventSourceResponse:
        return EventSourceResponse(
            self._stream(kinds, after),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            ping=self.heartbeat,
            ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
            send_timeout=self.send_timeout,
        )

    async def _stream(
        self, kinds: frozenset[EventKind] | None, after: str | None
    ) -> AsyncIterator[bytes]:
        # Subscribe before reading the replay buffer: an event published in between is
        # then in both, and the seq check below sends it once.
        subscription = self.bus.subscribe(maxsize=_QUEUE, kinds=kinds)
        self.open_streams += 1
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            yield b": podwarden event stream\n\n"
            sent = 0
            if after is not None:
                replay, lost = self.bus.since(after)
                if lost is None:
                    yield _dropped(
                        None,
                        f"the daemon restarted after event {after}; "
                        "what its previous run published since is lost",
                    )
                elif lost:
                    yield _dropped(lost, f"{lost} events after {after} are no longer buffered")
                wanted = [e for e in replay if kinds is None or e.kind in kinds]
                for start in range(0, len(wanted), _BATCH):
                    yield b"".join(self._frame(e) for e in wanted[start : start + _BATCH])
                sent = replay[-1].seq if replay else 0
            reported = 0
            while not self._closing.is_set():
                getter = asyncio.ensure_future(subscription.get())
                done, _ = await asyncio.wait({getter, closing}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    continue
                event = getter.result()
                if event is None:
                    return
                if subscription.dropped > reported:
                    lost = subscription.dropped - reported
                    reported = subscription.dropped
                    yield _dropped(lost, f"{lost} events lost (slow reader)")
                chunks = [self._frame(event)] if event.seq > sent else []
                # Drain what is already queued into one write: fewer syscalls under load.
                while len(chunks) < _BATCH:
                    more = subscription.get_nowait()
                    if more is None:
                        break
                    if more.seq > sent:
                        chunks.append(self._frame(more))
                if chunks:
                    yield b"".join(chunks)
        finally:
            closing.cancel()
            subscription.close()
            self.open_streams -= 1

    def _frame(self, event: Event) -> bytes:
        event_id = self.bus.event_id(event)
        payload = event.to_dict()
        payload["id"] = event_id
        body = json.dumps(payload, separators=(",", ":"))
        return f"id: {event_id}\ndata: {body}\n\n".encode()


def _dropped(count: int | None, message: str) -> bytes:
    body = json.dumps({"dropped": count, "message": message}, separators=(",", ":"))
    return f"event: dropped\ndata: {body}\n\n".encode()
