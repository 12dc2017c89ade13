"""The session routes against an embedded backend on the in-memory runtime."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from backend.api import fastpath
from backend.api import routes as routes_module
from backend.config import Settings
from backend.events import EventKind
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend
from tests.backend.api.conftest import error_of

SESSION_KEYS = {
    "session_id",
    "user",
    "template",
    "state",
    "phase",
    "created_at",
    "last_used_at",
    "ready_at",
    "age_s",
    "idle_s",
    "use_count",
    "tunnel",
    "runtime_ref",
    "runtime",
    "last_error",
    "cleanup",
    "last_active_at",
    "pinned",
    "standby",
    "cull_at",
    "pod",
    "cpu_percent",
    "memory_bytes",
    "resources_source",
    "target",
    "starting_since",
    "recycles",
    "last_refresh_at",
}


async def test_acquire_waits_until_ready_then_reuses(api: httpx.AsyncClient) -> None:
    first = await api.post("/sessions", json={"user": "jfernandez"})
    assert first.status_code == 200
    body = first.json()
    assert set(body) == SESSION_KEYS | {"is_new_session", "took_ms"}
    assert body["is_new_session"] is True
    assert body["state"] == "ready"
    assert body["user"] == "jfernandez" and body["template"] == "demo"
    assert body["session_id"].startswith("jfernandez-demo-")
    assert body["tunnel"]["host"] == "127.0.0.1" and body["tunnel"]["port"] > 0

    again = await api.post("/sessions", json={"user": "jfernandez"})
    assert again.status_code == 200
    assert again.json()["session_id"] == body["session_id"]
    assert again.json()["is_new_session"] is False
    assert again.json()["use_count"] == 2


async def test_two_users_get_their_own_sessions(api: httpx.AsyncClient) -> None:
    one, two = await asyncio.gather(
        api.post("/sessions", json={"user": "jfernandez"}),
        api.post("/sessions", json={"user": "Gustavoa"}),
    )
    assert one.json()["session_id"] != two.json()["session_id"]
    health = (await api.get("/health")).json()
    assert health["session_capacity"] == "2/10"
    assert health["persistent_sessions"] == 2


async def test_wait_false_answers_202_starting(
    api: httpx.AsyncClient, memory_backend: Backend, runtime: MemoryRuntime
) -> None:
    runtime.ready_gate = asyncio.Event()
    with memory_backend.bus.subscribe(kinds={EventKind.READY}) as ready:
        response = await api.post("/sessions", json={"user": "u", "wait": False})
        assert response.status_code == 202
        body = response.json()
        assert body["state"] == "starting" and body["is_new_session"] is True
        runtime.ready_gate.set()
        event = await asyncio.wait_for(ready.get(), 5)
        assert event is not None and event.session_id == body["session_id"]
    # a ready session reused without waiting is simply 200
    reused = await api.post("/sessions", json={"user": "u", "wait": False})
    assert reused.status_code == 200
    assert reused.json()["session_id"] == body["session_id"]
    assert reused.json()["is_new_session"] is False


async def test_reuse_false_starts_another_session(api: httpx.AsyncClient) -> None:
    ids = set()
    for _ in range(3):
        response = await api.post("/sessions", json={"user": "admin", "reuse": False})
        assert response.status_code == 200 and response.json()["is_new_session"] is True
        ids.add(response.json()["session_id"])
    assert len(ids) == 3


async def test_list_get_delete(api: httpx.AsyncClient, memory_backend: Backend) -> None:
    created = (await api.post("/sessions", json={"user": "u"})).json()
    sid = created["session_id"]
    listed = (await api.get("/sessions")).json()
    assert [s["session_id"] for s in listed] == [sid]
    assert set(listed[0]) == SESSION_KEYS
    got = await api.get(f"/sessions/{sid}")
    assert got.status_code == 200 and got.json()["session_id"] == sid

    with memory_backend.bus.subscribe(kinds={EventKind.CLEANUP_VERIFIED}) as cleanups:
        deleted = await api.delete(f"/sessions/{sid}")
        assert deleted.status_code == 202
        assert deleted.json()["state"] in ("terminating", "terminated")
        event = await asyncio.wait_for(cleanups.get(), 5)
        assert event is not None and event.session_id == sid
    after = (await api.get(f"/sessions/{sid}")).json()
    assert after["state"] == "terminated"
    assert after["cleanup"].startswith("verified")
    assert (await api.get("/health")).json()["active_sessions"] == 0


async def test_unknown_session_is_404(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/sessions/nobody-demo-00000000"),
        ("DELETE", "/sessions/nobody-demo-00000000"),
        ("GET", "/sessions/nobody-demo-00000000/logs"),
        ("DELETE", "/orphans/nobody-demo-00000000"),
    ]:
        response = await api.request(method, path)
        assert response.status_code == 404, (method, path)
        error = error_of(response)
        assert error["code"] == "not_found"
        assert "nobody-demo-00000000" in error["message"]


async def test_full_pool_is_503_with_retry_after(settings: Settings, tmp_path: object) -> None:
    settings.pool.max_sessions = 1
    settings.pool.when_full = "reject"
    backend = Backend(settings, runtime=MemoryRuntime())
    await backend.start()
    try:
        from backend.api.app import make_api
        from tests.backend.api.conftest import AUTH, TOKEN

        transport = httpx.ASGITransport(app=make_api(backend, TOKEN))
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH) as c:
            assert (await c.post("/sessions", json={"user": "a"})).status_code == 200
            for wait in (True, False):
                full = await c.post("/sessions", json={"user": "b", "wait": wait})
                assert full.status_code == 503
                assert int(full.headers["retry-after"]) >= 1
                error = error_of(full)
                assert error["code"] == "capacity"
                assert "full" in error["message"]
    finally:
        await backend.stop(stop_sessions=True)


async def test_failed_start_is_502_with_reason(
    api: httpx.AsyncClient, runtime: MemoryRuntime
) -> None:
    runtime.fail_starts["demo"] = 10
    response = await api.post("/sessions", json={"user": "u"})
    assert response.status_code == 502
    error = error_of(response)
    assert error["code"] == "start_failed"
    assert "simulated start failure" in error["message"]
    listed = (await api.get("/sessions")).json()
    assert listed[0]["state"] == "failed" and listed[0]["last_error"]


async def test_templates_and_logs(api: httpx.AsyncClient) -> None:
    templates = (await api.get("/templates")).json()
    demo = next(t for t in templates if t["name"] == "demo")
    assert demo == {
        "name": "demo",
        "port": None,  # the local runtime picks a port per session
        "readiness": "http",
        "image": None,
        "keepalive": True,
        "default": True,
    }
    sid = (await api.post("/sessions", json={"user": "u"})).json()["session_id"]
    logs = await api.get(f"/sessions/{sid}/logs", params={"limit": 5})
    assert logs.status_code == 200
    assert logs.json()["session_id"] == sid
    assert any("started" in line for line in logs.json()["lines"])


async def test_orphan_removal(
    api: httpx.AsyncClient, memory_backend: Backend, runtime: MemoryRuntime
) -> None:
    sid = (await api.post("/sessions", json={"user": "u"})).json()["session_id"]
    # The pool forgets the session but its workload stays: an orphan for the drift check.
    memory_backend.pool._records.pop(sid)
    await memory_backend.check_drift()
    assert (await api.get("/health")).json()["orphans"] == [sid]
    with memory_backend.bus.subscribe(kinds={EventKind.ORPHAN_REMOVED}) as removed:
        response = await api.delete(f"/orphans/{sid}")
        assert response.status_code == 202
        assert response.json() == {"session_id": sid, "status": "removing"}
        event = await asyncio.wait_for(removed.get(), 5)
        assert event is not None and event.session_id == sid
    assert sid not in runtime.workloads


async def test_recent_events(api: httpx.AsyncClient) -> None:
    await api.post("/sessions", json={"user": "u"})
    events = (await api.get("/events/recent", params={"limit": 2})).json()
    assert len(events) == 2
    assert events[-1]["kind"] == "ready"
    assert set(events[0]) == {"seq", "ts", "kind", "session_id", "user", "message", "data"}


async def _chunked(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def test_shortcut_and_routed_acquire_answer_alike(
    api: httpx.AsyncClient, memory_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a body without Content-Length is not taken by the shortcut: the FastAPI route answers
    routed_calls = []
    original = fastpath.acquire_answer

    async def spy(pool: object, request: object, receive: object) -> object:
        routed_calls.append(request)
        return await original(pool, request, receive)  # type: ignore[arg-type]

    monkeypatch.setattr(routes_module, "acquire_answer", spy)
    body = json.dumps({"user": "u"}).encode()
    routed = await api.post(
        "/sessions", content=_chunked(body), headers={"content-type": "application/json"}
    )
    assert len(routed_calls) == 1
    fast = await api.post("/sessions", json={"user": "u"})
    assert len(routed_calls) == 1  # the shortcut answered this one
    assert routed.status_code == fast.status_code == 200
    assert set(routed.json()) == set(fast.json())
    assert routed.json()["session_id"] == fast.json()["session_id"]
    assert fast.json()["is_new_session"] is False
    charset = await api.post(
        "/sessions", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 200 and len(routed_calls) == 1


async def test_shortcut_turns_a_pool_crash_into_a_json_500(
    api: httpx.AsyncClient, memory_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(memory_backend.pool, "acquire", broken)
    response = await api.post("/sessions", json={"user": "u"})
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal"
    assert "secret" not in response.text


async def test_a_required_label_no_target_has_is_a_422_naming_it(api: httpx.AsyncClient) -> None:
    answer = await api.post("/sessions", json={"user": "ada", "requires": {"zone": "north"}})
    assert answer.status_code == 422
    error = error_of(answer)
    assert error["field"] == "requires.zone" and "zone=north" in error["message"]
