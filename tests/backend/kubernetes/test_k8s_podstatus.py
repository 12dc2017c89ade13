"""Reading pods: ready, on the way, or refused by the cluster (and why)."""

from __future__ import annotations

from typing import Any

from backend.runtime.kubernetes.podstatus import assess, is_pod_ready


def pod(
    name: str = "s-1-abc",
    *,
    node: str | None = "node-1",
    phase: str = "Pending",
    ready: bool = False,
    ip: str | None = None,
    created: str = "2024-01-01T00:00:00Z",
    deleting: bool = False,
    conditions: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": (conditions or [])
        + [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    if containers is not None:
        status["containerStatuses"] = containers
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:01:00Z"
    spec = {"nodeName": node} if node else {}
    return {"metadata": meta, "spec": spec, "status": status}


def waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "name": "session",
        "state": {"waiting": {"reason": reason, "message": message}},
        **extra,
    }


def test_no_pod_yet_is_scheduling() -> None:
    assert assess([]).phase == "scheduling"
    assert assess([pod(node=None)]).phase == "scheduling"


def test_progress_words() -> None:
    assert assess([pod(containers=[waiting("ContainerCreating")])]).phase == "pulling"
    assert assess([pod(phase="Running", ip="10.0.0.5")]).phase == "starting"


def test_ready_pod() -> None:
    ready = pod(phase="Running", ready=True, ip="10.0.0.5")
    verdict = assess([pod("old", deleting=True), ready])
    assert verdict.ready and verdict.pod is ready
    assert is_pod_ready(ready)
    assert not is_pod_ready(pod(phase="Running", ready=True))  # no IP yet
    assert not is_pod_ready(pod(phase="Running", ready=True, ip="1.2.3.4", deleting=True))


def test_unschedulable_quotes_the_scheduler() -> None:
    message = "0/3 nodes are available: 3 node(s) didn't match node selector."
    verdict = assess(
        [
            pod(
                node=None,
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                    }
                ],
            )
        ]
    )
    assert verdict.phase == "failed"
    assert verdict.failure_kind == "Unschedulable"
    assert verdict.failure == f"Unschedulable: {message}"


def test_image_pull_errors() -> None:
    for reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        verdict = assess([pod(containers=[waiting(reason, 'pull access denied for "x"')])])
        assert verdict.failure_kind == reason
        assert verdict.failure is not None
        assert verdict.failure.startswith(f"{reason}: container 'session' of pod s-1-abc")
        assert 'pull access denied for "x"' in verdict.failure


def test_crashloop_carries_the_exit_code() -> None:
    crashing = waiting(
        "CrashLoopBackOff",
        "back-off 40s restarting failed container",
        restartCount=3,
        lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    )
    verdict = assess([pod(phase="Running", ip="10.0.0.9", containers=[crashing])])
    assert verdict.failure_kind == "CrashLoopBackOff"
    assert verdict.exit_code == 137
    assert verdict.failure is not None and "restarted 3 times" in verdict.failure


def test_replica_failure_without_any_pod() -> None:
    rs = {
        "metadata": {"name": "s-1-abc"},
        "status": {
            "conditions": [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "s-1-abc-x" is forbidden: exceeded quota: q',
                }
            ]
        },
    }
    verdict = assess([], [rs])
    assert verdict.failure_kind == "ReplicaFailure"
    assert verdict.failure is not None and "exceeded quota" in verdict.failure


def test_failed_phase_and_newest_pod_wins() -> None:
    evicted = pod("older", phase="Failed", created="2024-01-01T00:00:00Z")
    evicted["status"].update(reason="Evicted", message="low on memory")
    assert assess([evicted]).failure == "pod older ended (Failed): Evicted: low on memory"
    fresh = pod("newer", created="2024-01-01T00:05:00Z", containers=[waiting("ContainerCreating")])
    assert assess([evicted, fresh]).phase == "pulling"
