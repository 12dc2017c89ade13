"""``KubernetesRuntime`` against kmock: request shapes, idempotence, faults, watches.

kmock runs no controllers, so these tests play the controllers' part: they post the pods
a ReplicaSet would create and patch the statuses a kubelet would report. The whole
lifecycle against a real control plane is in ``test_k8s_cluster.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import kmock
import pytest
from k8s_helpers import NAMESPACE, Emulator, FakeSleep, make_spec, strip_uid

from backend.errors import RuntimeUnavailable, StartError
from backend.events import EventBus, EventKind
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes import watch
from backend.runtime.kubernetes.kinds import SERVICES
from backend.runtime.kubernetes.runtime import KubernetesRuntime

SID = "alice-browser-0a1b2c3d"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"
DEPLOY_RES = kmock.resource("apps/v1/deployments")


def status(code: int, reason: str, message: str = "injected") -> dict[str, object]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "code": code,
        "reason": reason,
        "message": message,
    }


def pod_of(sid: str, name: str, **status_fields: Any) -> dict[str, Any]:
    labels = mf.session_labels(sid, "Alice Smith", "browser")
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": "Pending", **status_fields},
    }


READY = {
    "phase": "Running",
    "podIP": "10.1.2.3",
    "conditions": [{"type": "Ready", "status": "True"}],
}


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition that a watch event makes true (bounded; the loop yields)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------- start


async def test_start_creates_secret_deployment_and_owned_service(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    assert runtime.client is not None
    before = runtime.client.requests_sent()
    spec = make_spec(env={"PASSWORD": "hunter2"})
    phases: list[str] = []
    handle = await runtime.start(spec, phases.append)

    assert runtime.client.requests_sent() - before == 4
    sent = [(m, p.rsplit("/", 1)[-1]) for m, p, _ in kube.sent]
    assert sent[:2] == [("POST", "secrets"), ("POST", "deployments")]
    assert sorted(sent[2:]) == [("PATCH", SID), ("POST", "services")]  # sent at once
    template = spec.template
    (secret,) = kube.bodies("POST", "secrets")
    assert strip_uid(secret) == mf.secret(SID, NAMESPACE, "Alice Smith", "browser", spec.env)
    (deployment,) = kube.bodies("POST", "deployments")
    assert strip_uid(deployment) == mf.deployment(
        SID, NAMESPACE, "Alice Smith", template, with_secret=True
    )
    uid = handle.extra["uid"]
    assert uid
    owner = [mf.owner_reference(SID, uid)]
    (patch,) = kube.bodies("PATCH", "secrets")
    assert patch == {"metadata": {"ownerReferences": owner}}
    (service,) = kube.bodies("POST", "services")
    assert strip_uid(service) == mf.service(SID, NAMESPACE, "Alice Smith", template, uid)
    assert "hunter2" not in str([deployment, service, patch])

    assert handle.runtime == "kubernetes" and handle.ref == SID and handle.port == 3000
    assert handle.extra["namespace"] == NAMESPACE
    assert phases == ["creating", "scheduling"]


async def test_without_credentials_there_is_no_secret(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    spec = make_spec(env={"LANG": "C"})
    spec.template.env = {"LANG": "C"}  # the template's own env is not a credential
    await runtime.start(spec, lambda _: None)
    assert kube.bodies("POST", "secrets") == []
    (deployment,) = kube.bodies("POST", "deployments")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "LANG", "value": "C"}]
    assert "envFrom" not in container


async def test_start_is_idempotent_and_adopts_its_own_deployment(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    first = await runtime.start(make_spec(), lambda _: None)
    kube.sent.clear()
    second = await runtime.start(make_spec(), lambda _: None)
    assert second.extra["uid"] == first.extra["uid"]
    assert [m for m, _, _ in kube.sent] == ["POST", "POST"]  # both 409, then adopted


async def test_a_foreign_object_is_refused_and_left_alone(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    await kube.post(
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
        json={"metadata": {"name": SID, "labels": {"app": "someone-else"}}},
    )
    kube.sent.clear()
    with pytest.raises(StartError) as info:
        await runtime.start(make_spec(), lambda _: None)
    assert "is not podwarden's" in info.value.message
    assert not info.value.retryable
    assert [m for m, _, _ in kube.sent] == ["POST"]  # no delete of someone else's object


async def test_throttled_create_is_retried_after_retry_after(
    kube: Emulator, runtime: KubernetesRuntime, fake_sleep: FakeSleep
) -> None:
    kube["post", DEPLOY_RES][:1] << 429 << {"Retry-After": "2"} << status(429, "TooManyRequests")
    handle = await runtime.start(make_spec(), lambda _: None)
    assert handle.extra["uid"]
    assert fake_sleep.delays == [2.0]


async def test_a_create_that_failed_after_storing_is_adopted_on_retry(
    kube: Emulator, runtime: KubernetesRuntime, fake_sleep: FakeSleep
) -> None:
    # The API server stored the Service but answered 500: the retry meets AlreadyExists
    # and adopts the object, which carries this session's labels.
    kube["post", kmock.resource("v1/services")][:2] << 500 << status(500, "InternalError")
    await runtime.start(make_spec(), lambda _: None)
    assert fake_sleep.delays == [0.1]
    assert runtime.client is not None
    assert runtime.client.calls["create service"] == 2
    assert runtime.client.calls["get service"] == 1


async def test_a_failed_start_removes_what_it_created(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    kube["post", kmock.resource("v1/services")] << 403 << status(403, "Forbidden", "no services")
    with pytest.raises(StartError) as info:
        await runtime.start(make_spec(env={"TOKEN": "t"}), lambda _: None)
    assert "no services" in info.value.message and not info.value.retryable
    deletes = [(p.rsplit("/", 2)[-2], body) for m, p, body in kube.sent if m == "DELETE"]
    assert deletes == [
        ("services", {"apiVersion": "v1", "kind": "DeleteOptions"}),
        (
            "deployments",
            {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"},
        ),
        ("secrets", {"apiVersion": "v1", "kind": "DeleteOptions"}),
    ]


async def test_bad_specs_fail_before_any_request(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    kube.sent.clear()
    with pytest.raises(StartError, match="has no image"):
        await runtime.start(make_spec(image=""), lambda _: None)
    with pytest.raises(StartError, match="credential name"):
        await runtime.start(make_spec(env={"bad key": "x"}), lambda _: None)
    assert kube.sent == []


async def test_concurrent_creates_are_bounded(
    kube: Emulator, make_runtime: Callable[..., KubernetesRuntime]
) -> None:
    in_flight = peak = 0

    async def slow_create() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1

    kube["post", DEPLOY_RES] >> slow_create
    runtime = make_runtime(max_concurrent_creates=2)
    specs = [make_spec(f"u{i}-browser-0000000{i}", user=f"u{i}") for i in range(6)]
    await asyncio.gather(*(runtime.start(s, lambda _: None) for s in specs))
    assert peak == 2


# ---------------------------------------------------------------------------- readiness


async def test_wait_ready_follows_the_pod_through_the_watch(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    spec = make_spec()
    handle = await runtime.start(spec, lambda _: None)
    assert runtime.client is not None
    sent = runtime.client.requests_sent()
    phases: list[str] = []
    waiter = asyncio.create_task(runtime.wait_ready(handle, spec, 10, phases.append))
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x1"))
    await until(lambda: "pulling" in phases)
    await kube.patch(f"{PODS_PATH}/{SID}-x1", json={"status": READY})
    ready = await asyncio.wait_for(waiter, 5)
    assert ready.host == "10.1.2.3" and ready.port == 3000
    assert ready.extra["pod"] == f"{SID}-x1"
    assert phases[:2] == ["scheduling", "pulling"]
    assert runtime.client.requests_sent() == sent  # watching, not polling
    probe = await runtime.probe(ready, spec.template)
    assert probe.alive and f"{SID}-x1" in probe.detail


async def test_an_unpullable_image_fails_at_once(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    spec = make_spec()
    handle = await runtime.start(spec, lambda _: None)
    waiting = {"reason": "ErrImagePull", "message": "pull access denied"}
    statuses = [{"name": "session", "state": {"waiting": waiting}}]
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x1", containerStatuses=statuses))
    with pytest.raises(StartError) as info:
        await asyncio.wait_for(runtime.wait_ready(handle, spec, 30, lambda _: None), 5)
    assert info.value.reason.startswith("ErrImagePull: container 'session'")
    assert "pull access denied" in info.value.message
    assert not info.value.retryable


async def test_a_crash_loop_reports_the_last_log_lines(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    spec = make_spec()
    handle = await runtime.start(spec, lambda _: None)
    name = f"{SID}-x1"
    kube[f"get {PODS_PATH}/{name}/log"] << b"starting\nlogin failed: bad password\n"
    crashing = {
        "name": "session",
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
        "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}},
    }
    await kube.post(PODS_PATH, json=pod_of(SID, name, containerStatuses=[crashing]))
    with pytest.raises(StartError) as info:
        await asyncio.wait_for(runtime.wait_ready(handle, spec, 30, lambda _: None), 5)
    assert info.value.exit_code == 3
    assert info.value.log_tail == ["starting", "login failed: bad password"]
    assert "CrashLoopBackOff" in info.value.message
    assert "login failed: bad password" in runtime.logs(SID)


async def test_a_crash_without_readable_logs_falls_back_to_events(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    spec = make_spec()
    handle = await runtime.start(spec, lambda _: None)
    name = f"{SID}-x1"
    kube[f"get {PODS_PATH}/{name}/log"] << 500 << status(500, "InternalError", "no kubelet")
    event = {
        "metadata": {"name": "e1", "namespace": NAMESPACE},
        "involvedObject": {"name": name},
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
    }
    await kube.post(f"/api/v1/namespaces/{NAMESPACE}/events", json=event)
    crashing = {
        "name": "session",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1}},
    }
    await kube.post(PODS_PATH, json=pod_of(SID, name, containerStatuses=[crashing]))
    with pytest.raises(StartError) as info:
        await asyncio.wait_for(runtime.wait_ready(handle, spec, 30, lambda _: None), 5)
    assert info.value.exit_code == 1
    assert "events: BackOff: Back-off restarting failed container" in info.value.message
    (line,) = runtime.logs(SID)
    assert line.startswith(f"[podwarden] the log of pod {name} cannot be read")


async def test_wait_ready_times_out_with_what_it_saw(
    make_runtime: Callable[..., KubernetesRuntime],
) -> None:
    runtime = make_runtime(ready_timeout=0.0)  # the template's 0.2 s then counts
    spec = make_spec()
    handle = await runtime.start(spec, lambda _: None)
    with pytest.raises(StartError) as info:
        await runtime.wait_ready(handle, spec, 0.2, lambda _: None)
    assert "not ready after 0s: no pod of session" in info.value.message
    assert info.value.retryable


async def test_keepalive_goes_through_the_pod_proxy(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    spec = make_spec(keepalive_path="/keepalive")
    handle = await runtime.start(spec, lambda _: None)
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x1", **READY))
    handle = await runtime.wait_ready(handle, spec, 5, lambda _: None)
    proxy = f"{PODS_PATH}/{SID}-x1:3000/proxy/keepalive"
    kube[f"get {proxy}"][:1] << b"still logged in"
    await runtime.keepalive(handle, spec.template)
    kube[f"get {proxy}"] << 503 << status(503, "ServiceUnavailable", "no endpoints")
    with pytest.raises(StartError, match="keepalive /keepalive failed: GET pod/.*no endpoints"):
        await runtime.keepalive(handle, spec.template)
    await runtime.keepalive(handle, make_spec().template)  # no keepalive path: nothing to do


# ---------------------------------------------------------------------------- stop


async def test_a_replaced_pod_is_reported_gone_then_its_successor(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    moves: list[tuple[str, str | None, str]] = []
    runtime.set_workload_moved_callback(
        lambda sid, h, why: moves.append((sid, h.extra["pod"] if h else None, why))
    )
    spec = make_spec()
    handle = await runtime.start(spec, lambda _: None)
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x1", **READY))
    await runtime.wait_ready(handle, spec, 10, lambda _: None)
    assert moves == []

    not_ready = {"phase": "Running", "podIP": "10.1.2.3", "conditions": []}
    await kube.patch(f"{PODS_PATH}/{SID}-x1", json={"status": not_ready})
    await until(lambda: len(moves) == 1)
    assert moves[0] == (SID, None, f"pod {SID}-x1 is no longer ready")
    await kube.patch(f"{PODS_PATH}/{SID}-x1", json={"status": READY})  # back, same pod
    await until(lambda: len(moves) == 2)
    assert moves[1] == (SID, f"{SID}-x1", f"pod {SID}-x1 is ready again")

    await kube.patch(f"{PODS_PATH}/{SID}-x1", json={"status": not_ready})
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x2", **READY))
    await until(lambda: len(moves) == 4)
    assert moves[2][1] is None
    assert moves[3] == (SID, f"{SID}-x2", f"pod {SID}-x1 replaced by {SID}-x2")

    await runtime.stop(handle, 5)
    await kube.patch(f"{PODS_PATH}/{SID}-x2", json={"status": not_ready})
    assert len(moves) == 4  # a stopped session's pods are no news


async def test_stop_deletes_in_the_foreground_and_verifies(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    handle = await runtime.start(make_spec(env={"TOKEN": "t"}), lambda _: None)
    kube.sent.clear()
    report = await runtime.stop(handle, 5)
    assert report.verified and report.leftovers == ()
    assert report.verified_kinds == ("Deployment", "Service", "Secret")  # what it had
    deletes = sorted((p.rsplit("/", 2)[-2], body) for m, p, body in kube.sent if m == "DELETE")
    assert deletes == [
        (
            "deployments",
            {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
        ),
        ("secrets", {"apiVersion": "v1", "kind": "DeleteOptions"}),
        ("services", {"apiVersion": "v1", "kind": "DeleteOptions"}),
    ]
    assert await runtime.inventory() == {}


async def test_stop_removes_replicasets_and_pods_itself(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    handle = await runtime.start(make_spec(), lambda _: None)
    labels = mf.session_labels(SID, "Alice Smith", "browser")
    replicaset = {"metadata": {"name": f"{SID}-rs1", "namespace": NAMESPACE, "labels": labels}}
    await kube.post(f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets", json=replicaset)
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x1", **READY))
    await kube.post(PODS_PATH, json=pod_of("someone-else", "other-pod"))
    pods = runtime.reflectors["pod"]
    await until(lambda: len(pods.objects) == 2 and bool(runtime.reflectors["replicaset"].objects))
    report = await runtime.stop(handle, 5)
    assert report.verified, report.leftovers
    collection_deletes = [
        (path.rsplit("/", 1)[-1], body)
        for m, path, body in kube.sent
        if m == "DELETE" and path.endswith(("/replicasets", "/pods"))
    ]
    assert collection_deletes == [
        (
            "replicasets",
            {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
        ),
        ("pods", {"apiVersion": "v1", "kind": "DeleteOptions"}),
    ]
    assert list(pods.objects) == ["other-pod"]  # another session's pod is untouched


async def test_stop_without_the_api_reports_at_once(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    handle = await runtime.start(make_spec(), lambda _: None)
    kube.refuse_writes = "apiserver overloaded"
    report = await runtime.stop(handle, 5)
    assert f"deployment/{SID}" in report.leftovers
    assert any("apiserver overloaded" in item for item in report.leftovers)
    assert report.duration_s < 5  # not the 60 s delete_timeout


async def test_stop_of_a_partial_session_and_of_nothing(runtime: KubernetesRuntime) -> None:
    handle = await runtime.start(make_spec(), lambda _: None)
    assert runtime.client is not None
    await runtime.client.delete(SERVICES, NAMESPACE, SID)
    assert (await runtime.stop(handle, 5)).verified
    assert (await runtime.stop(handle, 5)).verified  # twice: nothing left, nothing to do


async def test_what_does_not_go_away_is_reported_as_leftover(
    kube: Emulator, make_runtime: Callable[..., KubernetesRuntime]
) -> None:
    runtime = make_runtime(delete_timeout=0.3)
    handle = await runtime.start(make_spec(), lambda _: None)
    # A pod that does not go away (here: the collection delete fails every time).
    kube["delete", kmock.resource("v1/pods")] << 500 << status(500, "InternalError")
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x1"))
    await until(lambda: bool(runtime.reflectors["pod"].session_objects(SID)))
    report = await runtime.stop(handle, 5)
    assert report.leftovers == (
        f"pod/{SID}-x1",
        f"error: delete pods {mf.session_selector(SID)}: injected",
    )
    assert not report.verified


# ---------------------------------------------------------------------------- recovery


async def test_list_owned_groups_objects_by_session(
    kube: Emulator, runtime: KubernetesRuntime, make_runtime: Callable[..., KubernetesRuntime]
) -> None:
    await runtime.start(make_spec(), lambda _: None)
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x1", **READY))
    other = "bob-browser-11111111"
    service = mf.service(other, NAMESPACE, "bob", make_spec().template, "gone-uid")
    await kube.post(f"/api/v1/namespaces/{NAMESPACE}/services", json=service)

    fresh = make_runtime()  # a new process: sees only what the cluster holds
    owned = {w.session_id: w for w in await fresh.list_owned()}
    assert set(owned) == {SID, other}
    alice = owned[SID]
    assert (alice.user, alice.template, alice.alive, alice.ready) == (
        "Alice Smith",
        "browser",
        True,
        True,
    )
    assert alice.handle.host == "10.1.2.3" and alice.handle.port == 3000
    assert alice.handle.extra["pod"] == f"{SID}-x1"
    assert (owned[other].alive, owned[other].user) == (False, "bob")
    assert await fresh.inventory() == {
        SID: ("deployment", "pod", "service"),
        other: ("service",),
    }
    health = fresh.health()
    assert health.ok and health.workloads == 1


async def test_a_deployment_deleted_behind_our_back_is_reported_lost(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    lost: list[tuple[str, str]] = []
    runtime.set_workload_lost_callback(lambda sid, why: lost.append((sid, why)))
    await runtime.start(make_spec(), lambda _: None)
    await kube.delete(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{SID}")
    await until(lambda: bool(lost))
    assert lost == [(SID, f"Deployment {SID} was deleted outside podwarden")]


# ---------------------------------------------------------------------------- watches


async def test_watch_restarts_from_a_fresh_list_on_410_gone(
    kube: Emulator, make_runtime: Callable[..., KubernetesRuntime]
) -> None:
    gone = {"type": "ERROR", "object": status(410, "Expired", "too old resource version")}
    kube[kmock.action.WATCH, kmock.resource("v1/pods")][:1] << (gone,)
    runtime = make_runtime()
    await runtime.connect()
    pods = runtime.reflectors["pod"]
    await until(lambda: pods.relists >= 2)
    await kube.post(PODS_PATH, json=pod_of(SID, f"{SID}-x1"))
    await until(lambda: bool(pods.session_objects(SID)))
    assert runtime.health().ok


async def test_an_expired_version_refused_up_front_also_relists(
    kube: Emulator, make_runtime: Callable[..., KubernetesRuntime]
) -> None:
    watches = kube[kmock.action.WATCH, kmock.resource("v1/services")]
    watches[:1] << 410 << status(410, "Expired", "too old resource version")
    runtime = make_runtime()
    await runtime.connect()
    services = runtime.reflectors["service"]
    await until(lambda: services.relists >= 2)
    assert services.healthy


async def test_a_broken_watch_degrades_health_until_it_recovers(
    kube: Emulator,
    make_runtime: Callable[..., KubernetesRuntime],
    bus: EventBus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch, "RETRY_DELAYS", (0.3,))
    broken = {"type": "ERROR", "object": status(500, "InternalError", "etcd went away")}
    kube[kmock.action.WATCH, kmock.resource("v1/secrets")][:1] << (broken,)
    events = bus.subscribe(kinds={EventKind.RUNTIME_DEGRADED, EventKind.RUNTIME_RECOVERED})
    runtime = make_runtime()
    await runtime.connect()
    degraded = await asyncio.wait_for(events.get(), 5)
    assert degraded is not None and degraded.kind is EventKind.RUNTIME_DEGRADED
    assert "etcd went away" in degraded.message
    assert not runtime.health().ok
    recovered = await asyncio.wait_for(events.get(), 5)
    assert recovered is not None and recovered.kind is EventKind.RUNTIME_RECOVERED
    assert runtime.health().ok


async def test_a_missing_namespace_is_refused_when_not_to_be_created(
    kube: Emulator, make_runtime: Callable[..., KubernetesRuntime]
) -> None:
    kube["get /api/v1/namespaces/absent"] << 404 << status(404, "NotFound")
    runtime = make_runtime(namespace="absent", create_namespace=False)
    with pytest.raises(RuntimeUnavailable, match="namespace 'absent' does not exist"):
        await runtime.connect()
    assert not runtime.health().ok
