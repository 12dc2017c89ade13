"""Creating a session's objects, idempotently, and undoing a start that failed halfway.

Order matters. The Secret comes first, so the pod never starts without its credentials
(and never shows ``CreateContainerConfigError`` for a Secret still on its way). The
Deployment comes next: its uid is what the owner references of the Service and the Secret
point at, so those two are sent after it, at the same time. That is two requests per
session, four with credentials.

AlreadyExists is not an error (kubespawner's rule): a retried start, or a create whose
answer was lost after the API server stored it, finds its own object and adopts it, if it
carries this session's labels. An object of the same name that is not podwarden's is left
alone and the start fails with a reason that says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from backend.errors import KubeConflict, KubernetesError, StartError
from backend.runtime.base import WorkloadSpec
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.caches import is_ours, meta
from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.kinds import DEPLOYMENTS, SECRETS, SERVICES, Kind

__all__ = ["create_or_adopt", "create_session", "credentials_of", "remove_partial"]

log = logging.getLogger(__name__)


def credentials_of(spec: WorkloadSpec) -> dict[str, str]:
    """What of the spec's env goes into the Secret: all but the template's own env."""
    template_env = spec.template.env
    return {k: v for k, v in spec.env.items() if template_env.get(k) != v}


async def create_or_adopt(
    client: KubeClient, kind: Kind, body: dict[str, Any], sid: str
) -> tuple[dict[str, Any], bool]:
    """Create ``body``; on AlreadyExists adopt the object if it is this session's.

    Returns the object and whether it was created (False: adopted).
    """
    ns = client.namespace
    try:
        return await client.create(kind, ns, body), True
    except KubeConflict:
        existing = await client.get(kind, ns, sid)
    if not is_ours(existing, sid):
        raise StartError(
            f"a {kind.name} named {sid} already exists in namespace {ns} and is not "
            "podwarden's; delete it or use another namespace",
            retryable=False,
        )
    if meta(existing).get("deletionTimestamp"):
        raise StartError(f"the previous {kind.name} {sid} is still being deleted; try again")
    log.info("%s/%s already existed; adopted", kind.name, sid)
    return existing, False


async def create_session(
    client: KubeClient, spec: WorkloadSpec, credentials: dict[str, str], created: list[Kind]
) -> str:
    """Create (or adopt) the session's objects; the Deployment's uid.

    ``created`` collects the kinds made so far, for ``remove_partial`` after a failure.
    """
    ns, sid, template = client.namespace, spec.session_id, spec.template
    secret_adopted = False
    if credentials:
        body = mf.secret(sid, ns, spec.user, template.name, credentials)
        _, made = await create_or_adopt(client, SECRETS, body, sid)
        secret_adopted = not made
        created.append(SECRETS)
    body = mf.deployment(sid, ns, spec.user, template, with_secret=bool(credentials))
    deployment, _ = await create_or_adopt(client, DEPLOYMENTS, body, sid)
    created.append(DEPLOYMENTS)
    uid = str(meta(deployment).get("uid") or "")
    if not uid:
        raise StartError(f"the API server returned Deployment {sid} without a uid")
    created.append(SERVICES)
    body = mf.service(sid, ns, spec.user, template, uid)
    steps: list[Awaitable[Any]] = [create_or_adopt(client, SERVICES, body, sid)]
    if credentials:
        patch: dict[str, Any] = {"metadata": {"ownerReferences": [mf.owner_reference(sid, uid)]}}
        if secret_adopted:  # a leftover of an earlier attempt: bring its data up to date
            patch["stringData"] = dict(credentials)
        steps.append(client.patch(SECRETS, ns, sid, patch))
    for result in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result
    return uid


async def remove_partial(client: KubeClient, sid: str, created: list[Kind]) -> None:
    """After a failed start: delete what this start made (best effort, not verified)."""
    for kind in reversed(created):
        try:
            propagation = "Foreground" if kind is DEPLOYMENTS else None
            await client.delete(kind, client.namespace, sid, propagation=propagation)
        except KubernetesError as e:
            log.warning("cannot remove %s/%s after a failed start: %s", kind.name, sid, e)
