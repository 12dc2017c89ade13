"""(f) five concurrent creates for one user, deleted again; (g) a restart with sessions live."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Events, Serve, pid_alive, port_listening

Start = Callable[..., Any]


async def test_five_concurrent_creates_then_delete_all(serve: Start) -> None:
    server: Serve = await serve()
    async with server.client() as client:
        sessions = await asyncio.gather(*(client.acquire("admin", reuse=False) for _ in range(5)))
        ids = {s["session_id"] for s in sessions}
        ports = {s["tunnel"]["port"] for s in sessions}
        pids = [int(s["runtime_ref"]) for s in sessions]
        assert len(ids) == 5 and len(ports) == 5 and len(set(pids)) == 5
        assert all(s["state"] == "ready" and s["is_new_session"] for s in sessions)
        assert all(sid.startswith("admin-demo-") for sid in ids)
        async with httpx.AsyncClient() as http:  # every tunnel reaches its own workload
            for session in sessions:
                tunnel = session["tunnel"]
                whoami = await http.get(f"http://127.0.0.1:{tunnel['port']}/whoami")
                assert whoami.json()["session_id"] == session["session_id"]
        health = await client.health()
        assert health["active_sessions"] == 5 and health["users"] == 1

        events = await Events(server).open()
        try:
            headers = {"Authorization": f"Bearer {server.token}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
                answers = await asyncio.gather(*(http.delete(f"/sessions/{i}") for i in ids))
            assert [a.status_code for a in answers] == [202] * 5
            for sid in ids:
                await events.wait_for("cleanup_verified", sid)
        finally:
            await events.close()
        assert not any(pid_alive(pid) for pid in pids)
        assert not any(port_listening(port) for port in ports)
        health = await client.health()
        assert health["active_sessions"] == 0 and health["runtime_workloads"] == 0
        states = {s["session_id"]: s["state"] for s in await client.list_sessions()}
        assert all(states[sid] == "terminated" for sid in ids)
    assert await server.stop() == 0


async def test_restart_with_sessions_live(serve: Start) -> None:
    first: Serve = await serve()
    async with first.client() as client:
        one = await client.acquire("jfernandez")
        two = await client.acquire("Gustavoa")
    pids = [int(one["runtime_ref"]), int(two["runtime_ref"])]
    assert await first.stop(signal.SIGTERM) == 0
    assert "sessions keep running" in first.log
    assert all(pid_alive(pid) for pid in pids), "stopping serve must not stop the sessions"

    second: Serve = await serve("--stop-sessions-on-exit")
    assert "2 sessions re-adopted" in second.log
    async with second.client() as client:
        health = await client.health()
        assert health["session_capacity"] == "2/10" and health["persistent_sessions"] == 2
        again_one = await client.acquire("jfernandez")
        again_two = await client.acquire("Gustavoa")
        assert again_one["session_id"] == one["session_id"]
        assert again_two["session_id"] == two["session_id"]
        assert again_one["is_new_session"] is False and again_two["is_new_session"] is False
        assert again_one["runtime_ref"] == one["runtime_ref"]  # the same process, adopted
        assert again_one["tunnel"]["port"] == one["tunnel"]["port"]
        async with httpx.AsyncClient() as http:
            tunnel = again_one["tunnel"]
            whoami = await http.get(f"http://127.0.0.1:{tunnel['port']}/whoami")
            assert whoami.json()["user"] == "jfernandez"
    assert await second.stop(signal.SIGINT) == 0  # Ctrl+C: the flag stops the sessions
    assert "stopping sessions" in second.log
    assert not any(pid_alive(pid) for pid in pids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_lru_after_a_restart_is_the_order_of_last_use(
    serve: Start, sig: signal.Signals
) -> None:
    """Field case 1: a, b, c; reuse a; restart; d evicts b, the least recently used."""
    first: Serve = await serve("--max-sessions", "3")
    async with first.client() as client:
        ids = {u: (await client.acquire(u))["session_id"] for u in ("a", "b", "c")}
        assert (await client.acquire("a"))["is_new_session"] is False
    if sig is signal.SIGKILL:
        # Reuses reach the store in batches (TOUCH_DELAY): a kill within that window
        # loses that much recency, as the README says. Kill once it is written.
        await _until_stored_use_count(first.state_dir / "podwarden.db", ids["a"], 2)
    await first.stop(sig)
    second: Serve = await serve("--max-sessions", "3", "--stop-sessions-on-exit")
    events = await Events(second).open()
    try:
        async with second.client() as client:
            await client.acquire("d")
            evicted = await events.wait_for("evicted", ids["b"])
            assert "least recently used" in str(evicted["message"])
            states = {s["session_id"]: s["state"] for s in await client.list_sessions()}
        assert states[ids["a"]] == states[ids["c"]] == "ready"
    finally:
        await events.close()


async def _until_stored_use_count(db: Path, session_id: str, count: int) -> None:
    async with asyncio.timeout(10):
        while True:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                row = con.execute(
                    "SELECT use_count FROM sessions WHERE session_id = ?", (session_id,)
                ).fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.02)
