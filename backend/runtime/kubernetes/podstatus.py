"""Reading a session's pods: is it ready, still on its way, or refused by the cluster?

Pure functions over pod and ReplicaSet dicts, so the rules are tested without a cluster.
The point of this module is the field report's silent failure: a pod that cannot start is
recognised the moment the cluster says so (the scheduler's ``Unschedulable``, the kubelet's
``ErrImagePull`` or ``CrashLoopBackOff``, a ReplicaSet's ``ReplicaFailure`` such as an
exceeded quota), not when a timeout finally runs out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["FATAL_WAITING_REASONS", "Assessment", "assess", "is_pod_ready"]

FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
"""Container waiting reasons after which a session will not become ready on its own."""


@dataclass(frozen=True)
class Assessment:
    """Where a session's pod stands."""

    phase: str
    """``scheduling``, ``pulling``, ``starting``, ``ready`` or ``failed``."""
    pod: dict[str, Any] | None = None
    """The pod this is about (the ready one, or the newest live one)."""
    failure: str | None = None
    """Set when the cluster refuses the pod: what it said, for a person to act on."""
    failure_kind: str | None = None
    """``ErrImagePull``, ``Unschedulable``, ``CrashLoopBackOff``, ``ReplicaFailure``, ..."""
    exit_code: int | None = None
    """For a crashing container: the exit code of its last run."""

    @property
    def ready(self) -> bool:
        return self.phase == "ready"


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    status = obj.get("status") or {}
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def _deleting(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_pod_ready(pod: dict[str, Any]) -> bool:
    """Running, Ready and with an IP (what a tunnel needs), and not being deleted."""
    status = pod.get("status") or {}
    ready = _conditions(pod).get("Ready", {}).get("status") == "True"
    return (
        ready and status.get("phase") == "Running" and bool(status.get("podIP"))
    ) and not _deleting(pod)


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def _container_failure(pod: dict[str, Any]) -> Assessment | None:
    status = pod.get("status") or {}
    statuses = list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason not in FATAL_WAITING_REASONS:
            continue
        message = waiting.get("message") or ""
        exit_code = None
        terminated = (cs.get("lastState") or {}).get("terminated") or {}
        if terminated.get("exitCode") is not None:
            exit_code = int(terminated["exitCode"])
        container = cs.get("name", "?")
        text = f"{reason}: container {container!r} of pod {_name(pod)}"
        if message:
            text += f": {message}"
        if reason == "CrashLoopBackOff" and cs.get("restartCount"):
            text += f" (restarted {cs['restartCount']} times)"
        return Assessment("failed", pod, text, reason, exit_code)
    return None


def _pod_assessment(pod: dict[str, Any]) -> Assessment:
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded"):
        why = ": ".join(x for x in (status.get("reason"), status.get("message")) if x)
        text = f"pod {_name(pod)} ended ({status['phase']})" + (f": {why}" if why else "")
        return Assessment("failed", pod, text, status.get("reason") or status["phase"])
    scheduled = _conditions(pod).get("PodScheduled", {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        message = scheduled.get("message") or "no node can run this pod"
        return Assessment("failed", pod, f"Unschedulable: {message}", "Unschedulable")
    crashed = _container_failure(pod)
    if crashed is not None:
        return crashed
    if not (pod.get("spec") or {}).get("nodeName"):
        return Assessment("scheduling", pod)
    if status.get("phase") == "Running":
        return Assessment("starting", pod)
    return Assessment("pulling", pod)


def _created(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")


def assess(
    pods: Iterable[dict[str, Any]], replicasets: Iterable[dict[str, Any]] = ()
) -> Assessment:
    """The state of one session from its pods and ReplicaSets (any order)."""
    live = sorted((p for p in pods if not _deleting(p)), key=_created, reverse=True)
    for pod in live:
        if is_pod_ready(pod):
            return Assessment("ready", pod)
    for rs in replicasets:
        if _deleting(rs):
            continue
        failure = _conditions(rs).get("ReplicaFailure", {})
        if failure.get("status") == "True":
            message = failure.get("message") or failure.get("reason") or "cannot create pods"
            return Assessment("failed", None, f"ReplicaFailure: {message}", "ReplicaFailure")
    if not live:
        return Assessment("scheduling")
    return _pod_assessment(live[0])
