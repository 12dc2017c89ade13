"""Tunnels through a real API server's port-forward to the harness's pod workloads.

The fake kubelet (``tests/kubernetes_harness.sh``) serves each running pod's containerPort:
``GET /`` names the pod, ``GET /bytes/N`` sends N bytes, anything else is echoed back raw.
Every byte here goes client -> ``TcpRelay`` -> port-forward stream -> API server ->
kubelet API -> the pod's server, and back.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from k8s_helpers import cluster_kubeconfig, make_spec

from backend.config import KubernetesSettings
from backend.events import EventBus
from backend.logs import SessionLogs
from backend.models import WorkloadHandle
from backend.runtime.base import Tunnel
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.kinds import DEPLOYMENTS, NAMESPACES, PODS
from backend.runtime.kubernetes.runtime import KubernetesRuntime

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.skipif(
        cluster_kubeconfig() is None,
        reason="PODWARDEN_TEST_KUBECONFIG is not set (tests/kubernetes_harness.sh up)",
    ),
]

TIMEOUT = 30.0


@pytest.fixture
async def runtime() -> AsyncIterator[KubernetesRuntime]:
    """A runtime on a fresh namespace, deleted afterwards."""
    namespace = f"pw-tunnel-{secrets.token_hex(4)}"
    settings = KubernetesSettings(
        kubeconfig=str(cluster_kubeconfig()), namespace=namespace, delete_timeout=30
    )
    rt = KubernetesRuntime(settings, SessionLogs(EventBus()), EventBus())
    await rt.connect()
    yield rt
    client = await rt.connect()
    await client.delete(NAMESPACES, None, namespace)
    await rt.close()


async def ready_session(runtime: KubernetesRuntime, **fields: Any) -> WorkloadHandle:
    spec = make_spec(f"alice-browser-{secrets.token_hex(4)}", cpu="50m", memory="64Mi", **fields)
    handle = await runtime.start(spec, lambda _: None)
    return await runtime.wait_ready(handle, spec, TIMEOUT, lambda _: None)


@pytest.fixture
async def tunnel(runtime: KubernetesRuntime) -> AsyncIterator[Tunnel]:
    handle = await ready_session(runtime)
    opened = await runtime.open_tunnel(handle, "127.0.0.1", 0)
    yield opened
    await opened.close()


def pod_names(runtime: KubernetesRuntime, session_id: str) -> list[str]:
    return [p["metadata"]["name"] for p in runtime.reflectors["pod"].session_objects(session_id)]


async def http_get(port: int, path: str = "/") -> tuple[bytes, bytes]:
    """One HTTP/1.0 GET through 127.0.0.1:port: (head, body); the server closes after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n", 1)[0].split(b" ")[1] == b"200", head
    return head, body


async def test_each_sessions_tunnel_reaches_its_own_pod(runtime: KubernetesRuntime) -> None:
    handles = await asyncio.gather(*(ready_session(runtime) for _ in range(3)))
    tunnels = [await runtime.open_tunnel(h, "127.0.0.1", 0) for h in handles]
    try:
        assert len({t.info.port for t in tunnels}) == 3
        for handle, tunnel in zip(handles, tunnels, strict=True):
            _, page = await http_get(tunnel.info.port)
            (pod,) = pod_names(runtime, handle.ref)
            assert pod.encode() in page, "the page names this session's own pod"
            for other in handles:
                if other is not handle:
                    assert other.ref.encode() not in page
    finally:
        for tunnel in tunnels:
            await tunnel.close()


async def test_100_mb_arrive_complete_and_intact(tunnel: Tunnel) -> None:
    size = 100 * 1000 * 1000
    reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.info.port)
    try:
        writer.write(f"GET /bytes/{size} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert b" 200 " in head.split(b"\r\n", 1)[0]
        # The body is bytes 0..255 over and over: every chunk is checked at its offset, so
        # nothing was dropped, reordered or duplicated on the way.
        digest, expected, received = hashlib.sha256(), hashlib.sha256(), 0
        while chunk := await asyncio.wait_for(reader.read(1 << 20), TIMEOUT):
            digest.update(chunk)
            received += len(chunk)
        pattern = bytes(range(256)) * 4096
        whole, rest = divmod(size, len(pattern))
        for _ in range(whole):
            expected.update(pattern)
        expected.update(pattern[:rest])
    finally:
        writer.close()
    assert received == size
    assert digest.hexdigest() == expected.hexdigest()
    assert tunnel.stats().bytes_down >= size


async def test_raw_stream_round_trips_like_vnc(tunnel: Tunnel) -> None:
    """A VNC client speaks first with binary frames; the pod echoes them unchanged."""
    reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.info.port)
    try:
        frames = [b"RFB 003.008\n", bytes(range(256)) * 16, secrets.token_bytes(300_000)]
        for frame in frames:
            writer.write(frame)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(frame)), TIMEOUT) == frame
    finally:
        writer.close()


async def test_20_concurrent_connections_through_one_tunnel(tunnel: Tunnel) -> None:
    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.info.port)
        try:
            payload = f"connection {i} ".encode() * 1000
            writer.write(payload)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(payload)), TIMEOUT) == payload
        finally:
            writer.close()

    await asyncio.gather(*(one(i) for i in range(20)))
    assert tunnel.stats().total >= 20


async def wait_for(predicate: Any, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
    return value


class StandIn:
    """A server bound to the pod's IP and port in place of the harness's workload: it sees
    when the far end of the tunnel closes, and can close its own end."""

    def __init__(self, host: str, port: int) -> None:
        self.listener = socket.create_server((host, port))
        self.accepted: list[socket.socket] = []
        self.peer_closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.accepted.append(conn)
        while data := conn.recv(65536):
            conn.sendall(data)
        self.peer_closed.set()

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.listener.close()


async def standin_session(runtime: KubernetesRuntime) -> tuple[WorkloadHandle, str]:
    """A ready session whose pod runs no harness workload; returns it and the pod's IP."""
    handle = await ready_session(runtime)
    client = await runtime.connect()
    (deployment,) = (
        await client.list(DEPLOYMENTS, client.namespace, mf.session_selector(handle.ref))
    )[0]
    patch = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"fake-kubelet.k8s-harness/workload": "false"}}
            }
        }
    }
    await client.patch(DEPLOYMENTS, client.namespace, deployment["metadata"]["name"], patch)

    async def the_new_pod() -> dict[str, Any] | None:
        pods, _ = await client.list(PODS, client.namespace, mf.session_selector(handle.ref))
        ready = [
            p
            for p in pods
            if (p["metadata"].get("annotations") or {}).get("fake-kubelet.k8s-harness/workload")
            and p["status"].get("podIP")
            and not p["metadata"].get("deletionTimestamp")
        ]
        return ready[0] if len(pods) == 1 and ready else None

    deadline = time.monotonic() + TIMEOUT
    while (pod := await the_new_pod()) is None:
        assert time.monotonic() < deadline, "the patched pod did not come up"
        await asyncio.sleep(0.1)
    await wait_for(lambda: pod_names(runtime, handle.ref) == [pod["metadata"]["name"]])
    return handle, str(pod["status"]["podIP"])


async def test_closing_either_end_closes_the_other(runtime: KubernetesRuntime) -> None:
    handle, pod_ip = await standin_session(runtime)
    tunnel = await runtime.open_tunnel(handle, "127.0.0.1", 0)
    try:
        # The client closes: the pod's end sees EOF.
        standin = StandIn(pod_ip, handle.port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.info.port)
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), TIMEOUT) == b"hello"
            writer.close()
            assert await asyncio.to_thread(standin.peer_closed.wait, TIMEOUT)
        finally:
            standin.close()

        # The pod closes: the client sees EOF.
        standin = StandIn(pod_ip, handle.port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.info.port)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"ping"
            standin.accepted[0].shutdown(socket.SHUT_RDWR)
            standin.accepted[0].close()
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
            writer.close()
        finally:
            standin.close()
        await wait_for(lambda: tunnel.stats().active == 0)
    finally:
        await tunnel.close()
