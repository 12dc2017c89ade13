"""The field report's scenarios against a real ``podwarden serve`` with the demo template.

(a) two users one after the other: capacity 1/10 then 2/10; (b) both at once: 2/10 with
different ids; (c) user 1 again: same id, ``is_new_session`` false; (d) health right at
each step; (e) 11 users with capacity 10: the least recently used is evicted, capacity
stays 10/10 and its process is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from tests.e2e.conftest import Events, Serve, pid_alive

Start = Callable[..., Any]


def check_health(health: dict[str, Any], active: int, persistent: int) -> None:
    assert health["status"] == "healthy", health
    assert health["active_sessions"] == active
    assert health["persistent_sessions"] == persistent
    assert health["max_sessions"] == 10
    assert health["session_capacity"] == f"{active}/10"


async def whoami(session: dict[str, Any]) -> dict[str, Any]:
    """What the workload behind the session's tunnel says about itself."""
    tunnel = session["tunnel"]
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{tunnel['host']}:{tunnel['port']}/whoami")
    assert response.status_code == 200
    return response.json()


async def test_two_users_in_turn_then_reuse(serve: Start) -> None:
    server: Serve = await serve("--stop-sessions-on-exit")
    async with server.client() as client:
        check_health(await client.health(), 0, 0)

        first = await client.acquire("jfernandez", credentials={"PASSWORD": "taffie"})
        assert first["is_new_session"] is True and first["state"] == "ready"
        assert first["session_id"].startswith("jfernandez-demo-")
        check_health(await client.health(), 1, 1)

        second = await client.acquire("Gustavoa")
        assert second["is_new_session"] is True
        assert second["session_id"] != first["session_id"]
        check_health(await client.health(), 2, 2)

        again = await client.acquire("jfernandez")
        assert again["session_id"] == first["session_id"]
        assert again["is_new_session"] is False
        assert again["use_count"] == 2
        assert again["took_ms"] * 100 < first["took_ms"]  # the field report wanted 10x
        check_health(await client.health(), 2, 2)

        me = await whoami(again)
        assert me["user"] == "jfernandez"
        assert "PASSWORD" in me["credentials"] and "taffie" not in str(me)
    assert "taffie" not in server.log


async def test_two_users_at_once(serve: Start) -> None:
    server: Serve = await serve("--stop-sessions-on-exit")
    async with server.client() as client:
        one, two = await asyncio.gather(client.acquire("jfernandez"), client.acquire("Gustavoa"))
        assert one["session_id"] != two["session_id"]
        assert one["is_new_session"] and two["is_new_session"]
        assert one["tunnel"]["port"] != two["tunnel"]["port"]
        check_health(await client.health(), 2, 2)
        assert (await whoami(one))["user"] == "jfernandez"
        assert (await whoami(two))["user"] == "Gustavoa"


async def test_eleventh_user_evicts_the_least_recently_used(serve: Start) -> None:
    server: Serve = await serve("--stop-sessions-on-exit")
    users = [f"user{i:02d}" for i in range(11)]
    async with server.client() as client:
        created = await asyncio.gather(*(client.acquire(u) for u in users[:10]))
        sessions = {s["user"]: s for s in created}
        check_health(await client.health(), 10, 10)
        # Use them in a known order: user01 ends up least recently used.
        order = [users[1], *users[2:10], users[0]]
        for user in order:
            assert (await client.acquire(user))["is_new_session"] is False
        victim = sessions[users[1]]
        pid = int(victim["runtime_ref"])
        assert pid_alive(pid)

        events = await Events(server).open()
        try:
            newcomer = await client.acquire(users[10])
            assert newcomer["is_new_session"] is True and newcomer["state"] == "ready"
            evicted = await events.wait_for("evicted", victim["session_id"])
            assert users[10] in str(evicted["message"])
            await events.wait_for("cleanup_verified", victim["session_id"])
        finally:
            await events.close()
        assert not pid_alive(pid)
        check_health(await client.health(), 10, 10)
        gone = await client.get_session(victim["session_id"])
        assert gone["state"] == "terminated" and gone["cleanup"].startswith("verified")
        live = {s["user"] for s in await client.list_sessions() if s["state"] == "ready"}
        assert live == set(users) - {users[1]}
        # the evicted user simply gets a new session when they come back
        back = await client.acquire(users[1])
        assert back["is_new_session"] is True and back["session_id"] != victim["session_id"]


async def test_metrics_follow_the_scenario(serve: Start) -> None:
    server: Serve = await serve("--stop-sessions-on-exit")
    async with server.client() as client:
        await client.acquire("a")
        await client.acquire("a")
        text = await client.metrics()
    assert 'podwarden_acquires_total{outcome="new"} 1' in text
    assert 'podwarden_acquires_total{outcome="reused"} 1' in text
    assert 'podwarden_sessions{state="ready"} 1' in text
