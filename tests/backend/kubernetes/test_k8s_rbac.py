"""Least privilege, proven: the whole lifecycle as the ServiceAccount of ``deploy/rbac.yaml``.

The test applies the manifest in a fresh namespace and runs podwarden with nothing but that
account's token: create (with a credentials Secret), ready, tunnel, logs, keepalive, a pod
replacement, a restart with re-adoption, an orphan removed at recovery, a crash diagnosed
from the pod's events and log, and delete. Every request the account makes is recorded
(below urllib3 and the websocket client, so watches, log follows and port-forwards count)
and mapped to its RBAC (verb, resource): every rule of the Role must have been used, so the
manifest grants nothing the run does not use, and podwarden asks for nothing it does not
grant. Two grants are kept without use here (``UNUSED_ON_PURPOSE``): ``create`` on
``pods/portforward`` (Kubernetes 1.30 and later authorize a websocket port-forward as
``create``; the harness's v1.20 asks ``get``) and ``list`` on events (see below).

Needs ``PODWARDEN_TEST_KUBECONFIG`` (``tests/kubernetes_harness.sh up``); skipped without.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from k8s_helpers import cluster_kubeconfig, make_spec
from test_k8s_cluster import RBAC, http_get_through, service_account_kubeconfig, until

from backend.config import Settings
from backend.errors import StartError
from backend.events import EventKind
from backend.models import SessionState
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import NAMESPACES, PODS
from backend.runtime.kubernetes.runtime import KubernetesRuntime
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

UNUSED_ON_PURPOSE = {("create", "pods/portforward"), ("list", "events")}
"""Granted but not asked for in this run: ``create`` on ``pods/portforward`` is what newer
API servers ask (see the module docstring); events are listed only for a crashed container
whose log is empty (``diagnose``), and the harness's crash loop always leaves a log."""


class Requests:
    """Every request that carries one bearer token, as (HTTP method, URL)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, method: str, url: str, headers: Any) -> None:
        auth = {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}
        if auth.get("authorization") == f"Bearer {self.token}":
            with self._lock:
                self.seen.append((method.upper(), url))

    def rbac(self) -> set[tuple[str, str]]:
        """The (verb, resource) pairs these requests were authorized as."""
        return {rbac_of(method, url) for method, url in self.seen}


def rbac_of(method: str, url: str) -> tuple[str, str]:
    """How the API server's authorizer names one namespaced request (verb, resource)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    segments = [s for s in parts.path.split("/") if s]
    # /api/v1/namespaces/NS/RESOURCE[/NAME[/SUB...]] or /apis/GROUP/VERSION/namespaces/...
    rest = segments[segments.index("namespaces") + 2 :] if "namespaces" in segments else []
    if not rest:
        return (method.lower(), "namespaces")
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    named = len(rest) >= 2
    if method in ("GET", "WS"):
        if not named:
            verb = "watch" if query.get("watch") == ["true"] else "list"
        else:
            verb = "get"
    else:
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(method, "")
        if method == "DELETE":
            verb = "delete" if named else "deletecollection"
    return (verb, resource)


def granted() -> set[tuple[str, str]]:
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "Role")
    return {
        (verb, res) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]
    }


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Requests]]:
    """Records requests below the client: urllib3 (REST, watch, logs) and websockets (the
    tunnel's own, ``wsforward``, and the official client's, which a proxy would use)."""
    import urllib3
    from kubernetes.stream import ws_client

    from backend.runtime.kubernetes import wsforward

    recorders: list[Requests] = []
    urlopen = urllib3.PoolManager.urlopen
    create_websocket = ws_client.create_websocket

    def recording_urlopen(self: Any, method: str, url: str, *args: Any, **kw: Any) -> Any:
        for r in recorders:
            r.add(method, url, kw.get("headers"))
        return urlopen(self, method, url, *args, **kw)

    def recording_websocket(configuration: Any, url: str, headers: Any = None) -> Any:
        for r in recorders:
            r.add("WS", url, headers)
        return create_websocket(configuration, url, headers)

    request = wsforward.ForwardEndpoint.request

    def recording_request(
        self: Any, namespace: str, pod: str, port: int, auth: dict[str, str]
    ) -> bytes:
        data = request(self, namespace, pod, port, auth)
        path = data.split(b" ", 2)[1].decode()
        for r in recorders:
            r.add("WS", f"https://{self.host}:{self.port}{path}", auth)
        return data

    monkeypatch.setattr(urllib3.PoolManager, "urlopen", recording_urlopen)
    monkeypatch.setattr(ws_client, "create_websocket", recording_websocket)
    monkeypatch.setattr(wsforward.ForwardEndpoint, "request", recording_request)
    yield recorders


@pytest.fixture
async def namespace() -> AsyncIterator[tuple[str, KubeClient]]:
    """A fresh namespace and an admin client on it; deleted afterwards."""
    from backend.config import KubernetesSettings
    from backend.events import EventBus
    from backend.logs import SessionLogs

    name = f"pw-rbac-{secrets.token_hex(4)}"
    settings = KubernetesSettings(kubeconfig=str(cluster_kubeconfig()), namespace=name)
    bus = EventBus()
    admin = KubernetesRuntime(settings, SessionLogs(bus), bus)
    client = await admin.connect()
    try:
        yield name, client
    finally:
        await client.delete(NAMESPACES, None, name)
        await admin.close()


def sa_settings(tmp_path: Path, kubeconfig: Path, namespace: str) -> Settings:
    settings = Settings(state_dir=tmp_path / "state")
    settings.runtime.kind = "kubernetes"
    kube = settings.runtime.kubernetes
    kube.kubeconfig, kube.namespace = str(kubeconfig), namespace
    kube.delete_timeout, kube.ready_timeout = 30, 20
    kube.unknown_workloads = "delete"
    settings.pool.refresh_interval = 3600
    settings.pool.start_attempts = 1
    settings.tunnels.port_min, settings.tunnels.port_max = free_port_range(50)
    settings.templates = {
        "browser": Template(
            name="browser",
            image="example/browser:1",
            port=3000,
            keepalive_path="/",
            credentials=["TOKEN"],
        ),
        "crashing": Template(name="crashing", image="example/crashloop:1", port=3000),
    }
    settings.default_template = "browser"
    settings.validate()
    return settings


async def test_the_whole_lifecycle_as_the_rbac_service_account_uses_every_grant(
    namespace: tuple[str, KubeClient], recorded: list[Requests], tmp_path: Path
) -> None:
    ns, admin = namespace
    kubeconfig = await service_account_kubeconfig(admin, tmp_path / "sa.kubeconfig")
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    requests = Requests(token)
    recorded.append(requests)
    settings = sa_settings(tmp_path, kubeconfig, ns)

    backend = Backend(settings)
    await backend.start()
    try:
        # Create with credentials (a Secret), ready, tunnel, logs, keepalive.
        session = (await backend.pool.acquire("alice", credentials={"TOKEN": "s3cret"})).session
        assert session.state is SessionState.READY and session.tunnel is not None
        sid, port, first_pod = session.session_id, session.tunnel.port, session.pod
        assert first_pod and first_pod.encode() in await http_get_through(port)
        await until(lambda: any("started" in line for line in backend.logs.get(sid)))
        # Keepalive through pods/proxy: authorized (not 403); the API server then refuses
        # to dial the harness's loopback pod IPs ("address not allowed"), a harness limit.
        try:
            await backend.runtime.keepalive(session.handle, settings.templates["browser"])  # type: ignore[arg-type]
        except StartError as e:
            assert "address not allowed" in e.message and "forbidden" not in e.message.lower()

        # Pod replacement (an operator deletes the pod): same port, the new pod serves.
        with backend.bus.subscribe(kinds={EventKind.POD_REPLACED}) as replaced:
            await admin.delete(PODS, ns, first_pod)
            event = await asyncio.wait_for(replaced.get(), 30)
        assert event is not None and event.data["old_pod"] == first_pod
        again = await backend.pool.acquire("alice")
        assert again.session is session and session.pod not in (None, first_pod)
        assert str(session.pod).encode() in await http_get_through(port)

        # A crashing workload is diagnosed from its events and log.
        with pytest.raises(StartError) as info:
            await backend.pool.acquire("bob", "crashing")
        assert "fatal: simulated crash" in info.value.message
        assert "forbidden" not in info.value.message.lower()
    finally:
        await backend.stop()  # the workloads keep running

    # An orphan: a workload of this namespace the store does not know.
    stray = KubernetesRuntime(settings.runtime.kubernetes, backend.logs, None)
    orphan = make_spec(f"carol-browser-{secrets.token_hex(4)}", user="carol")
    handle = await stray.start(orphan, lambda _: None)
    await stray.wait_ready(handle, orphan, 30, lambda _: None)
    await stray.close()

    restarted = Backend(settings)
    removed = restarted.bus.subscribe(kinds={EventKind.ORPHAN_REMOVED})
    await restarted.start()
    try:
        assert restarted.recovery is not None
        assert sid in restarted.recovery.adopted
        assert orphan.session_id in restarted.recovery.stopped
        event = await asyncio.wait_for(removed.get(), 30)
        assert event is not None and event.session_id == orphan.session_id
        adopted = restarted.pool.get(sid)
        assert adopted.state is SessionState.READY and adopted.tunnel is not None
        reused = await restarted.pool.acquire("alice")
        assert reused.session is adopted and reused.is_new_session is False
        assert str(adopted.pod).encode() in await http_get_through(adopted.tunnel.port)

        with restarted.bus.subscribe(kinds={EventKind.CLEANUP_VERIFIED}) as cleanups:
            await restarted.pool.terminate(sid)
            cleanup = await asyncio.wait_for(cleanups.get(), 30)
        assert cleanup is not None
        assert cleanup.data["verified_kinds"] == [
            "Deployment",
            "ReplicaSet",
            "Pod",
            "Service",
            "Secret",
        ]
        assert restarted.runtime.health().ok
    finally:
        await restarted.stop(stop_sessions=True)

    used = requests.rbac()
    assert ("get", "namespaces") in used  # asked, refused (403), taken as existing
    unused = granted() - used - UNUSED_ON_PURPOSE
    assert unused == set(), f"deploy/rbac.yaml grants what podwarden never used: {unused}"
    beyond = used - granted() - {("get", "namespaces")}
    assert beyond == set(), f"podwarden asked for what the Role does not grant: {beyond}"
