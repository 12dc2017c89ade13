"""Turning a refused pod into a ``StartError`` a person can act on.

``podstatus`` recognises the failure from the pod alone; for a crashing container that is
not enough ("CrashLoopBackOff" says nothing about *why*), so this module asks for the last
lines its previous run printed. Where logs cannot be read (RBAC, or a cluster without a
kubelet API such as the test harness) it falls back to the exit code of the last run and
the pod's events, so the reason never degrades to a bare timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.errors import KubernetesError, StartError
from backend.logs import SessionLogs
from backend.runtime.kubernetes.apierrors import truncate
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import EVENTS, PODS
from backend.runtime.kubernetes.manifests import CONTAINER_NAME
from backend.runtime.kubernetes.podlogs import unavailable_line
from backend.runtime.kubernetes.podstatus import Assessment

__all__ = ["describe_failure", "last_log_lines", "pod_events"]

log = logging.getLogger(__name__)

LOG_TAIL = 20
QUICK = (3.0, 5.0)
"""Connect and read timeouts of the diagnostic requests: a failing start must fail fast."""


async def last_log_lines(client: KubeClient, namespace: str, pod: str) -> list[str]:
    """The last lines of the container's previous run; raises ``KubernetesError``."""
    data = await client.request(
        "GET",
        PODS.path(namespace, pod, "log"),
        query=[
            ("container", CONTAINER_NAME),
            ("previous", "true"),
            ("tailLines", str(LOG_TAIL)),
        ],
        action=f"read log of pod/{pod}",
        key="get pods/log",
        retry=False,
        timeout=QUICK,
        decode=False,
    )
    text = bytes(data).decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-LOG_TAIL:]


async def pod_events(client: KubeClient, namespace: str, pod: str) -> list[str]:
    """``reason: message`` of the pod's events, oldest first (empty when unreadable)."""
    try:
        data = await client.request(
            "GET",
            EVENTS.path(namespace),
            query=[("fieldSelector", f"involvedObject.name={pod}")],
            action=f"list events of pod/{pod}",
            key="list event",
            retry=False,
            timeout=QUICK,
        )
    except KubernetesError as e:
        log.info("events of pod %s unavailable: %s", pod, e.message)
        return []
    items: list[dict[str, Any]] = list(data.get("items") or [])
    items.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return [truncate(f"{e.get('reason', '?')}: {e.get('message', '')}", 200) for e in items]


async def describe_failure(
    client: KubeClient, logs: SessionLogs, session_id: str, verdict: Assessment
) -> StartError:
    """The ``StartError`` for a failed ``verdict``; a crash gets its last log lines."""
    reason = verdict.failure or "the pod cannot start"
    tail: list[str] = []
    pod = str(((verdict.pod or {}).get("metadata") or {}).get("name") or "")
    if verdict.failure_kind == "CrashLoopBackOff" and pod:
        try:
            tail = await last_log_lines(client, client.namespace, pod)
        except KubernetesError as e:
            logs.append(session_id, unavailable_line(pod, e, "read"))
        for line in tail:
            logs.append(session_id, line)
        if not tail:
            events = await pod_events(client, client.namespace, pod)
            if events:
                reason += "; events: " + " | ".join(events[-3:])
    return StartError(reason, exit_code=verdict.exit_code, log_tail=tail, retryable=False)
