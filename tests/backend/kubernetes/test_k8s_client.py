"""The client wrapper against kmock: retries, Retry-After, error classes, timeouts, counting."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
from k8s_helpers import NAMESPACE, Emulator, FakeSleep, write_kubeconfig

from backend.config import KubernetesSettings
from backend.errors import KubeConflict, KubeNotFound, KubernetesError, KubeServerError
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.connect import load_connection
from backend.runtime.kubernetes.kinds import DEPLOYMENTS, PODS, SECRETS

DEPLOYMENT = {"metadata": {"name": "d1", "namespace": NAMESPACE, "labels": {"a": "b"}}}
PODS_RES = kmock.resource("v1/pods")
DEPLOY_RES = kmock.resource("apps/v1/deployments")


def status(code: int, reason: str, message: str = "injected") -> dict[str, object]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "code": code,
        "reason": reason,
        "message": message,
    }


def make_client(kubeconfig: Path, sleep: FakeSleep, **kwargs: object) -> KubeClient:
    connection = load_connection(KubernetesSettings(kubeconfig=str(kubeconfig), namespace=""))
    return KubeClient(connection, threads=4, backoff=(0.1, 0.2, 0.4), sleep=sleep, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def client(kubeconfig: Path, fake_sleep: FakeSleep) -> AsyncIterator[KubeClient]:
    c = make_client(kubeconfig, fake_sleep)
    yield c
    c.close()


async def test_namespace_and_context_come_from_the_kubeconfig(client: KubeClient) -> None:
    assert client.namespace == NAMESPACE
    assert client.connection.context == "mock-ctx"


async def test_server_errors_are_retried_over_the_backoff(
    kube: Emulator, client: KubeClient, fake_sleep: FakeSleep
) -> None:
    await client.create(DEPLOYMENTS, NAMESPACE, DEPLOYMENT)
    kube["get", DEPLOY_RES][:2] << 500 << status(500, "InternalError")
    obj = await client.get(DEPLOYMENTS, NAMESPACE, "d1")
    assert obj["metadata"]["name"] == "d1"
    assert fake_sleep.delays == [0.1, 0.2]
    assert client.calls["get deployment"] == 3
    assert client.retries == 2


async def test_too_many_requests_waits_for_retry_after(
    kube: Emulator, client: KubeClient, fake_sleep: FakeSleep
) -> None:
    await client.create(DEPLOYMENTS, NAMESPACE, DEPLOYMENT)
    kube["get", DEPLOY_RES][:1] << 429 << {"Retry-After": "3"} << status(429, "TooManyRequests")
    await client.get(DEPLOYMENTS, NAMESPACE, "d1")
    assert fake_sleep.delays == [3.0]


async def test_retries_end_with_the_last_error(
    kube: Emulator, client: KubeClient, fake_sleep: FakeSleep
) -> None:
    kube["get", DEPLOY_RES] << 503 << status(503, "ServiceUnavailable", "etcd is down")
    with pytest.raises(KubeServerError) as info:
        await client.get(DEPLOYMENTS, NAMESPACE, "d1")
    assert "etcd is down" in info.value.message
    assert client.calls["get deployment"] == 4  # one try and three retries
    assert fake_sleep.delays == [0.1, 0.2, 0.4]


async def test_conflict_is_retried_on_update_only(
    kube: Emulator, client: KubeClient, fake_sleep: FakeSleep
) -> None:
    await client.create(SECRETS, NAMESPACE, {"metadata": {"name": "s1"}, "stringData": {}})
    kube["patch", kmock.resource("v1/secrets")][:1] << 409 << status(409, "Conflict")
    patched = await client.patch(SECRETS, NAMESPACE, "s1", {"metadata": {"labels": {"x": "y"}}})
    assert patched["metadata"]["labels"] == {"x": "y"}
    assert client.calls["patch secret"] == 2
    with pytest.raises(KubeConflict):
        await client.create(SECRETS, NAMESPACE, {"metadata": {"name": "s1"}})
    assert client.calls["create secret"] == 2  # the first create and the refused one


async def test_client_errors_are_not_retried(kube: Emulator, client: KubeClient) -> None:
    kube["get", PODS_RES] << 403 << status(403, "Forbidden", "pods is forbidden")
    with pytest.raises(KubernetesError) as info:
        await client.list(PODS, NAMESPACE, "a=b")
    assert info.value.status_code == 403
    assert "deploy/rbac.yaml" in info.value.message
    assert client.calls["list pod"] == 1
    with pytest.raises(KubeNotFound):
        await client.get(DEPLOYMENTS, NAMESPACE, "nothing")


async def test_a_slow_answer_times_out_and_is_retried(
    kube: Emulator, kubeconfig: Path, fake_sleep: FakeSleep
) -> None:
    await kube.post(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", json=DEPLOYMENT)
    kube["get", DEPLOY_RES][:1] >> (lambda: asyncio.sleep(1.0))
    slow = make_client(kubeconfig, fake_sleep, request_timeout=(1.0, 0.2))
    try:
        obj = await slow.get(DEPLOYMENTS, NAMESPACE, "d1")
    finally:
        slow.close()
    assert obj["metadata"]["name"] == "d1"
    assert slow.calls["get deployment"] == 2
    assert fake_sleep.delays == [0.1]


async def test_an_unreachable_server_is_a_connection_error(
    tmp_path: Path, fake_sleep: FakeSleep
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "dead", f"http://127.0.0.1:{port}")
    dead = make_client(kubeconfig, fake_sleep)
    try:
        with pytest.raises(KubernetesError) as info:
            await dead.get(PODS, NAMESPACE, "p")
    finally:
        dead.close()
    assert info.value.status_code == 0
    assert f"cannot reach the Kubernetes API at http://127.0.0.1:{port}" in info.value.message
    assert dead.calls["get pod"] == 4
    assert not dead.reachable


async def test_delete_sends_delete_options(kube: Emulator, client: KubeClient) -> None:
    await client.create(DEPLOYMENTS, NAMESPACE, DEPLOYMENT)
    assert await client.delete(DEPLOYMENTS, NAMESPACE, "d1", propagation="Foreground")
    assert not await client.delete(DEPLOYMENTS, NAMESPACE, "d1")
    assert kube.bodies("DELETE", "deployments") == [
        {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"},
        {"apiVersion": "v1", "kind": "DeleteOptions"},
    ]


async def test_requests_are_counted(client: KubeClient) -> None:
    await client.create(DEPLOYMENTS, NAMESPACE, DEPLOYMENT)
    await client.list(DEPLOYMENTS, NAMESPACE)
    client.count("watch pod")
    assert client.requests_sent() == 2
    assert client.requests_sent(include_streams=True) == 3
