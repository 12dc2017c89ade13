"""What the cluster holds, grouped by session: for recovery and drift checks.

Pure functions over a snapshot (kind name -> objects), which comes from the watch caches
when they are current and from five label-selected lists otherwise. A session appears
when *any* of its objects is left, so a half-deleted one (a Service whose Deployment is
gone) is visible, marked not alive, and one ``stop`` away from gone.
"""

from __future__ import annotations

from typing import Any

from backend.models import WorkloadHandle
from backend.runtime.base import OwnedWorkload
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.caches import meta
from backend.runtime.kubernetes.kinds import DEPLOYMENTS, PODS, REPLICASETS
from backend.runtime.kubernetes.podstatus import assess
from backend.runtime.kubernetes.watch import session_of

__all__ = ["Snapshot", "by_session", "kinds_by_session", "owned_workload"]

Snapshot = dict[str, list[dict[str, Any]]]
"""Kind name (``deployment``) -> the objects of that kind."""


def by_session(snapshot: Snapshot) -> dict[str, Snapshot]:
    """Session id -> its objects by kind name."""
    grouped: dict[str, Snapshot] = {}
    for kind_name, items in snapshot.items():
        for obj in items:
            sid = session_of(obj)
            if sid is not None:
                grouped.setdefault(sid, {}).setdefault(kind_name, []).append(obj)
    return dict(sorted(grouped.items()))


def kinds_by_session(snapshot: Snapshot) -> dict[str, tuple[str, ...]]:
    """Session id -> the kinds of object it has (for drift reports)."""
    return {sid: tuple(sorted(objs)) for sid, objs in by_session(snapshot).items()}


def _container_port(deployment: dict[str, Any] | None) -> int:
    spec = ((deployment or {}).get("spec") or {}).get("template") or {}
    containers = (spec.get("spec") or {}).get("containers") or [{}]
    ports = containers[0].get("ports") or [{}]
    return int(ports[0].get("containerPort") or 0)


def owned_workload(sid: str, objs: Snapshot, namespace: str) -> OwnedWorkload:
    """What one session's objects say about it: who, which template, alive, ready."""
    deployment = next(iter(objs.get(DEPLOYMENTS.name, [])), None)
    first = deployment or next(obj for group in objs.values() for obj in group)
    annotations = meta(first).get("annotations") or {}
    labels = meta(first).get("labels") or {}
    verdict = assess(objs.get(PODS.name, []), objs.get(REPLICASETS.name, []))
    pod = verdict.pod if verdict.ready else None
    handle = WorkloadHandle(
        runtime="kubernetes",
        ref=sid,
        host=str(((pod or {}).get("status") or {}).get("podIP") or ""),
        port=_container_port(deployment),
        extra={
            "namespace": namespace,
            "uid": str(meta(deployment).get("uid") or ""),
            "pod": str(meta(pod).get("name") or ""),
        },
    )
    alive = deployment is not None and not meta(deployment).get("deletionTimestamp")
    claimed = annotations.get(mf.ANNOTATION_CLAIMED)  # a standby claimed for a user
    if claimed:
        handle.extra["claimed_as"] = str(claimed)
    return OwnedWorkload(
        session_id=str(claimed or sid),
        user=str(
            annotations[mf.ANNOTATION_USER]  # "" for a standby: no label stands in for it
            if mf.ANNOTATION_USER in annotations
            else labels.get(mf.LABEL_USER) or ""
        ),
        template=str(
            annotations.get(mf.ANNOTATION_TEMPLATE) or labels.get(mf.LABEL_TEMPLATE) or ""
        ),
        handle=handle,
        alive=alive,
        ready=alive and verdict.ready,
    )
