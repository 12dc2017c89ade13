"""The pool on the real local runtime: processes, tunnels, eviction, crash and recovery."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.models import SessionState
from backend.service import Backend
from backend.templates import find_chromium
from tests.backend import cdp
from tests.backend.conftest import free_port_range
from tests.backend.host_backend import crash_settings

HERE = Path(__file__).resolve().parent


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes, but only its parent can reap it
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def workload_pids(state_dir: Path) -> set[int]:
    """Every process whose working directory is a session directory under ``state_dir``."""
    sessions = str((state_dir / "sessions").resolve())
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd.startswith(sessions + "/") and pid_alive(int(entry)):
            found.add(int(entry))
    return found


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    low, high = free_port_range(300)
    return crash_settings(tmp_path / "state", low, high)


@pytest.fixture
async def local_backend(local_settings: Settings) -> AsyncIterator[Backend]:
    backend = Backend(local_settings)
    await backend.start()
    yield backend
    await backend.stop(stop_sessions=True)
    assert workload_pids(local_settings.state_dir) == set(), "a workload outlived its pool"


async def test_a_session_is_a_real_process_reached_through_its_tunnel(
    local_backend: Backend,
) -> None:
    result = await local_backend.pool.acquire("jfernandez")
    session = result.session
    assert session.state is SessionState.READY and session.tunnel is not None
    assert session.handle is not None and pid_alive(int(session.handle.ref))
    status, body = await http_get(session.tunnel.port, "/whoami")
    assert status == 200 and json.loads(body)["user"] == "jfernandez"
    again = await local_backend.pool.acquire("jfernandez")
    assert again.is_new_session is False and again.took_ms < 5


async def test_eleventh_user_evicts_lru_and_its_process_and_port_are_gone_first(
    local_backend: Backend,
) -> None:
    pool = local_backend.pool
    results = list(await asyncio.gather(*(pool.acquire(f"user{i}") for i in range(10))))
    by_user = {r.session.user: r.session for r in results}
    for i in range(10):  # a known LRU order: user0 oldest ... user9 newest
        await pool.acquire(f"user{i}")
    await pool.acquire("user0")  # reuse makes user0 the most recent; user1 is now LRU
    victim = by_user["user1"]
    assert victim.handle is not None and victim.tunnel is not None
    victim_pid, victim_port = int(victim.handle.ref), victim.tunnel.port
    eleventh = await pool.acquire("user10")
    assert eleventh.session.state is SessionState.READY
    assert victim.state is SessionState.TERMINATED
    assert not pid_alive(victim_pid), "evicted process still running when the 11th was ready"
    assert port_free(victim_port)
    assert local_backend.health().session_capacity == "10/10"
    ports = [s.tunnel.port for s in pool.list() if s.state.is_live and s.tunnel]
    assert len(ports) == len(set(ports)) == 10


async def test_a_killed_workload_is_noticed_and_recycled_under_the_same_id_and_port(
    local_backend: Backend,
) -> None:
    first = await local_backend.pool.acquire("u")
    session = first.session
    assert session.handle is not None and session.tunnel is not None
    old_pid, port = int(session.handle.ref), session.tunnel.port
    with local_backend.bus.subscribe() as events:
        os.kill(old_pid, signal.SIGKILL)
        while True:
            event = await asyncio.wait_for(events.get(), 10)
            assert event is not None
            if event.kind.value == "ready" and event.session_id == session.session_id:
                break
    assert session.state is SessionState.READY
    assert session.handle is not None and int(session.handle.ref) != old_pid
    assert session.tunnel is not None and session.tunnel.port == port
    status, _ = await http_get(port, "/health")
    assert status == 200


async def test_credentials_reach_the_workload_but_no_file_log_or_event(
    local_backend: Backend, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = "taffie-Julian_1-SECRET"
    result = await local_backend.pool.acquire("Gustavoa", credentials={"PASSWORD": secret})
    assert result.session.tunnel is not None
    status, body = await http_get(result.session.tunnel.port, "/whoami")
    assert status == 200 and json.loads(body).get("credentials") == ["PASSWORD"]
    await local_backend.pool.acquire("Gustavoa")
    assert local_backend.store is not None
    await local_backend.store.flush()
    for path in local_backend.settings.state_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert not any(secret in line for line in local_backend.logs.get(result.session.session_id))
    assert not any(secret in str(e.to_dict()) for e in local_backend.bus.recent(500))
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err


async def test_kill_9_of_the_host_loses_no_session_and_leaks_no_workload(
    local_settings: Settings,
) -> None:
    state_dir = local_settings.state_dir
    host = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "host_backend.py"),
            str(state_dir),
            str(local_settings.tunnels.port_min),
            str(local_settings.tunnels.port_max),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert host.stdin is not None and host.stdout is not None
    host.stdin.write(json.dumps({"ready": ["alice", "bob"], "starting": ["carol"]}) + "\n")
    host.stdin.flush()
    line = await asyncio.wait_for(asyncio.to_thread(host.stdout.readline), 30)
    before = json.loads(line)
    running_before = workload_pids(state_dir)
    assert len(running_before) == 3
    host.send_signal(signal.SIGKILL)
    host.wait(10)
    host.stdin.close()
    host.stdout.close()
    assert workload_pids(state_dir) == running_before, "workloads outlive a crashed host"

    backend = Backend(local_settings)
    await backend.start()
    try:
        recovery = backend.recovery
        assert recovery is not None
        ready_ids = {s["session_id"] for s in before["ready"]}
        starting_ids = {s["session_id"] for s in before["starting"]}
        assert ready_ids | starting_ids == set(recovery.adopted) | set(recovery.stopped)
        assert ready_ids <= set(recovery.adopted)
        for previous in before["ready"]:
            again = await backend.pool.acquire(previous["user"])
            assert again.session.session_id == previous["session_id"]
            assert again.is_new_session is False
            assert again.session.tunnel is not None
            assert again.session.tunnel.port == previous["tunnel"]["port"]
            status, _ = await http_get(again.session.tunnel.port, "/health")
            assert status == 200
        carol = await backend.pool.acquire("carol", "slow")
        assert carol.session.state is SessionState.READY
        known = {int(s.handle.ref) for s in backend.pool.list() if s.state.is_live and s.handle}
        assert workload_pids(state_dir) == known, "something runs that the pool does not know"
    finally:
        await backend.stop(stop_sessions=True)
    assert workload_pids(state_dir) == set()


@pytest.mark.chromium
@pytest.mark.skipif(find_chromium() is None, reason="no Chromium binary on PATH")
async def test_reusing_a_chromium_session_keeps_its_login_cookie(
    tmp_path: Path, page_url: str
) -> None:
    low, high = free_port_range(50)
    settings = Settings(state_dir=tmp_path / "state")
    settings.tunnels.port_min, settings.tunnels.port_max = low, high
    settings.pool.refresh_interval = 3600
    backend = Backend(settings)
    await backend.start()
    try:
        first = await backend.pool.acquire("jfernandez", "chromium")
        assert first.is_new_session and first.session.tunnel is not None
        await cdp.set_cookie(first.session.tunnel.port, page_url, "login", "taffie-ok")
        again = await backend.pool.acquire("jfernandez", "chromium")
        assert again.is_new_session is False
        assert again.session.session_id == first.session.session_id
        assert again.session.tunnel is not None
        cookies = await cdp.get_cookies(again.session.tunnel.port, page_url)
        assert cookies.get("login") == "taffie-ok"
        other = await backend.pool.acquire("Gustavoa", "chromium")
        assert other.session.tunnel is not None
        assert "login" not in await cdp.get_cookies(other.session.tunnel.port, page_url)
    finally:
        await backend.stop(stop_sessions=True)
    assert workload_pids(settings.state_dir) == set()
