"""Fixtures for the Kubernetes runtime: kmock as the API server, and a real one when given.

Level (a) runs against kmock, a Kubernetes API emulation over real HTTP: the official client
sends real requests, so request shapes, retries and timeouts are tested as they happen. The
emulator (``k8s_helpers.Emulator``) adds what a real API server adds on create (a ``uid``),
because owner references need it; it still runs no controllers, so lifecycle tests script
the pods themselves.

Level (b) (``@pytest.mark.kubernetes``, ``test_k8s_cluster.py``) needs
``PODWARDEN_TEST_KUBECONFIG`` pointing at a real control plane (``tests/kubernetes_harness.sh
up`` starts one) and is skipped without.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import NAMESPACE, RESOURCES, Emulator, FakeSleep, write_kubeconfig

from backend.config import KubernetesSettings
from backend.events import EventBus
from backend.logs import SessionLogs
from backend.runtime.kubernetes.runtime import KubernetesRuntime


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    """Make kmock's ``kmock`` fixture serve the emulator that hands out uids."""
    return {"cls": Emulator}


@pytest.fixture
def kube(kmock: Emulator) -> Emulator:
    """kmock serving the kinds podwarden uses, with namespace ``pw`` existing."""
    for resource in RESOURCES:
        kmock.resources[resource] = {}
    kmock[f"get /api/v1/namespaces/{NAMESPACE}"] << {"metadata": {"name": NAMESPACE}}
    return kmock


@pytest.fixture
def kubeconfig(kube: Emulator, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", str(kube.url))


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def make_runtime(
    kubeconfig: Path, bus: EventBus, fake_sleep: FakeSleep
) -> AsyncIterator[Callable[..., KubernetesRuntime]]:
    """Builds runtimes on kmock (settings overridable); closes them after the test."""
    made: list[KubernetesRuntime] = []

    def make(**overrides: Any) -> KubernetesRuntime:
        settings = KubernetesSettings(kubeconfig=str(kubeconfig), namespace="")
        for key, value in overrides.items():
            setattr(settings, key, value)
        runtime = KubernetesRuntime(
            settings, SessionLogs(bus), bus, backoff=(0.1, 0.2, 0.4), sleep=fake_sleep
        )
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.close()


@pytest.fixture
async def runtime(make_runtime: Callable[..., KubernetesRuntime]) -> KubernetesRuntime:
    """A runtime connected to kmock."""
    rt = make_runtime()
    await rt.connect()
    return rt
