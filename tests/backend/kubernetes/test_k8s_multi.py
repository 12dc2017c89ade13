"""Two real control planes as two targets of one pool: spread, heartbeats, a lost target.

Needs two harnesses side by side (``tests/kubernetes_harness.sh up`` and ``... up 2``,
which export ``PODWARDEN_TEST_KUBECONFIG`` and ``PODWARDEN_TEST_KUBECONFIG_2``); skipped
with only one. "Lost" is the kube-apiserver of one stopped with SIGSTOP (a hang: the
connection stays open, nothing answers), and SIGCONT brings it back.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backend.config import Settings, TargetSettings
from backend.events import EventKind
from backend.runtime.kubernetes.kinds import NAMESPACES
from backend.runtime.kubernetes.runtime import KubernetesRuntime
from backend.runtime.multi import MultiRuntime
from backend.service import Backend
from backend.templates import Template
from tests.backend.conftest import free_port_range
from tests.two_clusters import FIRST, SECOND, TWO_CLUSTERS, apiserver_pid, context_of

pytestmark = TWO_CLUSTERS


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The API server hangs (SIGSTOP) inside the block, and always answers again after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
async def two_clusters(tmp_path: Path) -> AsyncIterator[Backend]:
    assert FIRST and SECOND
    namespace = f"pw-multi-{secrets.token_hex(4)}"
    settings = Settings(state_dir=tmp_path / "state")
    settings.runtime.kind = "multi"
    settings.runtime.kubernetes.namespace = namespace
    settings.runtime.kubernetes.delete_timeout = 30
    settings.runtime.heartbeat_interval = 0.5
    settings.runtime.target_lost_after = 3.0
    settings.runtime.degraded_latency = 1.0
    settings.runtime.targets = {
        "east": TargetSettings(kubeconfig=FIRST, context=context_of(FIRST), max_sessions=20),
        "west": TargetSettings(kubeconfig=SECOND, context=context_of(SECOND), max_sessions=20),
    }
    settings.pool.max_sessions = 40
    settings.pool.refresh_interval = 3600
    settings.tunnels.port_min, settings.tunnels.port_max = free_port_range(200)
    settings.templates["browser"] = Template(
        name="browser", image="example/browser:1", cpu="10m", memory="16Mi"
    )
    settings.default_template = "browser"
    settings.validate()
    backend = Backend(settings)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop(stop_sessions=True)
        assert isinstance(backend.runtime, MultiRuntime)
        for target in backend.runtime.targets.values():
            cleaner = target.runtime
            assert isinstance(cleaner, KubernetesRuntime)
            again = KubernetesRuntime(cleaner.settings, backend.logs)
            client = await again.connect()
            await client.delete(NAMESPACES, None, namespace)
            await again.close()


async def wait_state(backend: Backend, target: str, state: str, timeout: float) -> float:
    """Seconds until ``target`` reports ``state`` (from its ``target_state`` event)."""
    assert isinstance(backend.runtime, MultiRuntime)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with backend.bus.subscribe(kinds={EventKind.TARGET_STATE}) as sub:
        while backend.runtime.targets[target].state.value != state:
            remaining = timeout - (loop.time() - started)
            assert remaining > 0, f"{target} not {state} within {timeout}s"
            await asyncio.wait_for(sub.get(), remaining)
    return loop.time() - started


async def test_two_clusters_share_the_sessions_and_a_hung_one_is_lost_and_back(
    two_clusters: Backend,
) -> None:
    backend = two_clusters
    runtime = backend.runtime
    assert isinstance(runtime, MultiRuntime)
    await wait_state(backend, "east", "healthy", 10)
    await wait_state(backend, "west", "healthy", 10)
    results = await asyncio.gather(*(backend.pool.acquire(f"user{i}") for i in range(10)))
    where = [r.session.handle.extra["target"] for r in results if r.session.handle]
    assert sorted(where) == ["east"] * 5 + ["west"] * 5
    for r in results:
        assert r.session.tunnel is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", r.session.tunnel.port)
        writer.close()
        await writer.wait_closed()
    health = backend.health()
    assert [t["state"] for t in health.targets] == ["healthy", "healthy"]
    assert all(t["latency_ms"] is not None for t in health.targets)

    on_east = [r.session for r in results if r.session.handle.extra["target"] == "east"]  # type: ignore[union-attr]
    victim, kept = on_east[0], on_east[1]
    loop = asyncio.get_running_loop()
    with backend.bus.subscribe(kinds={EventKind.CLEANUP_VERIFIED}) as cleanups:
        with stopped(apiserver_pid(FIRST or "")):
            lost_at = loop.time()
            took = await wait_state(backend, "east", "lost", 10)
            assert took < runtime.target_lost_after + 2 * runtime.heartbeat_interval + 1
            health = backend.health()
            east = next(t for t in health.targets if t["name"] == "east")
            assert east["state"] == "lost" and east["last_error"]
            assert health.max_sessions == 20 + 5, "east's room left; its 5 sessions hold slots"
            assert victim.state.value == kept.state.value == "unreachable"
            placed = await asyncio.wait_for(backend.pool.acquire("newcomer"), 30)
            assert placed.session.handle is not None
            assert placed.session.handle.extra["target"] == "west"
            again = await asyncio.wait_for(backend.pool.acquire(victim.user), 30)
            failover_s = loop.time() - lost_at
            assert again.is_new_session and again.session.session_id == victim.session_id
            assert again.session.handle is not None
            assert again.session.handle.extra["target"] == "west"
            print(f"failover: loss to new session elsewhere in {failover_s:.2f}s")
            assert failover_s < runtime.target_lost_after + 2 + runtime.heartbeat_interval
        await wait_state(backend, "east", "healthy", 15)
        while True:  # the replaced workload on east is removed, verified
            event = await asyncio.wait_for(cleanups.get(), 30)
            assert event is not None
            if event.session_id == victim.session_id:
                break
    assert backend.health().max_sessions == 40
    assert kept.state.value == "ready", "re-adopted as it was"
    reused = await backend.pool.acquire(kept.user)
    assert reused.session.session_id == kept.session_id and not reused.is_new_session
    east_runtime = runtime.targets["east"].runtime
    assert isinstance(east_runtime, KubernetesRuntime)
    assert victim.session_id not in await east_runtime.inventory(), "no duplicate left on east"


async def test_hundred_concurrent_creates_split_evenly_over_two_clusters(
    two_clusters: Backend,
) -> None:
    backend = two_clusters
    runtime = backend.runtime
    assert isinstance(runtime, MultiRuntime)
    for target in runtime.targets.values():
        target.capacity = 60
    backend.settings.pool.max_sessions = 120
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.wait_for(
        asyncio.gather(*(backend.pool.acquire(f"burst{i}") for i in range(100))), 240
    )
    took = loop.time() - started
    where = [r.session.handle.extra["target"] for r in results if r.session.handle]
    assert len(where) == 100 and all(r.session.state.value == "ready" for r in results)
    east = where.count("east")
    assert abs(east - 50) <= 10 and abs(100 - east - 50) <= 10, (east, 100 - east)
    heartbeat_calls = {}
    for name, target in runtime.targets.items():
        child = target.runtime
        assert isinstance(child, KubernetesRuntime) and child.client is not None
        heartbeat_calls[name] = child.client.calls["get version"]
    print(f"100 creates on two clusters ready in {took:.1f}s; heartbeats {heartbeat_calls}")


async def test_a_delete_during_the_outage_lands_after_the_return(two_clusters: Backend) -> None:
    backend = two_clusters
    runtime = backend.runtime
    assert isinstance(runtime, MultiRuntime)
    await wait_state(backend, "east", "healthy", 10)
    results = await asyncio.gather(*(backend.pool.acquire(f"del{i}") for i in range(2)))
    victim = next(r.session for r in results if r.session.target == "east")
    kinds = {EventKind.DELETE_QUEUED, EventKind.CLEANUP_VERIFIED}
    with backend.bus.subscribe(kinds=kinds) as sub:
        with stopped(apiserver_pid(FIRST or "")):
            await wait_state(backend, "east", "lost", 10)
            backend.pool.delete(victim.session_id)  # the API's 202
            queued = await asyncio.wait_for(sub.get(), 10)
            assert queued is not None and queued.kind is EventKind.DELETE_QUEUED
            assert victim.state.value == "terminating"
        verified = await asyncio.wait_for(sub.get(), 60)
    assert verified is not None and verified.kind is EventKind.CLEANUP_VERIFIED
    assert verified.session_id == victim.session_id
    assert "Deployment" in verified.data["verified_kinds"]
    east = runtime.targets["east"].runtime
    assert isinstance(east, KubernetesRuntime)
    assert victim.session_id not in await east.inventory()
    assert victim.state.value == "terminated"
