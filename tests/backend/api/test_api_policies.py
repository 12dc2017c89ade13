"""Pinning, drain and bulk delete over the HTTP API, the HTTP client and the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from backend.cli import main
from backend.config import Settings
from backend.errors import Draining, PinLimit, SessionEnded, SessionNotFound
from backend.events import EventKind
from backend.http_client import HttpClient
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend
from tests.backend.api.conftest import AUTH, TOKEN, ThreadedServer, error_of


async def test_pin_and_unpin_mark_the_session_and_refuse_unknown_and_ended(
    api: httpx.AsyncClient, memory_backend: Backend
) -> None:
    sid = (await api.post("/sessions", json={"user": "ana"})).json()["session_id"]
    pinned = await api.post(f"/sessions/{sid}/pin")
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    assert (await api.get(f"/sessions/{sid}")).json()["pinned"] is True
    assert (await api.get("/health")).json()["pinned_sessions"] == 1
    unpinned = await api.post(f"/sessions/{sid}/unpin")
    assert unpinned.status_code == 200 and unpinned.json()["pinned"] is False
    missing = await api.post("/sessions/nobody-demo-00000000/pin")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    await memory_backend.pool.terminate(sid)
    ended = await api.post(f"/sessions/{sid}/pin")
    assert ended.status_code == 409 and error_of(ended)["code"] == "session_ended"
    assert "has ended (terminated)" in error_of(ended)["message"]
    kinds = [e.kind for e in memory_backend.bus.recent(50)]
    assert EventKind.PINNED in kinds and EventKind.UNPINNED in kinds


async def test_max_pinned_bounds_the_pins(api: httpx.AsyncClient, memory_backend: Backend) -> None:
    memory_backend.settings.pool.max_pinned = 1
    first = (await api.post("/sessions", json={"user": "ana"})).json()["session_id"]
    second = (await api.post("/sessions", json={"user": "bo"})).json()["session_id"]
    assert (await api.post(f"/sessions/{first}/pin")).status_code == 200
    refused = await api.post(f"/sessions/{second}/pin")
    assert refused.status_code == 409 and error_of(refused)["code"] == "pin_limit"
    assert "max_pinned = 1" in error_of(refused)["message"]


async def test_when_every_session_is_pinned_evict_lru_refuses_instead_of_evicting(
    api: httpx.AsyncClient, memory_backend: Backend
) -> None:
    pool = memory_backend.settings.pool
    pool.max_sessions = 2
    ids = [(await api.post("/sessions", json={"user": u})).json()["session_id"] for u in "ab"]
    for sid in ids:
        await api.post(f"/sessions/{sid}/pin")
    full = await api.post("/sessions", json={"user": "c", "wait": False})
    assert full.status_code == 503 and error_of(full)["code"] == "capacity"
    assert "Retry-After" in full.headers
    assert {s["state"] for s in (await api.get("/sessions")).json()} == {"ready"}
    await api.post(f"/sessions/{ids[0]}/unpin")
    served = await api.post("/sessions", json={"user": "c"})
    assert served.status_code == 200
    assert (await api.get(f"/sessions/{ids[0]}")).json()["state"] in ("terminating", "terminated")
    assert (await api.get(f"/sessions/{ids[1]}")).json()["state"] == "ready"


async def test_delete_every_session_of_a_user_answers_202_with_the_count(
    api: httpx.AsyncClient,
) -> None:
    for reuse in (True, False):
        await api.post("/sessions", json={"user": "ana", "reuse": reuse})
    other = (await api.post("/sessions", json={"user": "bo"})).json()["session_id"]
    answer = await api.delete("/sessions", params={"user": "ana"})
    assert answer.status_code == 202
    body = answer.json()
    assert body["user"] == "ana" and body["count"] == 2 and len(body["session_ids"]) == 2
    states = {s["session_id"]: s["state"] for s in (await api.get("/sessions")).json()}
    assert all(states[sid] in ("terminating", "terminated") for sid in body["session_ids"])
    assert states[other] == "ready"
    again = await api.delete("/sessions", params={"user": "ana"})
    assert again.status_code == 202 and again.json()["count"] == 0
    missing = await api.delete("/sessions")
    assert missing.status_code == 422 and error_of(missing)["field"] == "user"


async def test_drain_refuses_new_sessions_serves_reuse_and_says_so_in_health(
    api: httpx.AsyncClient, memory_backend: Backend
) -> None:
    kept = (await api.post("/sessions", json={"user": "ana"})).json()["session_id"]
    drained = await api.post("/pool/drain", json={})
    assert drained.status_code == 200 and drained.json()["draining"] is True
    refused = await api.post("/sessions", json={"user": "bo"})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "60"
    error = error_of(refused)
    assert error["code"] == "draining" and "podwarden is draining" in error["message"]
    reused = await api.post("/sessions", json={"user": "ana"})
    assert reused.status_code == 200 and reused.json()["session_id"] == kept
    health = (await api.get("/health")).json()
    assert health["status"] == "draining" and health["draining"] is True
    assert memory_backend.pool.metrics.refused_draining == 1
    metrics = (await api.get("/metrics")).text
    assert "podwarden_draining 1.0" in metrics
    assert "podwarden_refused_draining_total 1.0" in metrics
    undrained = await api.post("/pool/undrain")
    assert undrained.json() == {"draining": False, "since": None, "evict_idle": False}
    assert (await api.post("/sessions", json={"user": "bo"})).status_code == 200
    assert (await api.get("/health")).json()["status"] == "healthy"


async def test_a_drain_refuses_the_requests_already_queued_for_room(
    api: httpx.AsyncClient, memory_backend: Backend
) -> None:
    pool = memory_backend.settings.pool
    pool.when_full, pool.max_sessions, pool.queue_timeout = "queue", 1, 30
    kept = (await api.post("/sessions", json={"user": "ana"})).json()["session_id"]
    queued = memory_backend.bus.subscribe(kinds={EventKind.QUEUED})
    waiting = [
        asyncio.create_task(api.post("/sessions", json={"user": user})) for user in ("bo", "cy")
    ]
    for _ in waiting:
        assert await asyncio.wait_for(queued.get(), 5) is not None
    queued.close()
    assert memory_backend.pool.queued == 2
    await api.post("/pool/drain", json={})
    answers = await asyncio.wait_for(asyncio.gather(*waiting), 5)
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "60"
        assert error_of(answer)["code"] == "draining"
    assert memory_backend.pool.queued == 0
    assert memory_backend.pool.metrics.refused_draining == 2
    drained = next(e for e in memory_backend.bus.recent(50) if e.kind is EventKind.DRAINING)
    assert drained.data["withdrawn"] == 2 and "2 queued request(s) refused" in drained.message
    sessions = (await api.get("/sessions")).json()
    assert [s["session_id"] for s in sessions if s["state"] != "terminated"] == [kept]
    assert memory_backend.pool.active_count == 1


async def test_a_drain_survives_a_restart(settings: Settings) -> None:
    runtime = MemoryRuntime()
    backend = Backend(settings, runtime=runtime)
    await backend.start()
    backend.pool.set_drain(True, evict_idle=True)
    await backend.stop()
    again = Backend(settings, runtime=runtime)
    await again.start()
    try:
        assert again.pool.drain.active and again.pool.drain.evict_idle
        with pytest.raises(Draining):
            await again.pool.acquire("ana")
        again.pool.set_drain(False)
    finally:
        await again.stop(stop_sessions=True)
    third = Backend(settings, runtime=runtime)
    await third.start()
    assert not third.pool.drain.active
    await third.stop()


async def test_drain_with_evict_idle_stops_sessions_as_they_go_idle(
    memory_backend: Backend,
) -> None:
    pool = memory_backend.pool
    now = [5000.0]
    pool.clock = lambda: now[0]
    idle = (await pool.acquire("ana")).session
    busy = (await pool.acquire("bo")).session
    record = pool.record(busy.session_id)
    assert record is not None and record.tunnel is not None
    record.tunnel.active = 1  # type: ignore[attr-defined]
    pool.set_drain(True, evict_idle=True)
    now[0] += 1
    memory_backend.culler.round()
    now[0] += 1
    assert memory_backend.culler.round() == 1
    assert idle.state.value in ("terminating", "terminated") and busy.state.value == "ready"
    assert pool.metrics.drained_idle == 1


async def test_the_http_client_speaks_the_policy_routes(
    threaded: ThreadedServer,
) -> None:
    async with HttpClient(threaded.url, TOKEN) as client:
        sid = (await client.acquire("ana"))["session_id"]
        assert (await client.pin(sid))["pinned"] is True
        assert (await client.unpin(sid))["pinned"] is False
        with pytest.raises(SessionNotFound):
            await client.pin("x-demo-00000000")
        assert (await client.drain(evict_idle=False))["draining"] is True
        with pytest.raises(Draining) as refused:
            await client.acquire("bo")
        assert refused.value.retry_after == 60
        assert (await client.undrain())["draining"] is False
        assert (await client.delete_user_sessions("ana"))["count"] == 1
        with pytest.raises(SessionEnded):
            await client.pin(sid)
        threaded.backend.settings.pool.max_pinned = 0
        other = (await client.acquire("cy"))["session_id"]
        with pytest.raises(PinLimit):
            await client.pin(other)


def test_drain_and_undrain_commands(
    threaded: ThreadedServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PODWARDEN_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    common = ["--url", threaded.url, "--token-file", str(token)]
    assert main(["drain", "--evict-idle", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["draining"] is True and out["evict_idle"] is True
    assert threaded.backend.pool.drain.active
    assert main(["health", "--url", threaded.url]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "draining"
    assert main(["undrain", *common]) == 0
    assert json.loads(capsys.readouterr().out)["draining"] is False
    token.write_text("wrong-token\n")
    assert main(["drain", *common]) == 1
    assert "drain failed" in capsys.readouterr().err
    assert not threaded.backend.pool.drain.active


async def test_a_standby_claim_over_http_says_new_session_and_shows_in_health_and_metrics(
    settings: Settings,
) -> None:
    from backend.api.app import make_api
    from tests.backend.test_standby import settle

    settings.templates["demo"].standby = 1
    backend = Backend(settings, runtime=MemoryRuntime())
    await backend.start()
    try:
        await settle(backend)
        transport = httpx.ASGITransport(app=make_api(backend, TOKEN))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://podwarden.test", headers=AUTH
        ) as api:
            assert (await api.get("/health")).json()["standby"] == 1
            (listed,) = (await api.get("/sessions")).json()
            assert listed["standby"] is True and listed["pinned"] is False
            answer = await api.post("/sessions", json={"user": "ana"})
            body = answer.json()
            assert answer.status_code == 200 and body["is_new_session"] is True
            assert body["standby"] is False and body["user"] == "ana"
            assert body["took_ms"] > 0
            await settle(backend)
            assert (await api.get("/health")).json()["standby"] == 1
            metrics = (await api.get("/metrics")).text
            assert 'podwarden_standby_total{outcome="claimed"} 1.0' in metrics
            assert "podwarden_standby_sessions 1.0" in metrics
            assert 'podwarden_session_idle_seconds{session_id="' in metrics
    finally:
        await backend.stop(stop_sessions=True)


async def test_health_names_the_next_eviction_and_a_full_pool_takes_exactly_that_one(
    api: httpx.AsyncClient, memory_backend: Backend
) -> None:
    pool = memory_backend.settings.pool
    pool.max_sessions = 3

    async def next_eviction() -> str | None:
        return (await api.get("/health")).json()["next_eviction"]

    assert await next_eviction() is None  # nothing to evict
    ids = [(await api.post("/sessions", json={"user": u})).json()["session_id"] for u in "abc"]
    assert await next_eviction() == ids[0]  # least recently used
    await api.post("/sessions", json={"user": "a"})  # a reuse makes it the most recent
    assert await next_eviction() == ids[1]
    await api.post(f"/sessions/{ids[1]}/pin")
    assert await next_eviction() == ids[2]
    pool.when_full = "reject"
    assert await next_eviction() is None  # reject never evicts
    pool.when_full = "evict-lru"
    served = await api.post("/sessions", json={"user": "d"})
    assert served.status_code == 200
    states = {sid: (await api.get(f"/sessions/{sid}")).json()["state"] for sid in ids}
    assert states[ids[2]] in ("terminating", "terminated")
    assert states[ids[0]] == states[ids[1]] == "ready"
