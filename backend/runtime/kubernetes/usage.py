"""CPU and memory of sessions on Kubernetes, and the cluster's room for them.

Per session, in this order:

- ``measured`` from ``metrics.k8s.io`` (metrics-server) when the cluster serves it: one
  list of the namespace's pod metrics per sample, selected by podwarden's label, summed
  over the serving pod's containers. Whether it is served is asked once (API discovery)
  and again every ``RECHECK_METRICS`` seconds while it is not, so a cluster without it
  costs one request every few minutes;
- else ``requested``: the pod's resource requests (its containers' ``requests``), from the
  watch caches, so no request at all; the Deployment's pod template while no pod exists.

The cluster's figures are the nodes' allocatable CPU and memory (nodes that take pods:
not cordoned) against what podwarden's pods request (every pod in the caches that has not
finished). Nodes are cluster-scoped: the namespaced Role of ``deploy/rbac.yaml`` cannot
list them; ``deploy/rbac-nodes.yaml`` grants that (read only). Without it the allocatable
stays unknown, ``detail`` says so, and nodes are asked again only every
``RECHECK_NODES`` seconds. Nodes change rarely: they are listed every ``NODES_EVERY``
seconds, not every sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from backend.errors import KubernetesError
from backend.models import WorkloadHandle, WorkloadUsage
from backend.runtime.base import ResourceReport, ResourceTotals
from backend.runtime.kubernetes.caches import SessionCaches, meta
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import DEPLOYMENTS, NODES, PODS
from backend.runtime.kubernetes.manifests import MANAGED_SELECTOR

__all__ = [
    "ClusterUsage",
    "METRICS_API",
    "allocatable",
    "pod_requests",
    "quantity",
]

log = logging.getLogger(__name__)

METRICS_API = "/apis/metrics.k8s.io/v1beta1"
RECHECK_METRICS = 300.0
"""Seconds between checks whether a cluster without metrics serves them now."""
NODES_EVERY = 60.0
"""Seconds between lists of the nodes (their allocatable changes rarely)."""
RECHECK_NODES = 600.0
"""Seconds before nodes are asked again after a refusal (403)."""
_FINISHED = ("Succeeded", "Failed")


def quantity(text: object) -> Decimal:
    """A Kubernetes quantity (``250m``, ``512Mi``, ``1234n``) as a number; 0 if unreadable."""
    from kubernetes.utils.quantity import parse_quantity

    try:
        return Decimal(parse_quantity(str(text)))
    except (ValueError, ArithmeticError, TypeError):
        return Decimal(0)


def pod_requests(pod_spec: Mapping[str, Any]) -> tuple[float, int]:
    """(CPU cores, memory bytes) a pod spec requests: its containers' requests summed."""
    cpu = Decimal(0)
    memory = Decimal(0)
    for container in pod_spec.get("containers") or ():
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += quantity(requests.get("cpu", 0))
        memory += quantity(requests.get("memory", 0))
    return float(cpu), int(memory)


def _container_usage(item: Mapping[str, Any]) -> tuple[float, int]:
    cpu = Decimal(0)
    memory = Decimal(0)
    for container in item.get("containers") or ():
        usage = container.get("usage") or {}
        cpu += quantity(usage.get("cpu", 0))
        memory += quantity(usage.get("memory", 0))
    return float(cpu), int(memory)


def allocatable(nodes: Iterable[Mapping[str, Any]]) -> tuple[float, int]:
    """(CPU cores, memory bytes) the nodes that take pods (not cordoned) can allocate."""
    cpu = Decimal(0)
    memory = Decimal(0)
    for node in nodes:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        alloc = (node.get("status") or {}).get("allocatable") or {}
        cpu += quantity(alloc.get("cpu", 0))
        memory += quantity(alloc.get("memory", 0))
    return float(cpu), int(memory)


def _active(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in _FINISHED


class ClusterUsage:
    """What one sample needs between samples: whether metrics are served, the nodes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.metrics_served: bool | None = None
        """Whether ``metrics.k8s.io`` answered lately (None: not asked yet)."""
        self._metrics_checked = -RECHECK_METRICS
        self._nodes: tuple[float, int] | None = None
        self._nodes_at = -NODES_EVERY
        self._nodes_retry = 0.0
        self.nodes_detail = ""

    async def sample(
        self, client: KubeClient, caches: SessionCaches, handles: Mapping[str, WorkloadHandle]
    ) -> ResourceReport:
        now = self._clock()
        measured = await self._pod_metrics(client, now)
        sessions: dict[str, WorkloadUsage] = {}
        for session_id, handle in handles.items():
            usage = self._session(caches, handle.ref, measured)
            if usage is not None:
                sessions[session_id] = usage
        await self._refresh_nodes(client, now)
        cpu = 0.0
        memory = 0
        for pod in caches[PODS].objects.values():
            if _active(pod):
                pod_cpu, pod_memory = pod_requests(pod.get("spec") or {})
                cpu += pod_cpu
                memory += pod_memory
        nodes = self._nodes
        totals = ResourceTotals(
            scope="cluster",
            source="requested",
            cpu_cores=nodes[0] if nodes else None,
            cpu_used_cores=cpu,
            memory_bytes=nodes[1] if nodes else None,
            memory_used_bytes=memory,
            detail=self.nodes_detail,
        )
        return ResourceReport(sessions, totals)

    def _session(
        self, caches: SessionCaches, ref: str, measured: dict[str, tuple[float, int]] | None
    ) -> WorkloadUsage | None:
        pods = [p for p in caches.objects(PODS, ref) if _active(p)]
        pod = caches.ready_pod(ref) or (pods[0] if pods else None)
        if pod is not None and measured is not None:
            figures = measured.get(str(meta(pod).get("name")))
            if figures is not None:
                return WorkloadUsage(round(100.0 * figures[0], 1), figures[1], "measured")
        if pod is not None:
            spec = pod.get("spec") or {}
        else:
            deployments = caches.objects(DEPLOYMENTS, ref)
            if not deployments:
                return None
            template = ((deployments[0].get("spec") or {}).get("template")) or {}
            spec = template.get("spec") or {}
        cpu, memory = pod_requests(spec)
        return WorkloadUsage(round(100.0 * cpu, 1), memory, "requested")

    async def _pod_metrics(
        self, client: KubeClient, now: float
    ) -> dict[str, tuple[float, int]] | None:
        """Pod name -> (cores, bytes) used, from ``metrics.k8s.io``; None when not served."""
        if not self.metrics_served:
            if now - self._metrics_checked < RECHECK_METRICS:
                return None
            self._metrics_checked = now
            try:
                await client.request(
                    "GET",
                    METRICS_API,
                    action="discover metrics.k8s.io",
                    key="get metrics api",
                    retry=False,
                )
            except KubernetesError as e:
                if self.metrics_served is None:
                    log.info("no pod metrics (metrics.k8s.io: %s): showing requests", e.message)
                self.metrics_served = False
                return None
            self.metrics_served = True
        try:
            data = await client.request(
                "GET",
                f"{METRICS_API}/namespaces/{client.namespace}/pods",
                query=[("labelSelector", MANAGED_SELECTOR)],
                action="list pod metrics",
                key="list podmetrics",
                retry=False,
            )
        except KubernetesError as e:
            log.warning("pod metrics failed (%s): showing requests", e.message)
            self.metrics_served = False
            self._metrics_checked = now
            return None
        return {
            str(meta(item).get("name")): _container_usage(item) for item in data.get("items") or ()
        }

    async def _refresh_nodes(self, client: KubeClient, now: float) -> None:
        if now - self._nodes_at < NODES_EVERY or now < self._nodes_retry:
            return
        try:
            items, _ = await client.list(NODES, None)
        except KubernetesError as e:
            self._nodes_retry = now + RECHECK_NODES
            if e.status_code in (401, 403):
                self.nodes_detail = (
                    "allocatable unknown: may not list nodes (apply deploy/rbac-nodes.yaml)"
                )
            else:
                self.nodes_detail = f"allocatable unknown: {e.message}"
            return
        self._nodes_at = now
        self._nodes = allocatable(items)
        self.nodes_detail = ""
