"""Requests whose client went away stop waiting.

A cold start or a queued acquire can wait for a minute. When its client disconnects in
that time (a script's timeout, Ctrl-C), nobody is left to take the answer: the waiting
acquire is cancelled, so a queued request gives its place back and a start nobody waits
for leaves the queue (the pool withdraws it). A start that already has its slot goes on
and is kept as the user's session, marked new for whoever asks next.

The ASGI server reports the disconnect as the next message on ``receive`` once the body
has been read, so watching for it costs one task, made only for answers that wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

__all__ = ["ClientGone", "unless_client_leaves"]

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result, or ``ClientGone`` (with ``work`` cancelled) if the client leaves."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientGone
    return task.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
