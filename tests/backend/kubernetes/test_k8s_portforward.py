"""Tunnels: one port-forward stream per local connection, to the pod serving *now*.

The websocket itself needs a kubelet (the test harness has none), so ``open_forward`` is
replaced by a socket pair whose far end echoes; everything around it is real: the
listener, the connector, the pod lookup by label through the watch cache. The stream
itself is tested in ``test_k8s_wsforward.py`` and through a real API server in
``test_kubernetes_tunnel.py``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from k8s_helpers import NAMESPACE, Emulator, make_spec

from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes import portforward
from backend.runtime.kubernetes.runtime import KubernetesRuntime

SID = "alice-browser-0a1b2c3d"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"


class FakeForwards:
    """Opens the far end of a stream (``fake_forward`` makes it ``open_forward``): records
    each stream, echoes upper-cased."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int]] = []

    def __call__(self, configuration: Any, namespace: str, pod: str, port: int) -> socket.socket:
        self.opened.append((pod, port))
        ours, theirs = socket.socketpair()

        def echo() -> None:
            with theirs:
                while data := theirs.recv(65536):
                    theirs.sendall(pod.encode() + b":" + data.upper())

        threading.Thread(target=echo, daemon=True).start()
        ours.setblocking(False)
        return ours


def fake_forward(monkeypatch: pytest.MonkeyPatch, fake: FakeForwards) -> None:
    async def open_forward(
        client: Any, namespace: str, pod: str, port: int, protocol: asyncio.Protocol
    ) -> asyncio.Transport:
        sock = fake(client.connection.configuration, namespace, pod, port)
        return await portforward.adopt_socket(sock, protocol)

    monkeypatch.setattr(portforward, "open_forward", open_forward)


@pytest.fixture
def forwards(monkeypatch: pytest.MonkeyPatch) -> FakeForwards:
    fake = FakeForwards()
    fake_forward(monkeypatch, fake)
    return fake


def ready_pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": mf.session_labels(SID, "Alice Smith", "browser"),
        },
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


async def exchange(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(1024), 5)
    writer.close()
    await writer.wait_closed()
    return data


async def closed_without_data(port: int) -> None:
    """A connection to ``port`` is accepted, then ended (EOF) without a byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_each_connection_gets_its_own_stream_to_the_current_pod(
    kube: Emulator, runtime: KubernetesRuntime, forwards: FakeForwards
) -> None:
    spec = make_spec()
    handle = await runtime.start(spec, lambda _: None)
    await kube.post(PODS_PATH, json=ready_pod(f"{SID}-a", "10.0.0.1"))
    handle = await runtime.wait_ready(handle, spec, 5, lambda _: None)

    tunnel = await runtime.open_tunnel(handle, "127.0.0.1", 0)
    try:
        port = tunnel.info.port
        assert tunnel.is_listening()
        assert tunnel.info.target_port == 3000
        assert await exchange(port, b"one") == f"{SID}-a:ONE".encode()
        assert await exchange(port, b"two") == f"{SID}-a:TWO".encode()

        # The ReplicaSet replaced the pod: the next connection finds the new one by label.
        await kube.delete(f"{PODS_PATH}/{SID}-a")
        await kube.post(PODS_PATH, json=ready_pod(f"{SID}-b", "10.0.0.2"))
        pods = runtime.reflectors["pod"]
        await until(
            lambda: [p["metadata"]["name"] for p in pods.session_objects(SID)] == [f"{SID}-b"]
        )
        assert await exchange(port, b"three") == f"{SID}-b:THREE".encode()
    finally:
        await tunnel.close()
    assert forwards.opened == [(f"{SID}-a", 3000), (f"{SID}-a", 3000), (f"{SID}-b", 3000)]
    assert not tunnel.is_listening()


async def test_without_a_ready_pod_the_connection_is_dropped(
    runtime: KubernetesRuntime, forwards: FakeForwards
) -> None:
    handle = await runtime.start(make_spec(), lambda _: None)
    tunnel = await runtime.open_tunnel(handle, "127.0.0.1", 0)
    try:
        await closed_without_data(tunnel.info.port)  # at once, no hang
    finally:
        await tunnel.close()
    assert forwards.opened == []


async def test_a_taken_port_raises_address_in_use(
    runtime: KubernetesRuntime, forwards: FakeForwards
) -> None:
    handle = await runtime.start(make_spec(), lambda _: None)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(OSError):
            await runtime.open_tunnel(handle, "127.0.0.1", holder.getsockname()[1])


class RefusingFirst(FakeForwards):
    """Refuses the first ``refusals`` handshakes with ``status``, as a lagging kubelet does."""

    def __init__(self, refusals: int, status: int) -> None:
        super().__init__()
        self.refusals, self.status, self.tries = refusals, status, 0

    def __call__(self, configuration: Any, namespace: str, pod: str, port: int) -> socket.socket:
        self.tries += 1
        if self.tries <= self.refusals:
            raise portforward.ForwardRefused(f"pod {namespace}/{pod} is not running", self.status)
        return super().__call__(configuration, namespace, pod, port)


async def open_ready_tunnel(kube: Emulator, runtime: KubernetesRuntime) -> Any:
    spec = make_spec()
    handle = await runtime.start(spec, lambda _: None)
    await kube.post(PODS_PATH, json=ready_pod(f"{SID}-a", "10.0.0.1"))
    handle = await runtime.wait_ready(handle, spec, 5, lambda _: None)
    return await runtime.open_tunnel(handle, "127.0.0.1", 0)


async def test_a_handshake_refused_just_after_ready_is_tried_again(
    kube: Emulator, runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = RefusingFirst(refusals=2, status=400)
    fake_forward(monkeypatch, fake)
    tunnel = await open_ready_tunnel(kube, runtime)
    try:
        assert await exchange(tunnel.info.port, b"late") == f"{SID}-a:LATE".encode()
    finally:
        await tunnel.close()
    assert fake.tries == 3 and fake.opened == [(f"{SID}-a", 3000)]


async def test_a_forbidden_handshake_is_not_tried_again(
    kube: Emulator, runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = RefusingFirst(refusals=1, status=403)
    fake_forward(monkeypatch, fake)
    tunnel = await open_ready_tunnel(kube, runtime)
    try:
        await closed_without_data(tunnel.info.port)
    finally:
        await tunnel.close()
    assert fake.tries == 1 and fake.opened == []


async def test_a_pod_that_never_accepts_ends_the_connection_after_the_dial_window(
    kube: Emulator, runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portforward, "DIAL_WINDOW", 0.3)
    fake = RefusingFirst(refusals=1000, status=400)
    fake_forward(monkeypatch, fake)
    tunnel = await open_ready_tunnel(kube, runtime)
    try:
        await closed_without_data(tunnel.info.port)
    finally:
        await tunnel.close()
    assert 2 <= fake.tries < 10 and fake.opened == []
