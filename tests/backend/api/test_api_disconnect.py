"""A client that disconnects while its acquire waits (a script's timeout, Ctrl-C).

Raw sockets against the real server: the request is written, the connection closed half
way, and the pool is checked for what it kept. Nothing waits for a client that is gone,
no slot is leaked, and a session started for nobody is new to the next caller.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import httpx
import pytest

from backend.api.server import ApiServer
from backend.models import SessionState
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend
from tests.backend.api.conftest import AUTH, TOKEN, eventually


async def _post_and_leave(
    server: ApiServer, user: str, *, chunked: bool = False
) -> asyncio.StreamWriter:
    """Send ``POST /sessions`` for ``user``; the caller closes the returned writer to leave.

    ``chunked`` sends the body without Content-Length, which the FastAPI route answers
    instead of the shortcut: both must let go.
    """
    address = urlsplit(server.url)
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    body = json.dumps({"user": user}).encode()
    head = (
        f"POST /sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\n"
    )
    if chunked:
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        head += "Transfer-Encoding: chunked\r\n\r\n"
    else:
        payload = body
        head += f"Content-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + payload)
    await writer.drain()
    return writer


async def _leave(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("chunked", [False, True], ids=["shortcut", "routed"])
async def test_a_start_its_client_left_goes_on_and_is_new_to_the_next_caller(
    served: ApiServer, memory_backend: Backend, chunked: bool
) -> None:
    runtime = memory_backend.runtime
    assert isinstance(runtime, MemoryRuntime)
    runtime.ready_gate = asyncio.Event()
    pool = memory_backend.pool
    writer = await _post_and_leave(served, "alice", chunked=chunked)
    await eventually(lambda: any(s.user == "alice" for s in pool.list()))
    await _leave(writer)
    await eventually(lambda: all(f.callers == 0 for f in pool._flights.values()))
    runtime.ready_gate.set()
    await eventually(lambda: any(s.state is SessionState.READY for s in pool.list()))
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        first = (await client.post("/sessions", json={"user": "alice"})).json()
        again = (await client.post("/sessions", json={"user": "alice"})).json()
    assert first["is_new_session"] is True, "nobody was handed it before"
    assert again["is_new_session"] is False and again["session_id"] == first["session_id"]
    assert pool.active_count == 1 and pool.user_count("alice") == 1


async def test_a_queued_client_that_leaves_gives_its_place_back(
    served: ApiServer, memory_backend: Backend
) -> None:
    pool = memory_backend.pool
    pool.settings.pool.max_sessions, pool.settings.pool.when_full = 1, "queue"
    holder = await pool.acquire("holder")
    writer = await _post_and_leave(served, "quitter")
    await eventually(lambda: pool.queued == 1)
    await _leave(writer)
    await eventually(lambda: pool.queued == 0)
    assert not any(s.user == "quitter" for s in pool.list()), "no start for a client gone"
    await pool.terminate(holder.session.session_id)
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        answer = await asyncio.wait_for(client.post("/sessions", json={"user": "next"}), 5)
    assert answer.status_code == 200 and answer.json()["is_new_session"] is True
    assert pool.active_count == 1, "the slot the quitter waited for was not leaked"


async def test_a_start_waiting_for_room_is_withdrawn_when_its_client_leaves(
    served: ApiServer, memory_backend: Backend
) -> None:
    """Under evict-lru, a start waits while nothing is evictable (all still starting)."""
    runtime = memory_backend.runtime
    assert isinstance(runtime, MemoryRuntime)
    pool = memory_backend.pool
    pool.settings.pool.max_sessions = 1
    runtime.ready_gate = asyncio.Event()
    starting = asyncio.ensure_future(pool.acquire("first"))
    await eventually(lambda: pool.active_count == 1)
    writer = await _post_and_leave(served, "quitter")
    await eventually(lambda: pool.queued == 1)
    await _leave(writer)
    await eventually(lambda: pool.queued == 0)
    runtime.ready_gate.set()
    assert (await starting).session.state is SessionState.READY
    assert not any(s.user == "quitter" for s in pool.list())
    assert pool.metrics.evictions == 0, "nothing was evicted for a client that left"
