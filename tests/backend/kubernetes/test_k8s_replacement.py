"""Pod replacement on a real control plane, through the pool on the Kubernetes runtime.

A session's pod is deleted (as ``kubectl delete pod`` or an eviction would) and its
ReplicaSet makes another. The session keeps its id and tunnel port; while no pod is ready
it is not ``ready`` and a reuse waits for the new pod; the connections to the old pod end
cleanly; new connections reach the new pod (the harness's page names the pod); the log
follows the new pod; a ``pod_replaced`` event names both pods. A replacement that cannot
start fails the session, and a reuse waiting for it, with the cluster's reason.

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
from backend.errors import StartError
from backend.events import EventKind
from backend.models import SessionState
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import DEPLOYMENTS, NAMESPACES, PODS
from backend.runtime.kubernetes.podstatus import is_pod_ready
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
        await asyncio.sleep(0.01)


@pytest.fixture
def kube_settings(tmp_path: Path) -> Settings:
    settings = Settings(state_dir=tmp_path / "state")
    settings.runtime.kind = "kubernetes"
    kube = settings.runtime.kubernetes
    kube.kubeconfig = str(cluster_kubeconfig())
    kube.namespace = f"pw-replace-{secrets.token_hex(4)}"
    kube.delete_timeout = 30
    kube.ready_timeout = 20
    settings.pool.refresh_interval = 3600
    settings.tunnels.port_min, settings.tunnels.port_max = free_port_range(50)
    settings.templates = {
        "browser": Template(name="browser", image="example/browser:1", port=3000, ready_timeout=20)
    }
    settings.default_template = "browser"
    settings.validate()
    return settings


@pytest.fixture
async def backend(kube_settings: Settings) -> AsyncIterator[Backend]:
    backend = Backend(kube_settings, persist=False)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop(stop_sessions=True)
        cleaner = Backend(kube_settings, persist=False)
        client = await cleaner.runtime.connect()  # type: ignore[attr-defined]
        await client.delete(NAMESPACES, None, kube_settings.runtime.kubernetes.namespace)
        await cleaner.runtime.close()


async def http_get(port: int, path: str = "/") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()


async def ready_pods(client: KubeClient, session_id: str) -> list[str]:
    pods, _ = await client.list(PODS, client.namespace, mf.session_selector(session_id))
    return [p["metadata"]["name"] for p in pods if is_pod_ready(p)]


async def test_a_replaced_pod_keeps_the_port_and_everything_follows_the_new_one(
    backend: Backend,
) -> None:
    client: KubeClient = backend.runtime.client  # type: ignore[attr-defined]
    first = await backend.pool.acquire("alice")
    session = first.session
    assert session.tunnel is not None and session.state is SessionState.READY
    port, old_pod = session.tunnel.port, session.pod
    assert old_pod is not None and old_pod.startswith(session.session_id)
    assert session.to_dict()["pod"] == old_pod
    assert old_pod.encode() in await http_get(port), "the page names the pod"
    sid = session.session_id
    await until(lambda: any(f"/{old_pod} started" in line for line in backend.logs.get(sid)))

    # A raw stream (as VNC would send) open on the old pod while it goes away.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x00RFB 003.008\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(13), 10) == b"\x00RFB 003.008\n"

    events = backend.bus.subscribe(kinds={EventKind.POD_REPLACED})
    await client.delete(PODS, client.namespace, old_pod)  # kubectl delete pod

    # No ready pod: the session says so, and a reuse now waits for the replacement.
    await until(lambda: session.state is not SessionState.READY)
    assert session.to_dict()["state"] == "starting"
    assert session.tunnel is not None and session.tunnel.port == port
    reuse = asyncio.ensure_future(backend.pool.acquire("alice"))
    await asyncio.sleep(0)
    assert not reuse.done()

    # The connection to the old pod ends cleanly (EOF, not a reset).
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()

    async def new_ready() -> tuple[str, float]:
        while True:
            names = [n for n in await ready_pods(client, sid) if n != old_pod]
            if names:
                return names[0], time.monotonic()
            await asyncio.sleep(0.02)

    new_pod, ready_seen = await asyncio.wait_for(new_ready(), 30)
    # New connections reach the new pod within 2 s of it being ready.
    while True:
        try:
            answer = await http_get(port)
        except OSError:
            answer = b""
        if new_pod.encode() in answer:
            break
        assert time.monotonic() - ready_seen < 2.0, "the tunnel did not reach the new pod"
        await asyncio.sleep(0.02)
    assert time.monotonic() - ready_seen < 2.0

    reused = await asyncio.wait_for(reuse, 30)
    assert reused.session is session and session.state is SessionState.READY
    assert session.pod == new_pod and session.to_dict()["pod"] == new_pod
    assert session.tunnel.port == port

    event = await asyncio.wait_for(events.get(), 10)
    assert event is not None and event.session_id == sid
    assert (event.data["old_pod"], event.data["new_pod"]) == (old_pod, new_pod)
    assert event.data["session"]["pod"] == new_pod
    assert event.data["session"]["session_id"] == sid

    # The log follow moved to the new pod: its start line, then its request lines.
    await until(lambda: any(f"/{new_pod} started" in line for line in backend.logs.get(sid)))
    before = len([line for line in backend.logs.get(sid) if "GET /bytes/7" in line])
    assert b" 200 " in (await http_get(port, "/bytes/7")).split(b"\r\n", 1)[0]
    await until(
        lambda: len([line for line in backend.logs.get(sid) if "GET /bytes/7" in line]) > before
    )
    assert backend.pool.active_count == 1

    # Deleting it verifies every kind it had gone, the replacement pod too, and says so.
    with backend.bus.subscribe(kinds={EventKind.CLEANUP_VERIFIED}) as cleanups:
        await backend.pool.terminate(sid)
        cleanup = await asyncio.wait_for(cleanups.get(), 30)
    assert cleanup is not None and cleanup.session_id == sid
    assert cleanup.data["verified_kinds"] == ["Deployment", "ReplicaSet", "Pod", "Service"]
    assert "Deployment, ReplicaSet, Pod, Service gone" in cleanup.message
    assert await ready_pods(client, sid) == []
    assert session.cleanup is not None and session.cleanup.startswith("verified")


async def test_a_replacement_that_cannot_start_fails_with_the_clusters_reason(
    backend: Backend,
) -> None:
    client: KubeClient = backend.runtime.client  # type: ignore[attr-defined]
    session = (await backend.pool.acquire("alice")).session
    sid = session.session_id
    # A new image that cannot be pulled: the Deployment (strategy Recreate) deletes the
    # serving pod and its new pod never gets ready.
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "session", "image": "example/unpullable:2"}]}
            }
        }
    }
    await client.patch(DEPLOYMENTS, client.namespace, sid, patch)
    await until(lambda: session.state is not SessionState.READY)
    with pytest.raises(StartError) as info:
        await backend.pool.acquire("alice")
    assert "its pod was replaced and the new one did not get ready" in info.value.message
    assert "ErrImagePull" in info.value.message
    assert session.state is SessionState.FAILED
    assert session.last_error is not None and "ErrImagePull" in session.last_error
    assert session.tunnel is None or not session.to_dict()["tunnel"]["listening"]
