"""Stopping a session: delete everything, then make sure it is gone.

"Verified" must mean what it says (the field report's sessions leaked silently), so the
last word is the API server's, not a cache's: the watch caches say when to look, five
requests confirm. The sequence:

1. delete the Deployment (background propagation by default), the Service and the Secret
   at once;
   after the Deployment, delete the session's ReplicaSets and Pods by label directly;
2. sleep on the session's watch events until the caches hold nothing of it, then ask the
   API server (Deployment, Service and Secret by name, ReplicaSets and Pods by label);
3. whatever is still there after ``delete_timeout`` is a leftover, reported with the API
   server's reason when a delete was refused.

The result also names the kinds the session had (from the caches, or the API server when
they are not current) that the API server confirmed gone: the cleanup event lists them.

Why delete ReplicaSets and Pods ourselves: the garbage collector would get there alone, but
it works through a rate-limited client (20 requests/s by default), and foreground
propagation (still selectable) also keeps the Deployment until its pods are gone: fifty
sessions stopped at once took it over half a minute on the test control plane. The
ReplicaSets can no longer make pods (their Deployment is being deleted), so removing them,
then the pods, leaves the collector little to do.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from backend.errors import KubeNotFound, KubernetesError
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.apierrors import truncate
from backend.runtime.kubernetes.caches import SessionCaches, is_ours, meta
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    SECRETS,
    SERVICES,
    SESSION_KINDS,
    Kind,
)

__all__ = ["Deleted", "delete_session", "leftovers_from_api"]

TITLES = {
    "deployment": "Deployment",
    "replicaset": "ReplicaSet",
    "pod": "Pod",
    "service": "Service",
    "secret": "Secret",
}
"""Kinds as Kubernetes spells them, for the cleanup event."""


@dataclass(frozen=True)
class Deleted:
    """How a session's deletion ended."""

    leftovers: list[str]
    """``kind/name`` of what is still there (empty: everything is gone)."""
    verified_kinds: tuple[str, ...]
    """The kinds it had that the API server confirmed gone (``Deployment``, ``Pod``...)."""


def _kinds_of(names: list[str]) -> set[str]:
    """The kinds among ``kind/name`` strings (not ``unknown: ...`` or ``error: ...``)."""
    return {kind for kind in (name.split("/", 1)[0] for name in names) if kind in TITLES}


def _deleted(had: set[str], leftovers: list[str]) -> Deleted:
    left = _kinds_of(leftovers)
    verified = tuple(TITLES[k.name] for k in SESSION_KINDS if k.name in had - left)
    return Deleted(leftovers, verified)


log = logging.getLogger(__name__)


async def _delete_workload(
    client: KubeClient, caches: SessionCaches, sid: str, propagation: str
) -> bool:
    """The Deployment, then its ReplicaSets, then its Pods (see the module docstring);
    whether the Deployment was there."""
    ns = client.namespace
    selector = mf.session_selector(sid)
    existed = await client.delete(DEPLOYMENTS, ns, sid, propagation=propagation)
    if caches.objects(REPLICASETS, sid) or not caches.current():
        await client.delete_collection(REPLICASETS, ns, selector, propagation="Background")
    if caches.objects(PODS, sid) or not caches.current():
        await client.delete_collection(PODS, ns, selector)
    return existed


async def leftovers_from_api(client: KubeClient, sid: str) -> list[str]:
    """What of the session the API server still holds (five requests at once)."""
    ns = client.namespace

    async def named(kind: Kind) -> list[str]:
        try:
            await client.get(kind, ns, sid)
        except KubeNotFound:
            return []
        return [f"{kind.name}/{sid}"]

    async def labelled(kind: Kind) -> list[str]:
        items, _ = await client.list(kind, ns, mf.session_selector(sid))
        return [f"{kind.name}/{meta(i).get('name')}" for i in items if is_ours(i, sid)]

    try:
        parts = await asyncio.gather(
            named(DEPLOYMENTS),
            labelled(REPLICASETS),
            labelled(PODS),
            named(SERVICES),
            named(SECRETS),
        )
    except KubernetesError as e:
        return [f"unknown: {truncate(e.message, 200)}"]
    return [name for part in parts for name in part]


async def delete_session(
    client: KubeClient,
    caches: SessionCaches,
    sid: str,
    *,
    propagation: str,
    timeout: float,
) -> Deleted:
    """Delete a session's objects; what is left after ``timeout`` and what is gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ns = client.namespace
    if caches.current():
        had = {k.name for k in SESSION_KINDS if caches.objects(k, sid)}
    else:
        had = _kinds_of(await leftovers_from_api(client, sid))
    results = await asyncio.gather(
        _delete_workload(client, caches, sid, propagation),
        client.delete(SERVICES, ns, sid),
        client.delete(SECRETS, ns, sid),
        return_exceptions=True,
    )
    # A delete that found its object says the session had it, also when the watch
    # caches had not yet seen it (a stop right after the create).
    for kind, result in zip((DEPLOYMENTS, SERVICES, SECRETS), results, strict=True):
        if result is True:
            had.add(kind.name)
    errors: list[str] = []
    for failure in results:
        if not isinstance(failure, BaseException):
            continue
        if not isinstance(failure, KubernetesError):
            raise failure
        log.warning("%s: %s", sid, failure.message)
        errors.append(f"error: {truncate(failure.message, 200)}")
    if len(errors) == len(results):
        # Not one delete went through: waiting would not change what is there.
        leftovers = await leftovers_from_api(client, sid)
        return _deleted(had, leftovers + errors if leftovers else [])
    while True:
        current = caches.current()
        pace: float | None = None
        if not current or not caches.leftovers(sid):
            leftovers = await leftovers_from_api(client, sid)
            if not leftovers:
                return _deleted(had, [])
            had |= _kinds_of(leftovers)
            # The API server holds what the caches do not show (yet), or the watches are
            # down: ask it again shortly rather than wait for an event that may not come.
            pace = 0.5 if current else 1.0
        remaining = deadline - loop.time()
        if remaining <= 0:
            leftovers = await leftovers_from_api(client, sid)
            return _deleted(had, leftovers + errors if leftovers else [])
        await caches.wait_change(sid, remaining if pace is None else min(pace, remaining))
