"""``KubernetesRuntime``: one Deployment, Service and (with credentials) Secret per session.

How the pieces fit:

- ``connect`` (run on first use, or explicitly at start-up) loads the configuration the
  way kubectl does, in a worker thread so the ~0.45 s import of the client never blocks
  the loop; it makes sure the namespace exists and starts five reflectors (list-then-watch
  caches) over everything labelled ``managed-by=podwarden``.
- ``start`` creates the objects, at most ``max_concurrent_creates`` sessions at a time:
  Secret (so the pod never starts without it), Deployment, then at once the Service and
  the Secret's owner reference, which both need the Deployment's uid. AlreadyExists adopts an
  object that carries this session's labels. Two API calls per session, four with
  credentials.
- ``wait_ready`` and ``stop`` read the reflectors' caches and sleep until a change of the
  session's objects wakes them: watching, not polling, and no API call per session.
- ``stop`` deletes with foreground propagation, waits until the Deployment, ReplicaSets,
  Pods, Service and Secret are all gone, then confirms it with the API server itself, so
  "verified" means what it says.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable
from typing import Any

from backend.config import KubernetesSettings
from backend.errors import (
    ConfigError,
    KubeConflict,
    KubeNotFound,
    KubernetesError,
    RuntimeUnavailable,
    StartError,
)
from backend.events import EventBus, EventKind
from backend.logs import SessionLogs
from backend.models import WorkloadHandle
from backend.runtime.base import (
    CleanupReport,
    OwnedWorkload,
    PhaseCallback,
    ProbeResult,
    RuntimeHealth,
    Tunnel,
    WorkloadLostCallback,
    WorkloadSpec,
)
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.apierrors import BACKOFF, is_retryable, truncate
from backend.runtime.kubernetes.client import KubeClient, Sleep
from backend.runtime.kubernetes.connect import load_connection
from backend.runtime.kubernetes.diagnose import describe_failure
from backend.runtime.kubernetes.kinds import (
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    REPLICASETS,
    SECRETS,
    SERVICES,
    SESSION_KINDS,
    Kind,
)
from backend.runtime.kubernetes.podlogs import LogFollower
from backend.runtime.kubernetes.podstatus import assess, is_pod_ready
from backend.runtime.kubernetes.watch import Reflector, session_of
from backend.templates import Template

__all__ = ["KubernetesRuntime"]

log = logging.getLogger(__name__)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("metadata") or {})


def _is_ours(obj: dict[str, Any], session_id: str) -> bool:
    labels = _meta(obj).get("labels") or {}
    return labels.get(mf.LABEL_MANAGED_BY) == mf.MANAGED_BY and (
        labels.get(mf.LABEL_SESSION) == session_id
    )


class KubernetesRuntime:
    """The ``Runtime`` of sessions that run as pods in a cluster."""

    name = "kubernetes"

    def __init__(
        self,
        settings: KubernetesSettings,
        logs: SessionLogs,
        bus: EventBus | None = None,
        *,
        backoff: tuple[float, ...] = BACKOFF,
        sleep: Sleep | None = None,
        follow_logs: bool = True,
        propagation: str = "Foreground",
    ) -> None:
        self.settings = settings
        self._logs = logs
        self._bus = bus
        self._backoff = backoff
        self._sleep = sleep
        self._follow_logs = follow_logs
        self._propagation = propagation
        self.client: KubeClient | None = None
        self.reflectors: dict[str, Reflector] = {}
        self._connect_lock: asyncio.Lock | None = None
        self._create_slots: asyncio.Semaphore | None = None
        self._connect_error = ""
        self._context = settings.context
        self._namespace = settings.namespace
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._stopping: set[str] = set()
        self._stopped: collections.OrderedDict[str, None] = collections.OrderedDict()
        """Sessions stopped lately: their late watch events are not news."""
        self._followers: dict[str, LogFollower] = {}
        self._lost: WorkloadLostCallback | None = None
        self._lost_reported: set[str] = set()
        self._reported_ok: bool | None = None
        self._closed = False

    # ------------------------------------------------------------------ connection
    def describe(self) -> str:
        context = self._context or "current-context"
        return f"kubernetes {context}/{self._namespace or 'default'}"

    @property
    def namespace(self) -> str:
        return self._namespace

    async def connect(self) -> KubeClient:
        """Load the configuration, check the namespace, start the watches (once).

        Raises ``ConfigError`` for a missing or broken kubeconfig and
        ``RuntimeUnavailable`` when the API server cannot be reached or refuses.
        """
        if self.client is not None:
            return self.client
        if self._closed:
            raise RuntimeUnavailable("the Kubernetes runtime is closed")
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self.client is not None:
                return self.client
            loop = asyncio.get_running_loop()
            try:
                client = await loop.run_in_executor(None, self._make_client)
                await self._ensure_namespace(client)
            except (ConfigError, RuntimeUnavailable) as e:
                self._connect_error = e.message
                self._report_health()
                raise
            self._connect_error = ""
            self._create_slots = asyncio.Semaphore(max(1, self.settings.max_concurrent_creates))
            self._start_reflectors(client, loop)
            self.client = client
            log.info("connected to %s (%s)", client.host, self.describe())
            return client

    def _make_client(self) -> KubeClient:
        connection = load_connection(self.settings)
        self._context = connection.context
        self._namespace = connection.namespace
        return KubeClient(
            connection,
            threads=self.settings.api_threads,
            backoff=self._backoff,
            sleep=self._sleep,
        )

    async def _ensure_namespace(self, client: KubeClient) -> None:
        ns = client.namespace
        try:
            await client.get(NAMESPACES, None, ns)
            return
        except KubeNotFound:
            pass
        except KubernetesError as e:
            if e.status_code == 403:  # a namespaced Role cannot read namespaces: fine
                return
            client.close()
            raise
        if not self.settings.create_namespace:
            client.close()
            raise RuntimeUnavailable(
                f"namespace {ns!r} does not exist; create it or set "
                "runtime.kubernetes.create_namespace = true"
            )
        try:
            await client.create(NAMESPACES, None, mf.namespace(ns))
            log.info("created namespace %s", ns)
        except KubeConflict:
            pass
        except KubernetesError:
            client.close()
            raise

    def _start_reflectors(self, client: KubeClient, loop: asyncio.AbstractEventLoop) -> None:
        for kind in SESSION_KINDS:
            reflector = Reflector(
                client,
                kind,
                client.namespace,
                mf.MANAGED_SELECTOR,
                loop,
                on_change=self._on_change,
                on_state=lambda _r: self._report_health(),
            )
            self.reflectors[kind.name] = reflector
            reflector.start()

    async def _client(self) -> KubeClient:
        return self.client if self.client is not None else await self.connect()

    def _cache(self, kind: Kind) -> Reflector:
        return self.reflectors[kind.name]

    def _caches_current(self, *kinds: Kind) -> bool:
        """True when the reflectors of ``kinds`` are listed and their watches up."""
        for kind in kinds or SESSION_KINDS:
            reflector = self.reflectors.get(kind.name)
            if reflector is None or not reflector.synced.is_set() or not reflector.healthy:
                return False
        return True

    # ------------------------------------------------------------------ change feed
    def set_workload_lost_callback(self, callback: WorkloadLostCallback) -> None:
        self._lost = callback

    def _on_change(self, reflector: Reflector, kind: str, obj: dict[str, Any]) -> None:
        sid = session_of(obj)
        if sid is None:
            return
        for event in self._waiters.get(sid, ()):
            event.set()
        if reflector.kind is not DEPLOYMENTS:
            return
        gone = kind == "DELETED" or bool(_meta(obj).get("deletionTimestamp"))
        if not gone:
            self._lost_reported.discard(sid)
            if kind == "ADDED":
                self._stopped.pop(sid, None)  # started again under the same id
        elif sid in self._stopping or sid in self._stopped or sid in self._lost_reported:
            return
        else:
            self._lost_reported.add(sid)
            self._stop_follower(sid)
            if self._lost is not None:
                self._lost(sid, f"Deployment {sid} was deleted outside podwarden")

    async def _wait_change(self, session_id: str, timeout: float) -> None:
        """Sleep until an object of the session changes, or ``timeout`` passes."""
        event = asyncio.Event()
        waiters = self._waiters.setdefault(session_id, set())
        waiters.add(event)
        try:
            await asyncio.wait_for(event.wait(), max(0.0, timeout))
        except asyncio.TimeoutError:
            pass
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(session_id, None)

    # ------------------------------------------------------------------ start
    async def start(self, spec: WorkloadSpec, on_phase: PhaseCallback) -> WorkloadHandle:
        template = spec.template
        if not template.image:
            raise StartError(
                f"template {template.name!r} has no image; set templates.{template.name}.image",
                retryable=False,
            )
        credentials = {k: v for k, v in spec.env.items() if template.env.get(k) != v}
        for key in credentials:
            problem = mf.secret_key_problem(key)
            if problem:
                raise StartError(problem, retryable=False)
        try:
            client = await self._client()
        except ConfigError as e:
            raise StartError(e.message, retryable=False) from e
        except RuntimeUnavailable as e:
            raise StartError(e.message) from e
        assert self._create_slots is not None
        sid = spec.session_id
        created: list[Kind] = []
        async with self._create_slots:
            on_phase("creating")
            try:
                uid = await self._create_objects(client, spec, credentials, created)
            except (KubernetesError, StartError) as e:
                await self._remove_partial(client, sid, created)
                if isinstance(e, StartError):
                    raise
                raise StartError(
                    f"cannot create the objects of session {sid}: {e.message}",
                    retryable=is_retryable(e),
                ) from e
        on_phase("scheduling")
        return WorkloadHandle(
            runtime=self.name,
            ref=sid,
            host="",
            port=template.port,
            extra={"namespace": client.namespace, "uid": uid, "pod": ""},
        )

    async def _create_objects(
        self,
        client: KubeClient,
        spec: WorkloadSpec,
        credentials: dict[str, str],
        created: list[Kind],
    ) -> str:
        ns, sid, template = client.namespace, spec.session_id, spec.template
        secret_adopted = False
        if credentials:
            body = mf.secret(sid, ns, spec.user, template.name, credentials)
            _, made = await self._create_or_adopt(client, SECRETS, body, sid)
            secret_adopted = not made
            created.append(SECRETS)
        body = mf.deployment(sid, ns, spec.user, template, with_secret=bool(credentials))
        deployment, _ = await self._create_or_adopt(client, DEPLOYMENTS, body, sid)
        created.append(DEPLOYMENTS)
        uid = str(_meta(deployment).get("uid") or "")
        if not uid:
            raise StartError(f"the API server returned Deployment {sid} without a uid")
        # The Service and the Secret's owner reference both need the uid: send them at once.
        created.append(SERVICES)
        body = mf.service(sid, ns, spec.user, template, uid)
        steps: list[Awaitable[Any]] = [self._create_or_adopt(client, SERVICES, body, sid)]
        if credentials:
            patch: dict[str, Any] = {
                "metadata": {"ownerReferences": [mf.owner_reference(sid, uid)]}
            }
            if secret_adopted:  # a leftover of an earlier attempt: bring its data up to date
                patch["stringData"] = dict(credentials)
            steps.append(client.patch(SECRETS, ns, sid, patch))
        results = await asyncio.gather(*steps, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return uid

    async def _create_or_adopt(
        self, client: KubeClient, kind: Kind, body: dict[str, Any], sid: str
    ) -> tuple[dict[str, Any], bool]:
        """Create ``body``; on AlreadyExists adopt the object if it is this session's.

        Returns the object and whether it was created (False: adopted).
        """
        ns = client.namespace
        try:
            return await client.create(kind, ns, body), True
        except KubeConflict:
            existing = await client.get(kind, ns, sid)
        if not _is_ours(existing, sid):
            raise StartError(
                f"a {kind.name} named {sid} already exists in namespace {ns} and is not "
                "podwarden's; delete it or use another namespace",
                retryable=False,
            )
        if _meta(existing).get("deletionTimestamp"):
            raise StartError(f"the previous {kind.name} {sid} is still being deleted; try again")
        log.info("%s/%s already existed; adopted", kind.name, sid)
        return existing, False

    async def _remove_partial(self, client: KubeClient, sid: str, created: list[Kind]) -> None:
        """After a failed start: delete what this start made (best effort, not awaited)."""
        for kind in reversed(created):
            try:
                propagation = "Foreground" if kind is DEPLOYMENTS else None
                await client.delete(kind, client.namespace, sid, propagation=propagation)
            except KubernetesError as e:
                log.warning("cannot remove %s/%s after a failed start: %s", kind.name, sid, e)

    # ------------------------------------------------------------------ readiness
    async def wait_ready(
        self, handle: WorkloadHandle, spec: WorkloadSpec, timeout: float, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        """Wait on the watch caches; ``runtime.kubernetes.ready_timeout`` is the floor of
        ``timeout`` (image pulls are slow, and refusals fail fast without a timeout)."""
        timeout = max(timeout, self.settings.ready_timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            client = await self._client()
        except ConfigError as e:
            raise StartError(e.message, retryable=False) from e
        except RuntimeUnavailable as e:
            raise StartError(e.message) from e
        sid = handle.ref
        pods, replicasets = self._cache(PODS), self._cache(REPLICASETS)
        deployments = self._cache(DEPLOYMENTS)
        try:
            await asyncio.wait_for(pods.synced.wait(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise StartError(
                f"cannot watch pods in namespace {client.namespace}: {pods.error or 'no answer'}"
            ) from None
        phase = ""
        seen_deployment = False
        while True:
            verdict = assess(pods.session_objects(sid), replicasets.session_objects(sid))
            if verdict.ready and verdict.pod is not None:
                return self._became_ready(client, handle, verdict.pod)
            if verdict.failure is not None:
                raise await describe_failure(client, self._logs, sid, verdict)
            if deployments.session_objects(sid):
                seen_deployment = True
            elif seen_deployment and sid not in self._stopping:
                raise StartError(f"Deployment {sid} was deleted while the session was starting")
            if verdict.phase != phase:
                phase = verdict.phase
                on_phase(phase)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StartError(self._timeout_reason(sid, timeout, verdict.phase, verdict.pod))
            await self._wait_change(sid, remaining)

    def _timeout_reason(
        self, sid: str, timeout: float, phase: str, pod: dict[str, Any] | None
    ) -> str:
        if pod is None:
            return (
                f"not ready after {timeout:.0f}s: no pod of session {sid} exists yet "
                "(check the ReplicaSet's events and the namespace's quota)"
            )
        return f"not ready after {timeout:.0f}s: pod {_meta(pod).get('name')} is still {phase}"

    def _became_ready(
        self, client: KubeClient, handle: WorkloadHandle, pod: dict[str, Any]
    ) -> WorkloadHandle:
        status = pod.get("status") or {}
        name = str(_meta(pod).get("name") or "")
        extra = dict(handle.extra)
        extra.update(
            namespace=client.namespace,
            pod=name,
            node=str((pod.get("spec") or {}).get("nodeName") or ""),
        )
        self._ensure_follower(client, handle.ref, name)
        return WorkloadHandle(
            runtime=self.name,
            ref=handle.ref,
            host=str(status.get("podIP") or ""),
            port=handle.port,
            extra=extra,
        )

    # ------------------------------------------------------------------ logs
    def _ensure_follower(self, client: KubeClient, sid: str, pod: str) -> None:
        if not self._follow_logs:
            return
        current = self._followers.get(sid)
        if current is not None and current.pod == pod and current.running:
            return
        if current is not None:
            current.stop()
        follower = LogFollower(
            client, client.namespace, sid, pod, self._logs, asyncio.get_running_loop()
        )
        self._followers[sid] = follower
        follower.start()

    def _stop_follower(self, sid: str) -> None:
        follower = self._followers.pop(sid, None)
        if follower is not None:
            follower.stop()

    def logs(self, session_id: str) -> list[str]:
        return self._logs.get(session_id)

    # ------------------------------------------------------------------ probes
    def _ready_pod(self, sid: str) -> dict[str, Any] | None:
        for pod in self._cache(PODS).session_objects(sid):
            if is_pod_ready(pod):
                return pod
        return None

    async def probe(self, handle: WorkloadHandle, template: Template) -> ProbeResult:
        """From the watch caches; asks the API directly while a watch is down.

        Raises ``RuntimeUnavailable`` when the cluster cannot be asked at all: that says
        nothing about the workload, so a caller must not count it as a failed probe.
        """
        client = await self._client()
        sid = handle.ref
        if self._caches_current(DEPLOYMENTS, PODS, REPLICASETS):
            deployments = self._cache(DEPLOYMENTS).session_objects(sid)
            pods = self._cache(PODS).session_objects(sid)
            replicasets = self._cache(REPLICASETS).session_objects(sid)
        else:
            try:
                deployments = [await client.get(DEPLOYMENTS, client.namespace, sid)]
            except KubeNotFound:
                deployments = []
            pods, _ = await client.list(PODS, client.namespace, mf.session_selector(sid))
            replicasets = []
        live = [d for d in deployments if not _meta(d).get("deletionTimestamp")]
        if not live:
            return ProbeResult(False, f"Deployment {sid} is gone", gone=True)
        verdict = assess(pods, replicasets)
        if verdict.ready and verdict.pod is not None:
            return ProbeResult(True, f"pod {_meta(verdict.pod).get('name')} is ready")
        return ProbeResult(False, verdict.failure or f"no ready pod ({verdict.phase})")

    async def keepalive(self, handle: WorkloadHandle, template: Template) -> None:
        """GET the keepalive path on the pod through the API server's pod proxy."""
        if not template.keepalive_path:
            return
        client = await self._client()
        pod = self._ready_pod(handle.ref)
        name = _meta(pod).get("name") if pod else handle.extra.get("pod")
        if not name:
            raise StartError(f"keepalive: session {handle.ref} has no ready pod")
        path = (
            template.keepalive_path
            if template.keepalive_path.startswith("/")
            else ("/" + template.keepalive_path)
        )
        proxy = PODS.path(client.namespace, f"{name}:{handle.port}", "proxy") + path
        try:
            await client.request(
                "GET",
                proxy,
                action=f"GET pod/{name}:{handle.port}{path} through the API server's pod proxy",
                key="get pods/proxy",
                retry=False,
                decode=False,
            )
        except KubernetesError as e:
            raise StartError(f"keepalive {path} failed: {e.message}") from e

    # ------------------------------------------------------------------ stop
    async def stop(self, handle: WorkloadHandle, grace: float) -> CleanupReport:
        """Delete the session's objects and return once all are verified gone.

        The pods' grace period was fixed at creation (``manifests.DEFAULT_GRACE_SECONDS``);
        ``grace`` is not used. Anything still there after ``delete_timeout`` is listed.
        """
        started = time.monotonic()
        sid = handle.ref
        self._stopping.add(sid)
        self._stop_follower(sid)
        try:
            client = await self._client()
            leftovers = await self._delete_and_verify(client, sid)
        except (ConfigError, RuntimeUnavailable) as e:
            leftovers = [f"unknown: {truncate(e.message, 200)}"]
        finally:
            self._stopping.discard(sid)
            self._stopped[sid] = None
            while len(self._stopped) > 4096:
                self._stopped.popitem(last=False)
        return CleanupReport(time.monotonic() - started, tuple(leftovers))

    async def _delete_and_verify(self, client: KubeClient, sid: str) -> list[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.delete_timeout
        ns = client.namespace
        results = await asyncio.gather(
            self._delete_workload(client, sid),
            client.delete(SERVICES, ns, sid),
            client.delete(SECRETS, ns, sid),
            return_exceptions=True,
        )
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
            leftovers = await self._leftovers_from_api(client, sid)
            return leftovers + errors if leftovers else []
        while True:
            current = self._caches_current()
            pace: float | None = None
            if not current or not self._cached_leftovers(sid):
                leftovers = await self._leftovers_from_api(client, sid)
                if not leftovers:
                    return []
                # The API server holds what the caches do not show (yet), or the watches
                # are down: ask it again shortly rather than wait for a watch event.
                pace = 0.5 if current else 1.0
            remaining = deadline - loop.time()
            if remaining <= 0:
                leftovers = await self._leftovers_from_api(client, sid)
                return leftovers + errors if leftovers else []
            await self._wait_change(sid, remaining if pace is None else min(pace, remaining))

    async def _delete_workload(self, client: KubeClient, sid: str) -> None:
        """The Deployment in the foreground, then its ReplicaSets and Pods directly.

        Foreground propagation keeps the Deployment visible until its pods are gone, and
        the garbage collector would get there alone; but it works through a rate-limited
        client (20 requests/s by default), and fifty sessions stopped at once would take
        it many seconds. Deleting the ReplicaSets (already unable to create pods, their
        Deployment being deleted) and then the Pods ourselves leaves it one finalizer to
        remove per Deployment.
        """
        ns = client.namespace
        selector = mf.session_selector(sid)
        await client.delete(DEPLOYMENTS, ns, sid, propagation=self._propagation)
        if self._cache(REPLICASETS).session_objects(sid) or not self._caches_current():
            await client.delete_collection(REPLICASETS, ns, selector, propagation="Background")
        if self._cache(PODS).session_objects(sid) or not self._caches_current():
            await client.delete_collection(PODS, ns, selector)

    def _cached_leftovers(self, sid: str) -> list[str]:
        return [
            f"{kind.name}/{_meta(obj).get('name')}"
            for kind in SESSION_KINDS
            for obj in self._cache(kind).session_objects(sid)
        ]

    async def _leftovers_from_api(self, client: KubeClient, sid: str) -> list[str]:
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
            return [f"{kind.name}/{_meta(i).get('name')}" for i in items if _is_ours(i, sid)]

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

    # ------------------------------------------------------------------ recovery
    async def _snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every owned object by kind name: from the caches when current, else listed."""
        client = await self._client()
        if self._caches_current():
            return {k.name: list(self._cache(k).objects.values()) for k in SESSION_KINDS}
        lists = await asyncio.gather(
            *(client.list(k, client.namespace, mf.MANAGED_SELECTOR) for k in SESSION_KINDS)
        )
        return {k.name: items for k, (items, _rv) in zip(SESSION_KINDS, lists, strict=True)}

    async def inventory(self) -> dict[str, tuple[str, ...]]:
        """Session id -> the kinds of object it still has in the cluster (for drift)."""
        snapshot = await self._snapshot()
        found: dict[str, set[str]] = {}
        for kind_name, items in snapshot.items():
            for obj in items:
                sid = session_of(obj)
                if sid is not None:
                    found.setdefault(sid, set()).add(kind_name)
        return {sid: tuple(sorted(kinds)) for sid, kinds in sorted(found.items())}

    async def list_owned(self) -> list[OwnedWorkload]:
        """Every session with any object left, ready or not (partial ones: not alive)."""
        client = await self._client()
        snapshot = await self._snapshot()
        grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for kind_name, items in snapshot.items():
            for obj in items:
                sid = session_of(obj)
                if sid is not None:
                    grouped.setdefault(sid, {}).setdefault(kind_name, []).append(obj)
        return [self._owned(client, sid, objs) for sid, objs in sorted(grouped.items())]

    def _owned(
        self, client: KubeClient, sid: str, objs: dict[str, list[dict[str, Any]]]
    ) -> OwnedWorkload:
        deployment = next(iter(objs.get(DEPLOYMENTS.name, [])), None)
        first = deployment or next(obj for group in objs.values() for obj in group)
        annotations = _meta(first).get("annotations") or {}
        labels = _meta(first).get("labels") or {}
        verdict = assess(objs.get(PODS.name, []), objs.get(REPLICASETS.name, []))
        pod = verdict.pod if verdict.ready else None
        port = 0
        if deployment is not None:
            containers = (
                ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
            ).get("containers") or [{}]
            ports = containers[0].get("ports") or [{}]
            port = int(ports[0].get("containerPort") or 0)
        handle = WorkloadHandle(
            runtime=self.name,
            ref=sid,
            host=str(((pod or {}).get("status") or {}).get("podIP") or ""),
            port=port,
            extra={
                "namespace": client.namespace,
                "uid": str(_meta(deployment or {}).get("uid") or ""),
                "pod": str(_meta(pod or {}).get("name") or ""),
            },
        )
        alive = deployment is not None and not _meta(deployment).get("deletionTimestamp")
        return OwnedWorkload(
            session_id=sid,
            user=str(annotations.get(mf.ANNOTATION_USER) or labels.get(mf.LABEL_USER) or ""),
            template=str(
                annotations.get(mf.ANNOTATION_TEMPLATE) or labels.get(mf.LABEL_TEMPLATE) or ""
            ),
            handle=handle,
            alive=alive,
            ready=alive and verdict.ready,
        )

    # ------------------------------------------------------------------ tunnels
    async def open_tunnel(self, handle: WorkloadHandle, host: str, port: int) -> Tunnel:
        from backend.runtime.kubernetes.portforward import open_portforward_tunnel

        client = await self._client()
        sid = handle.ref

        async def resolve_pod() -> str:
            pod = self._ready_pod(sid)
            if pod is None:
                raise ConnectionRefusedError(f"session {sid} has no ready pod")
            return str(_meta(pod).get("name"))

        pod = self._ready_pod(sid)
        if pod is not None:
            self._ensure_follower(client, sid, str(_meta(pod).get("name")))
        return await open_portforward_tunnel(
            client,
            client.namespace,
            resolve_pod,
            host=host,
            port=port,
            target=f"pod/{_meta(pod).get('name') if pod else sid}",
            target_port=handle.port,
        )

    # ------------------------------------------------------------------ health
    def health(self) -> RuntimeHealth:
        if self.client is None:
            detail = self._connect_error or "not connected yet"
            return RuntimeHealth(not self._connect_error, detail, None)
        broken = [r for r in self.reflectors.values() if not r.healthy]
        deployments = self._cache(DEPLOYMENTS)
        count = sum(
            1
            for objs in deployments.by_session.values()
            if any(not _meta(o).get("deletionTimestamp") for o in objs.values())
        )
        if broken:
            errors = "; ".join(
                sorted({r.error for r in broken if r.error}) or {"watch not established"}
            )
            return RuntimeHealth(
                False, f"degraded: {self.client.host}: {truncate(errors, 240)}", count
            )
        return RuntimeHealth(True, f"{self.client.host} namespace {self._namespace}", count)

    def _report_health(self) -> None:
        health = self.health()
        ok = health.ok
        if ok == self._reported_ok:
            return
        previous, self._reported_ok = self._reported_ok, ok
        if self._bus is None or (previous is None and ok):
            return
        kind = EventKind.RUNTIME_RECOVERED if ok else EventKind.RUNTIME_DEGRADED
        self._bus.publish(kind, f"kubernetes: {health.detail}")

    # ------------------------------------------------------------------ close
    async def close(self) -> None:
        """Stop the watches, log follows and threads; the workloads keep running."""
        self._closed = True
        for follower in list(self._followers.values()):
            follower.stop()
        self._followers.clear()
        for reflector in self.reflectors.values():
            reflector.stop()
        client, self.client = self.client, None
        if client is not None:
            client.close()
        for events in self._waiters.values():
            for event in events:
                event.set()
