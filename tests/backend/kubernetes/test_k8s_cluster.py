"""The whole lifecycle against a real control plane (``PODWARDEN_TEST_KUBECONFIG``).

These are the main evidence that the runtime works: a real API server, scheduler,
controller-manager (Deployment, ReplicaSet and garbage-collector controllers) and etcd.
``tests/kubernetes_harness.sh up`` starts one on loopback (v1.20, with a fake kubelet
that marks pods running, fails images named ``unpullable`` and crash-loops images named
``crashloop``). Each test works in a namespace of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_helpers import cluster_kubeconfig, make_spec

from backend.config import KubernetesSettings
from backend.errors import StartError
from backend.events import EventBus
from backend.logs import SessionLogs
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import (
    DEPLOYMENTS,
    NAMESPACES,
    SECRETS,
    SERVICES,
    SESSION_KINDS,
    Kind,
)
from backend.runtime.kubernetes.runtime import KubernetesRuntime

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.skipif(
        cluster_kubeconfig() is None,
        reason="PODWARDEN_TEST_KUBECONFIG is not set (tests/kubernetes_harness.sh up)",
    ),
]

Factory = Callable[..., KubernetesRuntime]
RBAC = Path(__file__).resolve().parents[3] / "deploy" / "rbac.yaml"


@pytest.fixture
async def cluster() -> AsyncIterator[Factory]:
    """Makes runtimes on one fresh namespace; closes them and deletes the namespace."""
    namespace = f"pw-test-{secrets.token_hex(4)}"
    bus = EventBus()
    made: list[KubernetesRuntime] = []

    def make(kubeconfig: str | None = None) -> KubernetesRuntime:
        settings = KubernetesSettings(
            kubeconfig=kubeconfig or str(cluster_kubeconfig()),
            namespace=namespace,
            delete_timeout=30,
        )
        runtime = KubernetesRuntime(settings, SessionLogs(bus), bus)
        made.append(runtime)
        return runtime

    yield make
    cleaner = make()
    client = await cleaner.connect()
    await client.delete(NAMESPACES, None, namespace)
    for runtime in made:
        await runtime.close()


def sid() -> str:
    return f"alice-browser-{secrets.token_hex(4)}"


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll an assertion helper until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def session_objects(client: KubeClient, session_id: str) -> list[str]:
    """Every object of the session the API server holds, asked directly."""
    found = []
    for kind in SESSION_KINDS:
        items, _ = await client.list(kind, client.namespace, mf.session_selector(session_id))
        found += [f"{kind.name}/{i['metadata']['name']}" for i in items]
    return found


async def test_create_ready_verify_and_clean_up(cluster: Factory) -> None:
    runtime = cluster()
    client = await runtime.connect()
    ns = client.namespace
    created_ns = await client.get(NAMESPACES, None, ns)
    assert created_ns["metadata"]["labels"] == {mf.LABEL_MANAGED_BY: mf.MANAGED_BY}

    lost: list[str] = []
    runtime.set_workload_lost_callback(lambda s, _why: lost.append(s))
    session_id = sid()
    spec = make_spec(session_id, env={"TOKEN": "s3cret"})
    started = time.monotonic()
    handle = await runtime.start(spec, lambda _: None)
    ready = await runtime.wait_ready(handle, spec, 30, lambda _: None)
    assert time.monotonic() - started < 10
    assert ready.host.startswith("127.") and ready.port == 3000  # the pod IP
    assert ready.extra["pod"].startswith(session_id)

    deployment = await client.get(DEPLOYMENTS, ns, session_id)
    uid = deployment["metadata"]["uid"]
    assert uid == handle.extra["uid"]
    assert deployment["metadata"]["labels"] == mf.session_labels(
        session_id, "Alice Smith", "browser"
    )
    annotations = deployment["metadata"]["annotations"]
    assert annotations["podwarden.io/user"] == "Alice Smith"
    assert annotations["podwarden.io/template"] == "browser"
    assert "s3cret" not in str(deployment)
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": session_id, "uid": uid}
    service = await client.get(SERVICES, ns, session_id)
    assert service["metadata"]["ownerReferences"] == [owner]
    assert service["spec"]["type"] == "ClusterIP"
    secret = await client.get(SECRETS, ns, session_id)
    assert secret["metadata"]["ownerReferences"] == [owner]
    assert base64.b64decode(secret["data"]["TOKEN"]) == b"s3cret"
    kinds = {name.split("/")[0] for name in await session_objects(client, session_id)}
    assert kinds == {"deployment", "replicaset", "pod", "service", "secret"}

    assert (await runtime.probe(ready, spec.template)).alive
    (owned,) = await runtime.list_owned()
    assert (owned.session_id, owned.user, owned.alive, owned.ready) == (
        session_id,
        "Alice Smith",
        True,
        True,
    )
    assert runtime.health().ok and runtime.health().workloads == 1

    report = await runtime.stop(ready, 5)
    assert report.verified, report.leftovers
    assert report.duration_s < 5
    assert report.verified_kinds == ("Deployment", "ReplicaSet", "Pod", "Service", "Secret")
    assert await session_objects(client, session_id) == []
    assert (await runtime.probe(ready, spec.template)).gone
    assert lost == []  # its own stop is not a lost workload


async def test_an_unpullable_image_fails_with_the_clusters_reason(cluster: Factory) -> None:
    runtime = cluster()
    spec = make_spec(sid(), image="registry.example/unpullable:1")
    handle = await runtime.start(spec, lambda _: None)
    started = time.monotonic()
    with pytest.raises(StartError) as info:
        await runtime.wait_ready(handle, spec, 60, lambda _: None)
    assert time.monotonic() - started < 5
    assert info.value.reason.startswith("ErrImagePull:")
    assert "pull access denied" in info.value.reason
    assert (await runtime.stop(handle, 5)).verified


async def test_a_crash_loop_fails_with_exit_code_and_events(cluster: Factory) -> None:
    runtime = cluster()
    session_id = sid()
    spec = make_spec(session_id, image="registry.example/crashloop:1")
    handle = await runtime.start(spec, lambda _: None)
    with pytest.raises(StartError) as info:
        await runtime.wait_ready(handle, spec, 60, lambda _: None)
    assert info.value.reason.startswith("CrashLoopBackOff:")
    assert info.value.exit_code == 1
    message = info.value.message
    assert "restarting failed container=session" in message and "(restarted " in message
    # The kubelet serves the crashed container's log: its last lines say why it died.
    assert "last log lines: " in message and "fatal: simulated crash" in message
    lines = runtime.logs(session_id)
    assert any("started" in line for line in lines)
    assert any("fatal: simulated crash" in line for line in lines)
    assert (await runtime.stop(handle, 5)).verified


async def test_an_unschedulable_pod_fails_with_the_schedulers_message(cluster: Factory) -> None:
    runtime = cluster()
    spec = make_spec(sid(), node_selector={"podwarden.io/nowhere": "true"})
    handle = await runtime.start(spec, lambda _: None)
    with pytest.raises(StartError) as info:
        await runtime.wait_ready(handle, spec, 60, lambda _: None)
    assert info.value.reason.startswith("Unschedulable: 0/1 nodes are available")
    assert "didn't match" in info.value.reason  # the scheduler's own words
    assert (await runtime.stop(handle, 5)).verified


async def test_a_new_runtime_adopts_what_the_old_one_started(cluster: Factory) -> None:
    first = cluster()
    session_id = sid()
    spec = make_spec(session_id)
    handle = await first.start(spec, lambda _: None)
    ready = await first.wait_ready(handle, spec, 30, lambda _: None)
    await first.close()  # the backend exits; the workload keeps running

    second = cluster()
    (owned,) = await second.list_owned()
    assert owned.session_id == session_id
    assert (owned.user, owned.template, owned.alive, owned.ready) == (
        "Alice Smith",
        "browser",
        True,
        True,
    )
    assert owned.handle.host == ready.host and owned.handle.extra["uid"] == handle.extra["uid"]
    # Starting the same session again is idempotent: it adopts, it does not duplicate.
    again = await second.start(spec, lambda _: None)
    assert again.extra["uid"] == handle.extra["uid"]
    assert (await second.wait_ready(again, spec, 30, lambda _: None)).host == ready.host
    assert (await second.stop(again, 5)).verified


async def test_a_deployment_deleted_behind_its_back_is_noticed(cluster: Factory) -> None:
    runtime = cluster()
    lost: list[tuple[str, str]] = []
    runtime.set_workload_lost_callback(lambda s, why: lost.append((s, why)))
    session_id = sid()
    spec = make_spec(session_id)
    handle = await runtime.start(spec, lambda _: None)
    ready = await runtime.wait_ready(handle, spec, 30, lambda _: None)
    client = await runtime.connect()

    await client.delete(DEPLOYMENTS, client.namespace, session_id)  # kubectl delete
    await until(lambda: lost)
    assert lost == [(session_id, f"Deployment {session_id} was deleted outside podwarden")]

    async def deployment_gone() -> bool:
        return "deployment" not in (await runtime.inventory()).get(session_id, ())

    await until(deployment_gone)
    assert (await runtime.probe(ready, spec.template)).gone
    assert not any(w.alive for w in await runtime.list_owned())
    assert (await runtime.stop(ready, 5)).verified  # whatever was left goes too
    assert await session_objects(client, session_id) == []


async def test_ten_concurrent_sessions(cluster: Factory) -> None:
    runtime = cluster()
    specs = [make_spec(sid(), user=f"user{i}", cpu="50m", memory="64Mi") for i in range(10)]

    async def lifecycle(spec: Any) -> None:
        handle = await runtime.start(spec, lambda _: None)
        await runtime.wait_ready(handle, spec, 30, lambda _: None)

    await asyncio.gather(*(lifecycle(s) for s in specs))
    assert {w.session_id for w in await runtime.list_owned() if w.ready} == {
        s.session_id for s in specs
    }
    client = await runtime.connect()
    assert client.calls["create deployment"] == 10 and client.calls["create service"] == 10
    reports = await asyncio.gather(
        *(runtime.stop(make_handle(runtime, s.session_id), 5) for s in specs)
    )
    assert all(r.verified for r in reports)
    assert await runtime.inventory() == {}


async def http_get_through(port: int, path: str = "/") -> bytes:
    """One HTTP/1.0 GET to 127.0.0.1:port; the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()


async def test_the_log_follows_the_pod_and_the_tunnel_reaches_it(cluster: Factory) -> None:
    runtime = cluster()
    session_id = sid()
    spec = make_spec(session_id)
    handle = await runtime.start(spec, lambda _: None)
    ready = await runtime.wait_ready(handle, spec, 30, lambda _: None)
    lines = await until(lambda: runtime.logs(session_id))
    assert "started" in lines[0] and "cannot be followed" not in lines[0]

    tunnel = await runtime.open_tunnel(ready, "127.0.0.1", 0)
    try:
        assert tunnel.is_listening()
        answer = await http_get_through(tunnel.info.port)
        assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]
        assert session_id.encode() in answer, "the page names this session's own pod"
        # The pod's server logs each request, and the session's log follows it.
        await until(lambda: [line for line in runtime.logs(session_id) if "GET /" in line])
    finally:
        await tunnel.close()
    assert (await runtime.stop(ready, 5)).verified


def make_handle(runtime: KubernetesRuntime, session_id: str) -> Any:
    from backend.models import WorkloadHandle

    return WorkloadHandle("kubernetes", session_id, "", 3000, {"namespace": runtime.namespace})


async def service_account_kubeconfig(client: KubeClient, path: Path) -> Path:
    """Apply deploy/rbac.yaml in the client's namespace; a kubeconfig with its token."""
    ns = client.namespace
    kinds = {
        "ServiceAccount": Kind("serviceaccount", "/api/v1", "serviceaccounts"),
        "Role": Kind("role", "/apis/rbac.authorization.k8s.io/v1", "roles"),
        "RoleBinding": Kind("rolebinding", "/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    }
    text = RBAC.read_text(encoding="utf-8").replace("namespace: podwarden", f"namespace: {ns}")
    for document in yaml.safe_load_all(text):
        await client.create(kinds[document["kind"]], ns, document)

    async def token_secret() -> str:
        account = await client.get(kinds["ServiceAccount"], ns, "podwarden")
        names = [ref["name"] for ref in account.get("secrets") or []]
        return names[0] if names else ""

    secret = await client.get(SECRETS, ns, await until(token_secret))
    token = base64.b64decode(secret["data"]["token"]).decode()
    admin = yaml.safe_load(Path(str(cluster_kubeconfig())).read_text(encoding="utf-8"))
    cluster_entry = admin["clusters"][0]
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster_entry],
                "users": [{"name": "podwarden", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "podwarden",
                        "context": {
                            "cluster": cluster_entry["name"],
                            "user": "podwarden",
                            "namespace": ns,
                        },
                    }
                ],
                "current-context": "podwarden",
            }
        ),
        encoding="utf-8",
    )
    return path


async def test_the_rbac_manifest_grants_what_the_runtime_uses(
    cluster: Factory, tmp_path: Path
) -> None:
    admin = cluster()
    kubeconfig = await service_account_kubeconfig(await admin.connect(), tmp_path / "sa")
    runtime = cluster(str(kubeconfig))
    client = await runtime.connect()  # reading the namespace is forbidden: assumed to exist
    assert client.connection.context == "podwarden"

    session_id = sid()
    spec = make_spec(session_id, env={"TOKEN": "s3cret"})
    handle = await runtime.start(spec, lambda _: None)
    ready = await runtime.wait_ready(handle, spec, 30, lambda _: None)
    assert (await runtime.probe(ready, spec.template)).alive
    assert [w.session_id for w in await runtime.list_owned()] == [session_id]
    lines = await until(lambda: runtime.logs(session_id))
    assert "started" in lines[0] and "forbidden" not in lines[0]  # pods/log is granted
    tunnel = await runtime.open_tunnel(ready, "127.0.0.1", 0)
    try:  # pods/portforward is granted
        assert session_id.encode() in await http_get_through(tunnel.info.port)
    finally:
        await tunnel.close()
    assert (await runtime.stop(ready, 5)).verified

    crash = make_spec(sid(), image="registry.example/crashloop:1")
    handle = await runtime.start(crash, lambda _: None)
    with pytest.raises(StartError) as info:
        await runtime.wait_ready(handle, crash, 30, lambda _: None)
    assert "fatal: simulated crash" in info.value.message
    assert "forbidden" not in info.value.message
    assert (await runtime.stop(handle, 5)).verified
    assert runtime.health().ok
