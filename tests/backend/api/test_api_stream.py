"""``GET /events`` over a real connection, and ``GET /metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator

import httpx

from backend.api.server import ApiServer
from backend.events import EventBus, EventKind
from backend.service import Backend
from tests.backend.api.conftest import AUTH, eventually


@contextlib.asynccontextmanager
async def _lines(
    client: httpx.AsyncClient, **params: str | list[str]
) -> AsyncIterator[asyncio.Queue[str]]:
    """The stream's lines, fed into a queue by a task (the test awaits what it needs)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    async with client.stream("GET", "/events", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")

        async def pump() -> None:
            async for line in response.aiter_lines():
                await queue.put(line)

        task = asyncio.get_running_loop().create_task(pump())
        try:
            yield queue
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _next_data(queue: asyncio.Queue[str]) -> dict[str, object]:
    while True:
        line = await asyncio.wait_for(queue.get(), 5)
        if line.startswith("data: "):
            return json.loads(line[6:])


async def test_events_stream_one_json_per_event(served: ApiServer, memory_backend: Backend) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        async with _lines(client) as lines:
            assert await asyncio.wait_for(lines.get(), 5) == ": podwarden event stream"
            await client.post("/sessions", json={"user": "alice"})
            kinds = []
            while "ready" not in kinds:
                event = await _next_data(lines)
                assert set(event) == {
                    *("id", "seq", "ts", "kind", "session_id", "user", "message", "data")
                }
                kinds.append(event["kind"])
            assert kinds[0] == "created"
            # nothing happens: heartbeats keep the connection visibly alive
            while await asyncio.wait_for(lines.get(), 5) != ": heartbeat":
                pass


async def _blocks(queue: asyncio.Queue[str]) -> AsyncIterator[dict[str, str]]:
    """SSE blocks as field dicts (``id``, ``event``, ``data``); comments skipped."""
    block: dict[str, str] = {}
    while True:
        line = await asyncio.wait_for(queue.get(), 5)
        if not line:
            if block:
                yield block
            block = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            block[name] = value


async def test_a_reconnecting_client_gets_what_it_missed_once(
    served: ApiServer, memory_backend: Backend
) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        async with _lines(client) as lines:
            await client.post("/sessions", json={"user": "alice"})
            async for block in _blocks(lines):
                event = json.loads(block["data"])
                assert block["id"] == event["id"] == f"{memory_backend.bus.boot}-{event['seq']}"
                if event["kind"] == "ready":
                    last_seen = block["id"]
                    break
        # while nobody listens: bob's session starts and becomes ready
        await client.post("/sessions", json={"user": "bob"})
        missed = [e.seq for e in memory_backend.bus.since(last_seen)[0]]
        assert missed, "bob's start published events"
        for resume in ({"headers": {"Last-Event-ID": last_seen}}, {"params": {"after": last_seen}}):
            async with client.stream("GET", "/events", **resume) as response:  # type: ignore[arg-type]
                assert response.status_code == 200
                queue: asyncio.Queue[str] = asyncio.Queue()
                pump = asyncio.get_running_loop().create_task(_pump(response, queue))
                try:
                    seqs = []
                    async for block in _blocks(queue):
                        assert "event" not in block, "nothing was lost"
                        seqs.append(json.loads(block["data"])["seq"])
                        if len(seqs) == len(missed):
                            break
                    assert seqs == missed, "each missed event once, in order"
                finally:
                    pump.cancel()
                    await asyncio.gather(pump, return_exceptions=True)


async def _pump(response: httpx.Response, queue: asyncio.Queue[str]) -> None:
    async for line in response.aiter_lines():
        await queue.put(line)


async def test_an_id_from_an_earlier_run_says_what_is_unknown(
    served: ApiServer, memory_backend: Backend
) -> None:
    await memory_backend.pool.acquire("carol")
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        headers = {"Last-Event-ID": "00000000-41"}
        async with client.stream("GET", "/events", headers=headers) as response:
            queue: asyncio.Queue[str] = asyncio.Queue()
            pump = asyncio.get_running_loop().create_task(_pump(response, queue))
            try:
                blocks = _blocks(queue)
                first = await anext(blocks)
                assert first["event"] == "dropped"
                assert json.loads(first["data"])["dropped"] is None
                assert "restarted" in json.loads(first["data"])["message"]
                replayed = json.loads((await anext(blocks))["data"])
                assert replayed["user"] == "carol", "this run's events follow"
            finally:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)


def test_events_no_longer_buffered_are_counted() -> None:
    bus = EventBus(replay=3)
    first = bus.publish(EventKind.LOG, "one")
    for n in range(5):
        bus.publish(EventKind.LOG, f"more {n}")
    events, lost = bus.since(bus.event_id(first))
    assert [e.message for e in events] == ["more 2", "more 3", "more 4"]
    assert lost == 2
    assert bus.since(bus.event_id(events[-1])) == ([], 0)


async def test_a_malformed_resume_id_is_refused_by_name(served: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        response = await client.get("/events", headers={"Last-Event-ID": "$(id)"})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "Last-Event-ID"
        response = await client.get("/events", params={"after": "12"})
        assert response.status_code == 422 and response.json()["error"]["field"] == "after"


async def test_events_filtered_by_kind(served: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        async with _lines(client, kinds=["ready", "failed"]) as lines:
            await client.post("/sessions", json={"user": "alice"})
            event = await _next_data(lines)
            assert event["kind"] == "ready"


async def test_subscription_closes_when_the_client_goes(
    served: ApiServer, memory_backend: Backend
) -> None:
    before = memory_backend.bus.subscriber_count
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH) as client:
        async with _lines(client) as lines:
            await asyncio.wait_for(lines.get(), 5)
            assert memory_backend.bus.subscriber_count == before + 1
    await eventually(lambda: memory_backend.bus.subscriber_count == before)


async def test_server_stop_ends_open_streams(memory_backend: Backend) -> None:
    from backend.api.server import serve_api
    from tests.backend.api.conftest import TOKEN

    server = await serve_api(memory_backend, "127.0.0.1", 0, token=TOKEN, heartbeat=60)
    before = memory_backend.bus.subscriber_count
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        async with _lines(client) as lines:
            await asyncio.wait_for(lines.get(), 5)
            await asyncio.wait_for(server.stop(), 3)
    assert not server.running
    assert memory_backend.bus.subscriber_count == before


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_metrics_prometheus_text(api: httpx.AsyncClient, memory_backend: Backend) -> None:
    await api.post("/sessions", json={"user": "a"})
    await api.post("/sessions", json={"user": "a"})
    await api.post("/sessions", json={"user": "b"})
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    assert text.endswith("\n")
    for line in text.splitlines():
        assert re.fullmatch(r"# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? [-+0-9.eInf]+", line), line
    samples = _samples(text)
    assert samples['podwarden_sessions{state="ready"}'] == 2
    assert samples["podwarden_active_sessions"] == 2
    assert samples["podwarden_max_sessions"] == 10
    assert samples['podwarden_acquires_total{outcome="new"}'] == 2
    assert samples['podwarden_acquires_total{outcome="reused"}'] == 1
    assert samples['podwarden_acquires_total{outcome="refused"}'] == 0
    assert samples['podwarden_start_seconds_bucket{le="+Inf"}'] == 2
    assert samples["podwarden_start_seconds_count"] == 2
    assert samples["podwarden_evictions_total"] == 0
    assert 'podwarden_refreshes_total{outcome="ok"}' in samples
    assert samples["podwarden_start_failures_total"] == 0
    assert samples["podwarden_healthy"] == 1
    assert "# TYPE podwarden_start_seconds histogram" in text
    # the daemon's own figures, read at scrape time by the client library's collectors
    assert samples["process_open_fds"] > 0 and samples["process_max_fds"] > 0
    assert samples["process_resident_memory_bytes"] > 0
    assert "process_cpu_seconds_total" in samples
