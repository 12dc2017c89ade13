"""``KubernetesRuntime``: one Deployment, Service and (with credentials) Secret per session.

How the pieces fit:

- ``connect`` (run on first use, or explicitly at start-up) loads the configuration the
  way kubectl does, in a worker thread so the ~0.45 s import of the client never blocks
  the loop; it makes sure the namespace exists and starts the watch caches over everything
  labelled ``managed-by=podwarden`` (``caches``).
- ``start`` creates the objects (``creation``), at most ``max_concurrent_creates``
  sessions at a time, and removes what it made when it fails halfway.
- ``wait_ready`` sleeps on the caches until a change of the session's objects wakes it:
  watching, not polling, and no API call per session; a pod the cluster refuses fails the
  start at once with the cluster's reason (``podstatus``, ``diagnose``).
- ``stop`` deletes and verifies with the API server that everything is gone (``cleanup``).
- ``list_owned``/``inventory`` group what the cluster holds by session (``inventory``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
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
    ResourceReport,
    RuntimeHealth,
    Tunnel,
    WorkloadLostCallback,
    WorkloadMovedCallback,
    WorkloadSpec,
)
from backend.runtime.kubernetes import manifests as mf
from backend.runtime.kubernetes.apierrors import BACKOFF, is_retryable, truncate
from backend.runtime.kubernetes.caches import SessionCaches, meta
from backend.runtime.kubernetes.claim import claim_workload, session_id_of
from backend.runtime.kubernetes.cleanup import delete_session
from backend.runtime.kubernetes.client import KubeClient, Sleep
from backend.runtime.kubernetes.connect import load_connection
from backend.runtime.kubernetes.creation import create_session, credentials_of, remove_partial
from backend.runtime.kubernetes.diagnose import describe_failure
from backend.runtime.kubernetes.inventory import (
    Snapshot,
    by_session,
    kinds_by_session,
    owned_workload,
)
from backend.runtime.kubernetes.kinds import (
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    REPLICASETS,
    SESSION_KINDS,
    Kind,
)
from backend.runtime.kubernetes.podlogs import LogFollower
from backend.runtime.kubernetes.podmoves import PodMoves
from backend.runtime.kubernetes.podstatus import assess
from backend.runtime.kubernetes.usage import ClusterUsage
from backend.runtime.kubernetes.watch import Reflector, session_of
from backend.templates import Template
from backend.tunnels import Admission

__all__ = ["KubernetesRuntime"]

log = logging.getLogger(__name__)


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
        propagation: str = "Background",
        admit: Admission | None = None,
    ) -> None:
        """``admit``: which local connections a tunnel lets through (``backend.peers``)."""
        self.settings = settings
        self._admit = admit
        self._logs = logs
        self._bus = bus
        self._backoff = backoff
        self._sleep = sleep
        self._follow_logs = follow_logs
        self._propagation = propagation
        self.client: KubeClient | None = None
        self._caches: SessionCaches | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._create_slots: asyncio.Semaphore | None = None
        self._connect_error = ""
        self._context = settings.context
        self._namespace = settings.namespace
        self._stopping: set[str] = set()
        self._stopped: collections.OrderedDict[str, None] = collections.OrderedDict()
        """Sessions stopped lately: their late watch events are not news."""
        self._followers: dict[str, LogFollower] = {}
        self._lost: WorkloadLostCallback | None = None
        self._lost_reported: set[str] = set()
        self._moved: WorkloadMovedCallback | None = None
        self._pods = PodMoves()
        self._reported_ok: bool | None = None
        self._closed = False
        self._usage = ClusterUsage()

    # ------------------------------------------------------------------ connection
    def describe(self) -> str:
        context = self._context or "current-context"
        return f"kubernetes {context}/{self._namespace or 'default'}"

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def reflectors(self) -> dict[str, Reflector]:
        """The watch caches by kind name (empty before ``connect``)."""
        return self._caches.reflectors if self._caches is not None else {}

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
            self._caches = SessionCaches(
                client, loop, on_change=self._on_change, on_state=lambda _r: self._report_health()
            )
            self._caches.start()
            self.client = client
            log.info("connected to %s (%s)", client.host, self.describe())
            return client

    def _make_client(self) -> KubeClient:
        connection = load_connection(self.settings)
        self._context = connection.context
        self._namespace = connection.namespace
        return KubeClient(
            connection, threads=self.settings.api_threads, backoff=self._backoff, sleep=self._sleep
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

    async def _connected(self) -> tuple[KubeClient, SessionCaches]:
        client = self.client if self.client is not None else await self.connect()
        assert self._caches is not None
        return client, self._caches

    async def _connected_for_start(self) -> tuple[KubeClient, SessionCaches]:
        """``_connected`` with its failures as the ``StartError`` a start raises."""
        try:
            return await self._connected()
        except ConfigError as e:
            raise StartError(e.message, retryable=False) from e
        except RuntimeUnavailable as e:
            raise StartError(e.message) from e

    # ------------------------------------------------------------------ change feed
    def set_workload_lost_callback(self, callback: WorkloadLostCallback) -> None:
        self._lost = callback

    def set_workload_moved_callback(self, callback: WorkloadMovedCallback) -> None:
        """Who to tell when a ready session's pod is replaced (``podmoves``)."""
        self._moved = callback

    def _on_change(self, reflector: Reflector, kind: str, obj: dict[str, Any]) -> None:
        """Every change of every owned object; a Deployment gone unasked is a lost one."""
        sid = session_of(obj)
        if sid is not None and reflector.kind is PODS:
            self._pod_changed(sid)
        if sid is None or reflector.kind is not DEPLOYMENTS:
            return
        gone = kind == "DELETED" or bool(meta(obj).get("deletionTimestamp"))
        if not gone:
            self._lost_reported.discard(sid)
            if kind == "ADDED":
                self._stopped.pop(sid, None)  # started again under the same id
            return
        if sid in self._stopping or sid in self._stopped or sid in self._lost_reported:
            return
        self._lost_reported.add(sid)
        self._stop_follower(sid)
        self._pods.forget(sid)
        if self._lost is not None:
            self._lost(session_id_of(obj) or sid, f"Deployment {sid} was deleted outside podwarden")

    def _pod_changed(self, sid: str) -> None:
        """A pod of ``sid`` changed: did the pod that serves it go, or a new one come?"""
        served = self._pods.get(sid)
        if served is None or sid in self._stopping or self._caches is None:
            return
        if self.client is None:
            return
        pod = self._caches.ready_pod(sid)
        name = str(meta(pod).get("name")) if pod is not None else ""
        if name == served.pod and not served.unready:
            return
        old = served.pod
        ended = served.end_connections(old) if name != old else 0
        if pod is None:
            if not served.unready:
                served.unready = True
                log.info("%s: pod %s is no longer ready (%d connections ended)", sid, old, ended)
                if self._moved is not None:
                    self._moved(served.session_id, None, f"pod {old} is no longer ready")
            return
        handle = self._became_ready(self.client, served.handle, pod)
        why = f"pod {old} replaced by {name}" if name != old else f"pod {name} is ready again"
        log.info("%s: %s", sid, why)
        if self._moved is not None:
            self._moved(served.session_id, handle, why)

    # ------------------------------------------------------------------ start
    async def start(self, spec: WorkloadSpec, on_phase: PhaseCallback) -> WorkloadHandle:
        template = spec.template
        if not template.image:
            raise StartError(
                f"template {template.name!r} has no image; set templates.{template.name}.image",
                retryable=False,
            )
        credentials = credentials_of(spec)
        for key in credentials:
            problem = mf.secret_key_problem(key)
            if problem:
                raise StartError(problem, retryable=False)
        client, _ = await self._connected_for_start()
        assert self._create_slots is not None
        sid = spec.session_id
        created: list[Kind] = []
        async with self._create_slots:
            on_phase("creating")
            try:
                uid = await create_session(client, spec, credentials, created)
            except (KubernetesError, StartError) as e:
                await remove_partial(client, sid, created)
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

    # ------------------------------------------------------------------ readiness
    async def wait_ready(
        self, handle: WorkloadHandle, spec: WorkloadSpec, timeout: float, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        """Wait on the watch caches; ``runtime.kubernetes.ready_timeout`` is the floor of
        ``timeout`` (image pulls are slow, and refusals fail fast without a timeout)."""
        timeout = max(timeout, self.settings.ready_timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        client, caches = await self._connected_for_start()
        sid = handle.ref
        pods = caches[PODS]
        try:
            await asyncio.wait_for(pods.synced.wait(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise StartError(
                f"cannot watch pods in namespace {client.namespace}: {pods.error or 'no answer'}"
            ) from None
        phase = ""
        seen_deployment = False
        while True:
            verdict = assess(caches.objects(PODS, sid), caches.objects(REPLICASETS, sid))
            if verdict.ready and verdict.pod is not None:
                return self._became_ready(client, handle, verdict.pod)
            if verdict.failure is not None:
                raise await describe_failure(client, self._logs, sid, verdict)
            if caches.objects(DEPLOYMENTS, sid):
                seen_deployment = True
            elif seen_deployment and sid not in self._stopping:
                raise StartError(f"Deployment {sid} was deleted while the session was starting")
            if verdict.phase != phase:
                phase = verdict.phase
                on_phase(phase)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StartError(_timeout_reason(sid, timeout, verdict.phase, verdict.pod))
            await caches.wait_change(sid, remaining)

    def _became_ready(
        self, client: KubeClient, handle: WorkloadHandle, pod: dict[str, Any]
    ) -> WorkloadHandle:
        name = str(meta(pod).get("name") or "")
        extra = dict(handle.extra)
        extra.update(
            namespace=client.namespace,
            pod=name,
            node=str((pod.get("spec") or {}).get("nodeName") or ""),
        )
        self._ensure_follower(client, handle, name)
        ready = WorkloadHandle(
            runtime=self.name,
            ref=handle.ref,
            host=str((pod.get("status") or {}).get("podIP") or ""),
            port=handle.port,
            extra=extra,
        )
        if handle.ref not in self._stopping:
            self._pods.serve(ready, name)
        return ready

    # ------------------------------------------------------------------ logs
    def _ensure_follower(self, client: KubeClient, handle: WorkloadHandle, pod: str) -> None:
        if not self._follow_logs:
            return
        sid = handle.ref
        logs_as = handle.extra.get("claimed_as") or sid  # a claimed standby's session
        current = self._followers.get(sid)
        if current is not None and current.pod == pod and current.running:
            current.session_id = logs_as
            return
        if current is not None:
            current.stop()
        follower = LogFollower(
            client, client.namespace, logs_as, pod, self._logs, asyncio.get_running_loop()
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
    async def probe(self, handle: WorkloadHandle, template: Template) -> ProbeResult:
        """From the watch caches; asks the API directly while a watch is down.

        Raises ``RuntimeUnavailable`` when the cluster cannot be asked at all: that says
        nothing about the workload, so a caller must not count it as a failed probe.
        """
        client, caches = await self._connected()
        sid = handle.ref
        if caches.current(DEPLOYMENTS, PODS, REPLICASETS):
            deployments = caches.objects(DEPLOYMENTS, sid)
            pods = caches.objects(PODS, sid)
            replicasets = caches.objects(REPLICASETS, sid)
        else:
            try:
                deployments = [await client.get(DEPLOYMENTS, client.namespace, sid)]
            except KubeNotFound:
                deployments = []
            pods, _ = await client.list(PODS, client.namespace, mf.session_selector(sid))
            replicasets = []
        if not [d for d in deployments if not meta(d).get("deletionTimestamp")]:
            return ProbeResult(False, f"Deployment {sid} is gone", gone=True)
        verdict = assess(pods, replicasets)
        if verdict.ready and verdict.pod is not None:
            return ProbeResult(True, f"pod {meta(verdict.pod).get('name')} is ready")
        return ProbeResult(False, verdict.failure or f"no ready pod ({verdict.phase})")

    async def keepalive(self, handle: WorkloadHandle, template: Template) -> None:
        """GET the keepalive path on the pod through the API server's pod proxy."""
        if not template.keepalive_path:
            return
        client, caches = await self._connected()
        pod = caches.ready_pod(handle.ref)
        name = meta(pod).get("name") if pod else handle.extra.get("pod")
        if not name:
            raise StartError(f"keepalive: session {handle.ref} has no ready pod")
        path = "/" + template.keepalive_path.lstrip("/")
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

    # ------------------------------------------------------------------ standby
    claim_writes_files = False
    """A claim cannot write a credentials file into a running pod: credentials start
    a fresh session."""

    async def claim(self, handle: WorkloadHandle, spec: WorkloadSpec) -> WorkloadHandle:
        """Relabel a standby's Deployment and pod for ``spec``'s session (``claim``)."""
        client, caches = await self._connected()
        claimed = await claim_workload(client, caches, handle, spec)
        pod = caches.ready_pod(handle.ref)
        if pod is not None:
            self._ensure_follower(client, claimed, str(meta(pod).get("name")))
            self._pods.serve(claimed, str(meta(pod).get("name")))
        return claimed

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
        self._pods.forget(sid)
        verified: tuple[str, ...] = ()
        try:
            client, caches = await self._connected()
            deleted = await delete_session(
                client,
                caches,
                sid,
                propagation=self._propagation,
                timeout=self.settings.delete_timeout,
            )
            leftovers, verified = deleted.leftovers, deleted.verified_kinds
        except (ConfigError, RuntimeUnavailable) as e:
            leftovers = [f"unknown: {truncate(e.message, 200)}"]
        finally:
            self._stopping.discard(sid)
            self._stopped[sid] = None
            while len(self._stopped) > 4096:
                self._stopped.popitem(last=False)
        return CleanupReport(time.monotonic() - started, tuple(leftovers), verified)

    # ------------------------------------------------------------------ recovery
    async def _snapshot(self) -> Snapshot:
        """Every owned object by kind name: from the caches when current, else listed."""
        client, caches = await self._connected()
        if caches.current():
            return caches.snapshot()
        lists = await asyncio.gather(
            *(client.list(k, client.namespace, mf.MANAGED_SELECTOR) for k in SESSION_KINDS)
        )
        return {k.name: items for k, (items, _rv) in zip(SESSION_KINDS, lists, strict=True)}

    async def inventory(self) -> dict[str, tuple[str, ...]]:
        """Session id -> the kinds of object it still has in the cluster (for drift)."""
        return kinds_by_session(await self._snapshot())

    async def list_owned(self) -> list[OwnedWorkload]:
        """Every session with any object left, ready or not (partial ones: not alive)."""
        snapshot = await self._snapshot()
        return [
            owned_workload(sid, objs, self._namespace) for sid, objs in by_session(snapshot).items()
        ]

    # ------------------------------------------------------------------ tunnels
    async def open_tunnel(self, handle: WorkloadHandle, host: str, port: int) -> Tunnel:
        """A local listener; each connection is port-forwarded to the session's pod of the
        moment (looked up by label, so a replaced pod is found again)."""
        from backend.runtime.kubernetes.portforward import open_portforward_tunnel

        client, caches = await self._connected()
        sid = handle.ref

        async def resolve_pod() -> str:
            pod = caches.ready_pod(sid)
            if pod is None:
                raise ConnectionRefusedError(f"session {sid} has no ready pod")
            return str(meta(pod).get("name"))

        pod = caches.ready_pod(sid)
        if pod is not None:
            name = str(meta(pod).get("name"))
            self._ensure_follower(client, handle, name)
            served = self._pods.get(sid)
            if served is None or served.pod != name:
                extra = dict(handle.extra)
                extra["pod"] = name
                handle = WorkloadHandle(handle.runtime, sid, handle.host, handle.port, extra)
                self._pods.serve(handle, name)

        def track(pod_name: str, transport: asyncio.Transport) -> None:
            served = self._pods.get(sid)
            if served is not None:
                served.track(pod_name, transport)

        return await open_portforward_tunnel(
            client,
            client.namespace,
            resolve_pod,
            host=host,
            port=port,
            target=f"pod/{meta(pod).get('name') if pod else sid}",
            target_port=handle.port,
            admit=self._admit,
            track=track,
        )

    # ------------------------------------------------------------------ resources
    async def resources(self, handles: Mapping[str, WorkloadHandle]) -> ResourceReport:
        """Pod metrics when the cluster serves ``metrics.k8s.io``, else the pods' requests
        (from the watch caches), and the nodes' allocatable against podwarden's pods'
        requests (``usage``). Before the first connection: nothing (no request made)."""
        if self.client is None or self._caches is None:
            return ResourceReport()
        return await self._usage.sample(self.client, self._caches, handles)

    # ------------------------------------------------------------------ health
    async def ping(self) -> None:
        """One API round trip (``GET /version``, no retries) and the watches' liveness: the
        heartbeat of a multi-target pool. Raises ``RuntimeUnavailable`` saying why."""
        client = await self.connect()
        await client.request(
            "GET", "/version", action="GET /version (heartbeat)", key="get version", retry=False
        )
        if self._caches is not None:
            broken = [r for r in self._caches.reflectors.values() if not r.healthy]
            if broken:
                errors = "; ".join(sorted({r.error for r in broken if r.error}) or {"watch down"})
                raise RuntimeUnavailable(f"watch down: {truncate(errors, 200)}")

    def health(self) -> RuntimeHealth:
        """Degraded while a watch or the connection fails; ``workloads`` counts live
        Deployments (what the drift check compares with the pool)."""
        if self.client is None or self._caches is None:
            detail = self._connect_error or "not connected yet"
            return RuntimeHealth(not self._connect_error, detail, None)
        deployments = self._caches[DEPLOYMENTS]
        count = sum(
            1
            for objs in deployments.by_session.values()
            if any(not meta(o).get("deletionTimestamp") for o in objs.values())
        )
        broken = [r for r in self._caches.reflectors.values() if not r.healthy]
        if broken:
            errors = "; ".join(sorted({r.error for r in broken if r.error}) or {"watch down"})
            return RuntimeHealth(
                False, f"degraded: {self.client.host}: {truncate(errors, 240)}", count
            )
        return RuntimeHealth(True, f"{self.client.host} namespace {self._namespace}", count)

    def _report_health(self) -> None:
        health = self.health()
        if health.ok == self._reported_ok:
            return
        previous, self._reported_ok = self._reported_ok, health.ok
        if self._bus is None or (previous is None and health.ok):
            return
        kind = EventKind.RUNTIME_RECOVERED if health.ok else EventKind.RUNTIME_DEGRADED
        self._bus.publish(kind, f"kubernetes: {health.detail}")

    # ------------------------------------------------------------------ close
    async def close(self) -> None:
        """Stop the watches, log follows and threads; the workloads keep running."""
        self._closed = True
        for follower in list(self._followers.values()):
            follower.stop()
        self._followers.clear()
        if self._caches is not None:
            self._caches.stop()
        client, self.client = self.client, None
        if client is not None:
            client.close()


def _timeout_reason(sid: str, timeout: float, phase: str, pod: dict[str, Any] | None) -> str:
    if pod is None:
        return (
            f"not ready after {timeout:.0f}s: no pod of session {sid} exists yet "
            "(check the ReplicaSet's events and the namespace's quota)"
        )
    return f"not ready after {timeout:.0f}s: pod {meta(pod).get('name')} is still {phase}"
