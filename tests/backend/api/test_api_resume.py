"""Both clients resume the event stream after the last event id they saw."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

from backend.api.server import ApiServer
from backend.client import LocalClient
from backend.http_client import HttpClient
from backend.service import Backend
from tests.backend.api.conftest import TOKEN


async def test_both_clients_resume_after_an_event_id_with_every_missed_event(
    served: ApiServer, memory_backend: Backend
) -> None:
    bus = memory_backend.bus
    await memory_backend.pool.acquire("ana")
    seen = bus.event_id(bus.recent()[-1])  # the last event a client saw before its link went
    await memory_backend.pool.acquire("ben")  # what it missed
    missed = bus.since(seen)[0]
    assert any(e.kind.value == "created" and e.user == "ben" for e in missed)
    remote = HttpClient(served.url, TOKEN)
    try:
        for client in (remote, LocalClient(memory_backend)):
            stream = cast(AsyncGenerator[dict[str, Any], None], client.events(after=seen))
            got = [await asyncio.wait_for(anext(stream), 5) for _ in missed]
            await stream.aclose()
            assert [e["id"] for e in got] == [bus.event_id(e) for e in missed]
            assert [e["kind"] for e in got] == [e.kind.value for e in missed]
            ready = next(e for e in got if e["kind"] == "ready")
            assert ready["data"]["session"]["user"] == "ben"
            assert ready["data"]["session"]["state"] == "ready"
    finally:
        await remote.close()
