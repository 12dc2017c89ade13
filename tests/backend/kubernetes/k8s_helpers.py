"""Helpers of the Kubernetes runtime tests (a module of its own: conftest is not importable)."""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import attrs
import kmock

from backend.runtime.base import WorkloadSpec
from backend.templates import Template

NAMESPACE = "pw"
RESOURCES = (
    "apps/v1/deployments",
    "apps/v1/replicasets",
    "v1/pods",
    "v1/services",
    "v1/secrets",
    "v1/events",
)


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus a ``uid`` on every created object, and a copy of each body
    exactly as the client sent it (``sent``), for assertions on request shapes."""

    sent: list[tuple[str, str, Any]] = attrs.field(factory=list)
    refuse_writes: str = ""
    """When set, writes are answered 503 with this message and change nothing (kmock
    itself applies a write before any injected reaction answers it)."""

    async def _handle(self, request: kmock.Request) -> Any:
        if request.method is not None and request.method.value != "GET":
            self.sent.append((request.method.value, request.url.path, copy.deepcopy(request.data)))
        if self.refuse_writes and request.method is not None and request.method.value != "GET":
            return await self._render_error(
                kmock.KubernetesError(503, "ServiceUnavailable", self.refuse_writes)
            )
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            request.data.setdefault("metadata", {}).setdefault("uid", str(uuid.uuid4()))
        return await super()._handle(request)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[kmock.method.DELETE] << self._delete_collection

    async def _delete_collection(self, request: kmock.Request) -> Any:
        """``deletecollection`` by label selector (``a=b,c=d``), which kmock lacks."""
        if request.name is not None or request.resource is None:
            return NotImplemented  # a single object: kmock's own delete
        selector = request.params.get("labelSelector", "")
        wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        async with self._lock:
            for (resource, namespace, _name), obj in list(self.objects.items()):
                if resource != request.resource or namespace != request.namespace:
                    continue
                labels = (obj.raw.get("metadata") or {}).get("labels") or {}
                if obj.deleted or any(labels.get(k) != v for k, v in wanted.items()):
                    continue
                raw = obj.raw
                obj.delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    def bodies(self, method: str, plural: str) -> list[Any]:
        """Bodies of the requests with ``method`` whose path names ``plural``."""
        return [body for m, path, body in self.sent if m == method and f"/{plural}" in path]


def write_kubeconfig(path: Path, server: str, namespace: str = NAMESPACE) -> Path:
    """A kubeconfig with one context pointing at ``server``."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "mock", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [
                    {
                        "name": "mock-ctx",
                        "context": {"cluster": "mock", "user": "tester", "namespace": namespace},
                    }
                ],
                "current-context": "mock-ctx",
            }
        ),
        encoding="utf-8",
    )
    return path


class FakeSleep:
    """Records the delays a retry loop asked for, without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_spec(
    session_id: str = "alice-browser-0a1b2c3d",
    *,
    user: str = "Alice Smith",
    image: str = "example/browser:1",
    env: dict[str, str] | None = None,
    **template_fields: Any,
) -> WorkloadSpec:
    template = Template(name="browser", image=image, port=3000, **template_fields)
    return WorkloadSpec(
        session_id=session_id, user=user, template=template, workdir=Path("/"), env=env or {}
    )


def strip_uid(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without the uid the emulator added."""
    body = copy.deepcopy(body)
    body.get("metadata", {}).pop("uid", None)
    return body


def cluster_kubeconfig() -> str | None:
    return os.environ.get("PODWARDEN_TEST_KUBECONFIG") or None
