"""``GET /events``: the event bus as server-sent events.

Each event is one ``data: {json}`` block, so ``curl -N`` shows one line per event. A
comment line (``: heartbeat``) goes out when nothing happened for ``heartbeat`` seconds,
which keeps proxies from closing an idle stream and lets the server notice a client that
went away. The bus subscription is closed when the client disconnects (Starlette cancels
the generator) or when the server shuts down (``SseHub.close``), so neither leaks.

A client that reads too slowly loses the oldest events (the bus never waits for anyone)
and is told with a named ``event: dropped`` block saying how many (plain ``data:`` blocks
are always bus events).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from backend.events import EventBus, EventKind

__all__ = ["SseHub"]

_QUEUE = 5000


class SseHub:
    """Opens event streams and ends them all at shutdown."""

    def __init__(self, bus: EventBus, heartbeat: float = 15.0) -> None:
        self.bus = bus
        self.heartbeat = heartbeat
        self._closing = asyncio.Event()
        self.open_streams = 0

    def close(self) -> None:
        """End every open stream (each finishes its current write, then returns)."""
        self._closing.set()

    def response(self, kinds: frozenset[EventKind] | None = None) -> StreamingResponse:
        return StreamingResponse(
            self._stream(kinds),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, kinds: frozenset[EventKind] | None) -> AsyncIterator[bytes]:
        subscription = self.bus.subscribe(maxsize=_QUEUE, kinds=kinds)
        self.open_streams += 1
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            yield b": podwarden event stream\n\n"
            reported = 0
            while not self._closing.is_set():
                getter = asyncio.ensure_future(subscription.get())
                done, _ = await asyncio.wait(
                    {getter, closing}, timeout=self.heartbeat, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    if not done:
                        yield b": heartbeat\n\n"
                    continue
                event = getter.result()
                if event is None:
                    return
                if subscription.dropped > reported:
                    lost = subscription.dropped - reported
                    reported = subscription.dropped
                    yield b"event: dropped\n" + _frame(
                        {"dropped": lost, "message": f"{lost} events lost (slow reader)"}
                    )
                chunks = [_frame(event.to_dict())]
                # Drain what is already queued into one write: fewer syscalls under load.
                while len(chunks) < 200:
                    more = subscription.get_nowait()
                    if more is None:
                        break
                    chunks.append(_frame(more.to_dict()))
                yield b"".join(chunks)
        finally:
            closing.cancel()
            subscription.close()
            self.open_streams -= 1


def _frame(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
