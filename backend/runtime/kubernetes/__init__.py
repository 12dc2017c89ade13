"""The Kubernetes runtime: sessions as a Deployment, Service and Secret in a cluster.

Import ``KubernetesRuntime`` from here only when ``runtime.kind`` is ``kubernetes``: the
official client costs about half a second to import. Nothing in this package imports it at
module level; ``connect`` loads it in a worker thread on first use. Layout, bottom up:

    kinds        the resource kinds and their REST paths
    manifests    pure functions building the objects of a session (dicts)
    podstatus    pure reading of pod state: ready, on its way, or refused and why
    apierrors    HTTP status -> ``backend.errors`` class; what is worth a retry
    connect      kubeconfig / context / namespace / in-cluster, as kubectl does it
    client       the bounded thread pool, retries, error mapping, call counting
    watch        list-then-watch reflectors (one thread per kind)
    caches       the five reflectors of a runtime, and waiting on a session's changes
    creation     a session's objects, created idempotently; undoing a failed start
    cleanup      delete, then verify with the API server that all of it is gone
    inventory    what the cluster holds, grouped by session (recovery, drift)
    diagnose     a refused pod -> ``StartError`` with the cluster's reason
    podlogs      following a pod's log into the session's log buffer
    portforward  tunnels through the API server's port-forward
    runtime      ``KubernetesRuntime``, the ``Runtime`` protocol on top of all that
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.runtime.kubernetes.runtime import KubernetesRuntime

__all__ = ["KubernetesRuntime"]


def __getattr__(name: str) -> Any:
    if name == "KubernetesRuntime":
        from backend.runtime.kubernetes.runtime import KubernetesRuntime

        return KubernetesRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
