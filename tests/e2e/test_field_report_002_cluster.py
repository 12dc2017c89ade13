"""Field report 002 end to end on a real control plane, through the real HTTP API.

The report: 5 concurrent sessions for ``admin`` with template ``firefox-browser`` (port
3000, 250m CPU, 512Mi) came back as 5 ids, but only 4 got a pod, and the fifth failed
silently. Here ``podwarden serve --runtime kubernetes`` runs with the product's pool
defaults against the harness (``tests/kubernetes_harness.sh``); 5 ``reuse: false`` creates
go out at once; every session must be ready with a tunnel of its own reaching its own pod;
each DELETE answers 202 and every object is verified gone. With one create's image
unpullable, 4 are ready and the fifth fails with the cluster's reason, never silently.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.errors import PodwardenError
from tests.e2e.conftest import Serve, free_port_range

KUBECONFIG = os.environ.get("PODWARDEN_TEST_KUBECONFIG")

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.skipif(
        not KUBECONFIG,
        reason="PODWARDEN_TEST_KUBECONFIG is not set (tests/kubernetes_harness.sh up)",
    ),
]

MANAGED = "app.kubernetes.io/managed-by=podwarden"
TEMPLATE = "firefox-browser"


def write_config(path: Path, namespace: str) -> Path:
    """Only what the report fixes (the template, the cluster): the pool keeps its defaults."""
    low, high = free_port_range(100)
    path.write_text(
        f"""
[runtime]
kind = "kubernetes"

[runtime.kubernetes]
kubeconfig = "{KUBECONFIG}"
namespace = "{namespace}"

[tunnels]
port_min = {low}
port_max = {high}

[templates.{TEMPLATE}]
image = "lscr.io/linuxserver/firefox:latest"
port = 3000
cpu = "250m"
memory = "512Mi"

[templates.firefox-unpullable]
image = "registry.invalid/unpullable/firefox:latest"
port = 3000
cpu = "250m"
memory = "512Mi"
""",
        encoding="utf-8",
    )
    return path


class Cluster:
    """What the API server holds, asked directly with the harness's admin credentials."""

    def __init__(self, namespace: str) -> None:
        from kubernetes import client, config

        self.namespace = namespace
        self.api = config.new_client_from_config(config_file=KUBECONFIG)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def _names(self) -> dict[str, list[str]]:
        ns, sel = self.namespace, MANAGED
        listed: dict[str, Any] = {
            "deployments": self.apps.list_namespaced_deployment(ns, label_selector=sel),
            "replicasets": self.apps.list_namespaced_replica_set(ns, label_selector=sel),
            "services": self.core.list_namespaced_service(ns, label_selector=sel),
            "pods": self.core.list_namespaced_pod(ns, label_selector=sel),
            "secrets": self.core.list_namespaced_secret(ns, label_selector=sel),
        }
        return {kind: sorted(o.metadata.name for o in got.items) for kind, got in listed.items()}

    async def names(self) -> dict[str, list[str]]:
        return await asyncio.to_thread(self._names)

    def _delete_namespace(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.delete_namespace(self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise

    async def close(self) -> None:
        await asyncio.to_thread(self._delete_namespace)
        self.api.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Serve, Cluster]]:
    namespace = f"pw-report-{secrets.token_hex(4)}"
    config = write_config(tmp_path / "podwarden.toml", namespace)
    server = await Serve(tmp_path / "state", config, ["--stop-sessions-on-exit"]).start()
    cluster = Cluster(namespace)
    try:
        yield server, cluster
    finally:
        if server.proc is not None and server.proc.returncode is None:
            await server.stop()
        await cluster.close()


async def page_through(session: dict[str, Any]) -> bytes:
    tunnel = session["tunnel"]
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"http://{tunnel['host']}:{tunnel['port']}/")
    assert response.status_code == 200
    return response.content


async def until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return value


async def delete_all_and_verify(server: Serve, cluster: Cluster, ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        answers = await asyncio.gather(*(http.delete(f"/sessions/{sid}") for sid in ids))
        assert [a.status_code for a in answers] == [202] * len(ids)

        async def all_verified() -> bool:
            for sid in ids:
                got = (await http.get(f"/sessions/{sid}")).json()
                if got["state"] != "terminated" or not got["cleanup"]:
                    return False
                assert "verified" in got["cleanup"], got["cleanup"]
            return True

        await until(all_verified, 60)
    assert await cluster.names() == {
        "deployments": [],
        "replicasets": [],
        "services": [],
        "pods": [],
        "secrets": [],
    }


async def test_five_concurrent_creates_for_admin(served: tuple[Serve, Cluster]) -> None:
    server, cluster = served
    async with server.client() as client:
        sessions = await asyncio.gather(
            *(client.acquire("admin", TEMPLATE, reuse=False) for _ in range(5))
        )
        assert [s["state"] for s in sessions] == ["ready"] * 5
        assert all(s["is_new_session"] for s in sessions)
        ids = [s["session_id"] for s in sessions]
        assert len(set(ids)) == 5 and all(i.startswith("admin-firefox-browser-") for i in ids)
        assert len({s["tunnel"]["port"] for s in sessions}) == 5

        names = await cluster.names()
        assert len(names["deployments"]) == 5 and names["deployments"] == sorted(ids)
        assert len(names["services"]) == 5 and len(names["pods"]) == 5
        pages = await asyncio.gather(*(page_through(s) for s in sessions))
        for sid, page in zip(ids, pages, strict=True):
            (pod,) = [p for p in names["pods"] if p.startswith(sid + "-")]
            assert pod.encode() in page, "each tunnel reaches its own session's pod"
            assert all(o.encode() not in page for o in ids if o != sid)

        health = await client.health()
        assert health["active_sessions"] == 5
    await delete_all_and_verify(server, cluster, ids)


async def test_one_unpullable_image_in_five(served: tuple[Serve, Cluster]) -> None:
    server, cluster = served
    templates = [TEMPLATE, TEMPLATE, "firefox-unpullable", TEMPLATE, TEMPLATE]
    async with server.client() as client:
        outcomes = await asyncio.gather(
            *(client.acquire("admin", t, reuse=False) for t in templates),
            return_exceptions=True,
        )
        ready = [o for o in outcomes if isinstance(o, dict)]
        failed = [o for o in outcomes if not isinstance(o, dict)]
        assert [s["state"] for s in ready] == ["ready"] * 4
        assert len(failed) == 1 and isinstance(failed[0], PodwardenError), failed
        assert "ErrImagePull" in str(failed[0]) or "pull" in str(failed[0]).lower(), failed[0]

        listed = await client.list_sessions()
        broken = [s for s in listed if s["template"] == "firefox-unpullable"]
        assert len(broken) == 1 and broken[0]["state"] == "failed", broken
        assert broken[0]["last_error"] and "pull" in broken[0]["last_error"].lower()

        names = await cluster.names()
        ids = [s["session_id"] for s in ready]
        # The failed session's objects were removed; the 4 others are whole.
        assert names["deployments"] == sorted(ids) and len(names["pods"]) == 4
        assert len({s["tunnel"]["port"] for s in ready}) == 4
        for session in ready:
            assert session["session_id"].encode() in await page_through(session)
    await delete_all_and_verify(server, cluster, ids)
