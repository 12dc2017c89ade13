"""Claiming a standby session's workload for a user: relabel it, keep its pod.

The Deployment's selector and every object's name hold the standby's id and cannot
change without a new pod, so a claim patches metadata only: the user label and the
annotations (``podwarden.io/user``, ``podwarden.io/claimed-as`` with the session id the
workload now serves) on the Deployment and on its ready pod; the pod template is left
alone, so no rollout starts. The claim is verified by reading both objects back: the
annotations are there and it is still the same, ready pod. Recovery and the watch read
the session id from ``claimed-as`` where it is set (``session_id_of``).
"""

from __future__ import annotations

from typing import Any

from backend.errors import KubernetesError, StartError
from backend.models import WorkloadHandle
from backend.runtime.base import WorkloadSpec
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.caches import SessionCaches, meta
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import DEPLOYMENTS, PODS
from backend.runtime.kubernetes.podstatus import is_pod_ready
from backend.runtime.kubernetes.watch import session_of

__all__ = ["claim_workload", "session_id_of"]


def session_id_of(obj: dict[str, Any]) -> str | None:
    """The session an object serves: its ``claimed-as`` annotation, else its label."""
    claimed = (meta(obj).get("annotations") or {}).get(mf.ANNOTATION_CLAIMED)
    return str(claimed) if claimed else session_of(obj)


async def claim_workload(
    client: KubeClient, caches: SessionCaches, handle: WorkloadHandle, spec: WorkloadSpec
) -> WorkloadHandle:
    """Relabel the standby ``handle`` names for ``spec`` and verify; the updated handle.
    ``StartError`` when it has no ready pod or the patches did not hold."""
    name = handle.ref
    namespace = client.namespace
    pod = caches.ready_pod(name)
    if pod is None:
        raise StartError(f"standby {name} has no ready pod")
    pod_name, pod_uid = str(meta(pod).get("name")), meta(pod).get("uid")
    patch = {
        "metadata": {
            "labels": {mf.LABEL_USER: mf.label_value(spec.user)},
            "annotations": {mf.ANNOTATION_USER: spec.user, mf.ANNOTATION_CLAIMED: spec.session_id},
        }
    }
    try:
        await client.patch(DEPLOYMENTS, namespace, name, patch)
        await client.patch(PODS, namespace, pod_name, patch)
        deployment = await client.get(DEPLOYMENTS, namespace, name)
        current = await client.get(PODS, namespace, pod_name)
    except KubernetesError as e:
        raise StartError(f"claiming standby {name} failed: {e.message}") from e
    if session_id_of(deployment) != spec.session_id or session_id_of(current) != spec.session_id:
        raise StartError(f"the claim of standby {name} did not hold")
    if meta(current).get("uid") != pod_uid or not is_pod_ready(current):
        raise StartError(f"standby {name}'s pod {pod_name} is no longer ready")
    extra = dict(handle.extra)
    extra["claimed_as"] = spec.session_id
    return WorkloadHandle(handle.runtime, handle.ref, handle.host, handle.port, extra)
