"""Lifecycle policies on a real control plane: standby claimed by relabelling, no new pod;
idle culling, pinning and drain through the pool on the Kubernetes runtime.

Needs ``PODWARDEN_TEST_KUBECONFIG`` (``tests/kubernetes_harness.sh up``); skipped without.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import cluster_kubeconfig

from backend.config import Settings
from backend.errors import Draining
from backend.events import EventKind
from backend.models import SessionState
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.kinds import DEPLOYMENTS, NAMESPACES, PODS, REPLICASETS
from backend.service import Backend
from backend.templates import Template
from tests.backend.conftest import free_port_range

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.skipif(
        cluster_kubeconfig() is None,
        reason="PODWARDEN_TEST_KUBECONFIG is not set (tests/kubernetes_harness.sh up)",
    ),
]


async def until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll until ``predicate()`` is truthy (cluster state has no event to await here)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def kube_settings(tmp_path: Path) -> Settings:
    settings = Settings(state_dir=tmp_path / "state")
    settings.runtime.kind = "kubernetes"
    kube = settings.runtime.kubernetes
    kube.kubeconfig = str(cluster_kubeconfig())
    kube.namespace = f"pw-policy-{secrets.token_hex(4)}"
    kube.delete_timeout = 30
    settings.pool.refresh_interval = 3600
    settings.pool.activity_interval = 3600  # rounds are called by the test
    settings.tunnels.port_min, settings.tunnels.port_max = free_port_range(200)
    settings.templates = {
        "browser": Template(name="browser", image="example/browser:1", port=3000, standby=1)
    }
    settings.default_template = "browser"
    settings.validate()
    return settings


@pytest.fixture
async def cleanup_namespace(kube_settings: Settings) -> AsyncIterator[None]:
    yield
    backend = Backend(kube_settings, persist=False)
    client = await backend.runtime.connect()  # type: ignore[attr-defined]
    await client.delete(NAMESPACES, None, kube_settings.runtime.kubernetes.namespace)
    await backend.runtime.close()


def ready_standby(backend: Backend) -> str | None:
    ready = [s for s in backend.pool.standby_sessions() if s.state is SessionState.READY]
    return ready[0].session_id if ready else None


async def test_a_standby_pod_is_claimed_by_relabelling_and_both_survive_a_restart(
    kube_settings: Settings, cleanup_namespace: None
) -> None:
    backend = Backend(kube_settings)
    await backend.start()
    try:
        standby_id = await until(lambda: ready_standby(backend))
        client = backend.runtime.client  # type: ignore[attr-defined]
        ns = client.namespace
        (pod,) = (await client.list(PODS, ns, mf.session_selector(standby_id)))[0]
        template_before = (await client.get(DEPLOYMENTS, ns, standby_id))["spec"]["template"]

        result = await backend.pool.acquire("alice")
        session = result.session
        assert result.is_new_session and session.session_id.startswith("alice-browser-")
        assert session.handle is not None and session.handle.ref == standby_id
        assert result.took_ms < 1000
        pods, _ = await client.list(PODS, ns, mf.session_selector(standby_id))
        assert [p["metadata"]["uid"] for p in pods] == [pod["metadata"]["uid"]], "no new pod"
        claimed = pods[0]["metadata"]
        assert claimed["annotations"][mf.ANNOTATION_CLAIMED] == session.session_id
        assert claimed["labels"][mf.LABEL_USER] == "alice"
        deployment = await client.get(DEPLOYMENTS, ns, standby_id)
        assert deployment["spec"]["template"] == template_before, "no rollout"
        replicasets, _ = await client.list(REPLICASETS, ns, mf.session_selector(standby_id))
        assert len(replicasets) == 1
        assert deployment["metadata"]["annotations"][mf.ANNOTATION_USER] == "alice"
        refill = await until(lambda: ready_standby(backend))
        assert refill != standby_id
        (refill_pod,) = (await client.list(PODS, ns, mf.session_selector(refill)))[0]
    finally:
        await backend.stop()

    again = Backend(kube_settings)
    await again.start()
    try:
        assert again.recovery is not None
        assert session.session_id in again.recovery.adopted
        adopted = again.pool.get(session.session_id)
        assert adopted.user == "alice" and adopted.state is SessionState.READY
        assert refill in again.recovery.adopted, "an unclaimed standby is kept, not replaced"
        assert [s.session_id for s in again.pool.standby_sessions()] == [refill]
        client = again.runtime.client  # type: ignore[attr-defined]
        pods, _ = await client.list(PODS, ns, mf.session_selector(refill))
        assert [p["metadata"]["uid"] for p in pods] == [refill_pod["metadata"]["uid"]]
        reused = await again.pool.acquire("alice")
        assert reused.session is adopted and reused.is_new_session is False
        assert await until(lambda: ready_standby(again)) == refill
        bob = await again.pool.acquire("bob")
        assert bob.is_new_session and bob.session.handle is not None
        assert bob.session.handle.ref == refill, "claimed the re-adopted standby"
    finally:
        await again.stop(stop_sessions=True)


async def test_idle_culling_pinning_and_drain_on_kubernetes(
    kube_settings: Settings, cleanup_namespace: None
) -> None:
    kube_settings.templates["browser"].standby = 0
    kube_settings.pool.idle_timeout = 60
    backend = Backend(kube_settings)
    now = [time.time()]
    backend.pool.clock = lambda: now[0]
    await backend.start()
    try:
        idle = (await backend.pool.acquire("bob")).session
        kept = (await backend.pool.acquire("carol")).session
        busy = (await backend.pool.acquire("erin")).session
        assert busy.tunnel is not None
        # A connection held open through the port-forward tunnel: in use, however long.
        reader, writer = await asyncio.open_connection("127.0.0.1", busy.tunnel.port)
        writer.write(b"GET / HTTP/1.0\r\n")
        await writer.drain()
        record = backend.pool.record(busy.session_id)
        assert record is not None and record.tunnel is not None
        tunnel = record.tunnel
        await until(lambda: tunnel.stats().active == 1)
        backend.pool.pin(kept.session_id)
        backend.pool.set_drain(True)
        with pytest.raises(Draining):
            await backend.pool.acquire("dave")
        assert (await backend.pool.acquire("bob")).session is idle, "reuse while drained"
        now[0] += 61
        with backend.bus.subscribe(kinds={EventKind.CLEANUP_VERIFIED}) as cleanups:
            assert backend.culler.round() == 1
            event = await asyncio.wait_for(cleanups.get(), 60)
        assert event is not None and event.session_id == idle.session_id
        client = backend.runtime.client  # type: ignore[attr-defined]
        items, _ = await client.list(
            DEPLOYMENTS, client.namespace, mf.session_selector(idle.session_id)
        )
        assert items == []
        assert kept.state is SessionState.READY and busy.state is SessionState.READY
        assert busy.last_active_at == now[0]
        writer.close()
    finally:
        await backend.stop(stop_sessions=True)
