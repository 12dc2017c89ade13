"""Resource figures on Kubernetes: pod metrics when served, else requests; the nodes' room.

Against kmock: the choice between ``metrics.k8s.io`` and the pods' requests, how often the
metrics API and the nodes are asked, and a refused node list. Against the harness
(``kubernetes``): a real pod's requests and the real node's allocatable, and that a
cluster without metrics-server (the harness has none) shows requests, marked so.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import NAMESPACE, Emulator, cluster_kubeconfig, make_spec
from test_k8s_cluster import Factory, cluster  # noqa: F401 (the fixture)
from test_k8s_runtime import PODS_PATH, READY, pod_of, status, until

from backend.api.prometheus import metrics_registry, render_metrics
from backend.config import KubernetesSettings, Settings
from backend.events import EventBus
from backend.logs import SessionLogs
from backend.models import WorkloadHandle, WorkloadUsage
from backend.runtime.kubernetes import usage as usage_mod
from backend.runtime.kubernetes.kinds import NAMESPACES
from backend.runtime.kubernetes.runtime import KubernetesRuntime
from backend.runtime.kubernetes.usage import allocatable, pod_requests
from backend.service import Backend
from backend.templates import Template
from tests.backend.conftest import free_port_range

SID = "alice-browser-0a1b2c3d"
MiB = 1 << 20
METRICS_PODS = f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods"


def handle(sid: str = SID) -> WorkloadHandle:
    return WorkloadHandle("kubernetes", sid, "", 3000, {})


def requesting(pod: dict[str, Any], cpu: str, memory: str) -> dict[str, Any]:
    pod["spec"]["containers"] = [
        {"name": "main", "resources": {"requests": {"cpu": cpu, "memory": memory}}},
        {"name": "sidecar", "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
    ]
    return pod


def test_requests_and_allocatable_are_summed_from_specs() -> None:
    spec = requesting({"spec": {}}, "250m", "512Mi")["spec"]
    assert pod_requests(spec) == (0.3, 576 * MiB)
    assert pod_requests({}) == (0.0, 0)
    nodes: list[dict[str, Any]] = [
        {"status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}},
        {"status": {"allocatable": {"cpu": "3500m", "memory": "1Gi"}}},
        {"spec": {"unschedulable": True}, "status": {"allocatable": {"cpu": "64"}}},
    ]
    assert allocatable(nodes) == (11.5, 33 << 30)


async def test_without_metrics_a_session_shows_its_pods_requests_and_the_nodes_room(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    kube["get /apis/metrics.k8s.io/v1beta1"] << 404 << status(404, "NotFound")
    kube["get /api/v1/nodes"] << {
        "items": [{"status": {"allocatable": {"cpu": "4", "memory": "16Gi"}}}]
    }
    await kube.post(PODS_PATH, json=requesting(pod_of(SID, f"{SID}-x1", **READY), "1", "1Gi"))
    assert runtime._caches is not None
    caches = runtime._caches
    await until(lambda: bool(caches.objects(usage_mod.PODS, SID)))

    report = await runtime.resources({"alice-session": handle()})
    assert report.sessions == {"alice-session": WorkloadUsage(105.0, 1088 * MiB, "requested")}
    totals = report.totals
    assert totals is not None
    assert (totals.scope, totals.source) == ("cluster", "requested")
    assert (totals.cpu_cores, totals.memory_bytes) == (4.0, 16 << 30)
    assert (totals.cpu_used_cores, totals.memory_used_bytes) == (1.05, 1088 * MiB)

    # Asked again at once: no new request for the metrics API or the nodes.
    assert runtime.client is not None
    asked = runtime.client.requests_sent()
    assert runtime.client.calls["get metrics api"] == 1 and runtime.client.calls["list node"] == 1
    await runtime.resources({"alice-session": handle()})
    assert runtime.client.requests_sent() == asked


async def test_pod_metrics_are_measured_when_the_cluster_serves_them(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    kube["get /apis/metrics.k8s.io/v1beta1"] << {"kind": "APIResourceList", "resources": []}
    kube[f"get {METRICS_PODS}"] << {
        "items": [
            {
                "metadata": {"name": f"{SID}-x1"},
                "containers": [
                    {"name": "main", "usage": {"cpu": "120000000n", "memory": "100Mi"}},
                    {"name": "sidecar", "usage": {"cpu": "5m", "memory": "20Mi"}},
                ],
            }
        ]
    }
    kube["get /api/v1/nodes"] << 403 << status(403, "Forbidden", "nodes is forbidden")
    await kube.post(PODS_PATH, json=requesting(pod_of(SID, f"{SID}-x1", **READY), "1", "1Gi"))
    assert runtime._caches is not None
    caches = runtime._caches
    await until(lambda: caches.ready_pod(SID) is not None)

    report = await runtime.resources({SID: handle()})
    assert report.sessions == {SID: WorkloadUsage(12.5, 120 * MiB, "measured")}
    totals = report.totals
    assert totals is not None
    assert totals.cpu_cores is None and totals.memory_bytes is None  # nodes refused
    assert "may not list nodes" in totals.detail and "rbac-nodes.yaml" in totals.detail
    assert totals.cpu_used_cores == 1.05  # what the pods request is known all the same


async def test_a_session_without_a_pod_shows_its_deployments_requests(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    kube["get /apis/metrics.k8s.io/v1beta1"] << 404 << status(404, "NotFound")
    kube["get /api/v1/nodes"] << {"items": []}
    spec = make_spec(SID, cpu="500m", memory="256Mi")
    await runtime.start(spec, lambda _: None)
    assert runtime._caches is not None
    caches = runtime._caches
    await until(lambda: bool(caches.objects(usage_mod.DEPLOYMENTS, SID)))
    report = await runtime.resources({SID: handle()})
    assert report.sessions == {SID: WorkloadUsage(50.0, 256 * MiB, "requested")}


# ------------------------------------------------------------------ the harness


@pytest.mark.kubernetes
@pytest.mark.skipif(cluster_kubeconfig() is None, reason="PODWARDEN_TEST_KUBECONFIG is not set")
async def test_on_the_cluster_requests_and_the_nodes_allocatable(cluster: Factory) -> None:  # noqa: F811
    runtime = cluster()
    await runtime.connect()
    sessions = []
    for cpu, memory in (("250m", "512Mi"), ("1", "1Gi")):
        sid = f"alice-browser-{secrets.token_hex(4)}"
        spec = make_spec(sid, cpu=cpu, memory=memory)
        started = await runtime.start(spec, lambda _: None)
        sessions.append(await runtime.wait_ready(started, spec, 30, lambda _: None))
    ids = {f"session-{i}": h for i, h in enumerate(sessions)}

    report = await runtime.resources(ids)
    assert report.sessions == {
        "session-0": WorkloadUsage(25.0, 512 * MiB, "requested"),
        "session-1": WorkloadUsage(100.0, 1024 * MiB, "requested"),
    }
    assert runtime._usage.metrics_served is False  # the harness runs no metrics-server
    totals = report.totals
    assert totals is not None and (totals.scope, totals.source) == ("cluster", "requested")
    # The harness's one node (fake-node-1) offers 8 CPUs and 32 GiB.
    assert (totals.cpu_cores, totals.memory_bytes) == (8.0, 32 << 30)
    assert (totals.cpu_used_cores, totals.memory_used_bytes) == (1.25, 1536 * MiB)
    assert totals.to_dict()["cpu_percent"] == 15.6

    await runtime.stop(sessions[0], 0)
    report = await runtime.resources(ids)
    assert set(report.sessions) == {"session-1"}  # its pod and Deployment are gone
    assert report.totals is not None and report.totals.cpu_used_cores == 1.0


@pytest.mark.kubernetes
@pytest.mark.skipif(cluster_kubeconfig() is None, reason="PODWARDEN_TEST_KUBECONFIG is not set")
async def test_on_the_cluster_sessions_health_and_metrics_say_requested(tmp_path: Path) -> None:
    namespace = f"pw-res-{secrets.token_hex(4)}"
    settings = Settings(state_dir=tmp_path / "state")
    settings.runtime.kind = "kubernetes"
    kube = settings.runtime.kubernetes
    kube.kubeconfig, kube.namespace, kube.delete_timeout = str(cluster_kubeconfig()), namespace, 30
    settings.pool.refresh_interval = 3600
    settings.pool.resources_interval = 3600  # rounds are taken by the test
    settings.tunnels.port_min, settings.tunnels.port_max = free_port_range(20)
    settings.templates = {
        "browser": Template(name="browser", image="example/browser:1", port=3000, cpu="250m")
    }
    settings.default_template = "browser"
    settings.validate()
    backend = Backend(settings)
    await backend.start()
    try:
        session = (await backend.pool.acquire("alice")).session
        assert await backend.resources.round()
        doc = session.to_dict()
        assert (doc["cpu_percent"], doc["memory_bytes"], doc["resources_source"]) == (
            25.0,
            512 * MiB,  # the template's default memory request
            "requested",
        )
        res = backend.health().to_dict()["resources"]
        assert (res["scope"], res["source"]) == ("cluster", "requested")
        assert (res["cpu_cores"], res["memory_bytes"]) == (8.0, 32 << 30)
        assert (res["cpu_used_cores"], res["memory_used_bytes"]) == (0.25, 512 * MiB)
        assert (res["cpu_percent"], res["memory_percent"]) == (3.1, 1.6)
        assert res["sessions_source"] == "requested" and res["detail"] == ""
        text = render_metrics(metrics_registry(backend)).decode()
        labels = f'session_id="{session.session_id}",source="requested"'
        assert (
            f'podwarden_session_cpu_cores{{{labels},template="browser",user="alice"}} 0.25' in text
        )
        assert 'podwarden_resources_cpu_cores{scope="cluster"} 8.0' in text
        assert 'podwarden_resources_memory_used_bytes{scope="cluster",source="requested"}' in text
    finally:
        await backend.stop(stop_sessions=True)
        cleaner = KubernetesRuntime(
            KubernetesSettings(kubeconfig=str(cluster_kubeconfig()), namespace=namespace),
            SessionLogs(EventBus()),
        )
        client = await cleaner.connect()
        await client.delete(NAMESPACES, None, namespace)
        await cleaner.close()
