"""``podwarden serve`` over two clusters, killed with SIGKILL while one of them is lost.

Two harnesses (``PODWARDEN_TEST_KUBECONFIG`` and ``..._2``); skipped with one. The east
API server is stopped (SIGSTOP); once podwarden reports it lost, podwarden is killed -9
and started again on the same state directory while east still hangs: it must come up
(not wait on east), keep east's sessions as ``unreachable``, serve west's; when east
answers again (SIGCONT) its sessions are ready as they were, on their old tunnel ports.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Serve, free_port_range
from tests.two_clusters import FIRST, SECOND, TWO_CLUSTERS, apiserver_pid, context_of

pytestmark = TWO_CLUSTERS


def write_config(path: Path, namespace: str) -> Path:
    assert FIRST and SECOND
    low, high = free_port_range(100)
    path.write_text(
        f"""
[pool]
refresh_interval = 3600

[runtime]
kind = "multi"
heartbeat_interval = 0.5
target_lost_after = 3
failover_wait = 1

[runtime.kubernetes]
namespace = "{namespace}"
delete_timeout = 30

[runtime.targets.east]
kubeconfig = "{FIRST}"
context = "{context_of(FIRST)}"
max_sessions = 10

[runtime.targets.west]
kubeconfig = "{SECOND}"
context = "{context_of(SECOND)}"
max_sessions = 10

[tunnels]
port_min = {low}
port_max = {high}

[templates.browser]
image = "example/browser:1"
cpu = "10m"
memory = "16Mi"
""",
        encoding="utf-8",
    )
    return path


async def until(check: Any, what: str, timeout: float = 20) -> Any:
    """Ask the server until ``check`` answers something truthy (there is no event to
    await across two server processes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.2)


def target_state(health: dict[str, Any], name: str) -> str:
    return str(next(t["state"] for t in health["targets"] if t["name"] == name))


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    name = f"pw-outage-{secrets.token_hex(4)}"
    yield name
    from kubernetes import client, config

    for kubeconfig in (FIRST, SECOND):
        api = config.new_client_from_config(config_file=kubeconfig)
        try:
            client.CoreV1Api(api).delete_namespace(name)
        except client.ApiException:
            pass
        api.close()


async def test_a_kill_9_during_an_outage_forgets_nothing(tmp_path: Path, namespace: str) -> None:
    assert FIRST
    config = write_config(tmp_path / "podwarden.toml", namespace)
    state = tmp_path / "state"
    server = await Serve(state, config, ["--runtime", "multi"]).start()
    east_pid = apiserver_pid(FIRST)
    stopped = False
    second: Serve | None = None
    try:
        api = server.client()
        made = await asyncio.gather(*(api.acquire(f"user{i}", "browser") for i in range(4)))
        by_target = {s["target"] for s in made}
        assert by_target == {"east", "west"}
        east = [s for s in made if s["target"] == "east"]
        west = [s for s in made if s["target"] == "west"]

        os.kill(east_pid, signal.SIGSTOP)
        stopped = True

        async def east_lost() -> bool:
            return target_state(await api.health(), "east") == "lost"

        await until(east_lost, "east lost")
        await api.close()
        assert await server.stop(signal.SIGKILL) == -signal.SIGKILL

        second = await Serve(state, config, ["--runtime", "multi"]).start()
        api = second.client()
        health = await api.health()
        assert target_state(health, "east") == "lost"
        sessions = {s["session_id"]: s for s in await api.list_sessions()}
        for s in east:
            assert sessions[s["session_id"]]["state"] == "unreachable"
        for s in west:
            assert sessions[s["session_id"]]["state"] == "ready"
            again = await api.acquire(s["user"], "browser")
            assert again["session_id"] == s["session_id"] and not again["is_new_session"]

        os.kill(east_pid, signal.SIGCONT)
        stopped = False

        async def east_ready() -> bool:
            listed = {s["session_id"]: s for s in await api.list_sessions()}
            return all(
                listed[s["session_id"]]["state"] == "ready"
                and (listed[s["session_id"]]["tunnel"] or {}).get("listening")
                for s in east
            )

        await until(east_ready, "east's sessions ready again")
        for s in east:
            again = await api.acquire(s["user"], "browser")
            assert again["session_id"] == s["session_id"] and not again["is_new_session"]
            assert again["tunnel"]["port"] == s["tunnel"]["port"], "its old tunnel port"
        await api.close()
    finally:
        if stopped:
            os.kill(east_pid, signal.SIGCONT)
        for proc in (server, second):
            if proc is not None and proc.proc is not None and proc.proc.returncode is None:
                await proc.stop()
