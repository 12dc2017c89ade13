"""The embedded backend: store, runtime, pool, refresher and drift checks, started together.

``Backend`` is what the API server, the TUI's embedded mode and the tests hold. It owns
the order things start and stop in: store, runtime, recovery, then the pool takes
requests; on stop the pool closes first (workloads keep running for the next start unless
asked to stop them), then the runtime and the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.culling import Culler
from backend.drain import DRAIN_FLAG, DrainState
from backend.errors import SessionNotFound
from backend.events import EventBus, EventKind
from backend.health import HealthSnapshot
from backend.liveness import LivenessChecker
from backend.logs import SessionLogs
from backend.models import SessionState
from backend.peers import PeerPolicy, resolve_users
from backend.pool import SessionPool
from backend.recovery import RecoveryReport, recover
from backend.refresher import Refresher
from backend.resources import ResourceSampler
from backend.runtime.base import OwnedWorkload, Runtime
from backend.runtime.multi import MultiRuntime, Target
from backend.standby import StandbyKeeper
from backend.state_lock import StateLock, hold_state_dir
from backend.store import Store
from backend.tunnels import Admission, PortAllocator

__all__ = ["Backend", "make_multi_runtime", "make_runtime"]

log = logging.getLogger("podwarden")


def make_runtime(settings: Settings, logs: SessionLogs, bus: EventBus) -> Runtime:
    """The runtime the settings name; Kubernetes is imported only when chosen."""
    if settings.runtime.kind == "multi":
        return make_multi_runtime(settings, logs, bus)
    if settings.runtime.kind == "kubernetes":
        from backend.runtime.kubernetes import KubernetesRuntime

        kube = settings.runtime.kubernetes
        return KubernetesRuntime(
            kube, logs, bus, propagation=kube.delete_propagation, admit=tunnel_admission(settings)
        )
    from backend.runtime.local import LocalRuntime

    tunnels = settings.tunnels
    return LocalRuntime(
        Path(settings.state_dir),
        logs,
        host="127.0.0.1",
        avoid_ports=range(tunnels.port_min, tunnels.port_max + 1),
        admit=tunnel_admission(settings),
    )


def make_multi_runtime(settings: Settings, logs: SessionLogs, bus: EventBus) -> MultiRuntime:
    """One child runtime per ``[runtime.targets.NAME]``: a cluster's ``KubernetesRuntime``
    (``runtime.kubernetes`` with the target's kubeconfig, context and namespace), or a
    ``LocalRuntime`` with its own directory under ``<state-dir>/targets/NAME``."""
    runtime = settings.runtime
    targets = []
    for name, target in runtime.targets.items():
        child: Runtime
        workdir_root = None
        if target.kind == "kubernetes":
            from backend.runtime.kubernetes import KubernetesRuntime

            kube = dataclasses.replace(
                runtime.kubernetes,
                kubeconfig=target.kubeconfig or runtime.kubernetes.kubeconfig,
                context=target.context,
                namespace=target.namespace or runtime.kubernetes.namespace,
            )
            child = KubernetesRuntime(
                kube,
                logs,
                bus,
                propagation=kube.delete_propagation,
                admit=tunnel_admission(settings),
            )
        else:
            from backend.runtime.local import LocalRuntime

            root = Path(settings.state_dir) / "targets" / name
            workdir_root = root / "sessions"
            tunnels = settings.tunnels
            child = LocalRuntime(
                root,
                logs,
                host="127.0.0.1",
                avoid_ports=range(tunnels.port_min, tunnels.port_max + 1),
                admit=tunnel_admission(settings),
            )
        targets.append(
            Target(
                name,
                child,
                target.max_sessions,
                target.weight,
                dict(target.labels),
                workdir_root=workdir_root,
            )
        )
    return MultiRuntime(
        targets,
        bus,
        heartbeat_interval=runtime.heartbeat_interval,
        degraded_latency=runtime.degraded_latency,
        target_lost_after=runtime.target_lost_after,
    )


def tunnel_admission(settings: Settings) -> Admission:
    """Who may connect to the tunnels: ``[tunnels] allow_users``, the daemon's user, root."""
    return PeerPolicy(resolve_users(settings.tunnels.allow_users)).admits


class Backend:
    """Everything behind the API and the TUI, in one object."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime | None = None,
        *,
        persist: bool = True,
    ) -> None:
        self.settings = settings
        self.bus = EventBus()
        self.logs = SessionLogs(self.bus, settings.pool.log_lines)
        self.state_dir = Path(settings.state_dir)
        self.store = Store(self.state_dir / "podwarden.db") if persist else None
        self.runtime = (
            runtime if runtime is not None else make_runtime(settings, self.logs, self.bus)
        )
        if isinstance(self.runtime, MultiRuntime) and self.runtime.bus is None:
            self.runtime.bus = self.bus  # a runtime made by a test: its events go here too
        self.ports = PortAllocator(
            settings.tunnels.host, settings.tunnels.port_min, settings.tunnels.port_max
        )
        self.pool = SessionPool(settings, self.runtime, self.bus, self.logs, self.store, self.ports)
        self.refresher = Refresher(self.pool)
        self.liveness = LivenessChecker(self.pool)
        self.culler = Culler(self.pool)
        self.standby = StandbyKeeper(self.pool)
        self.resources = ResourceSampler(self.pool)
        self.recovery: RecoveryReport | None = None
        self.started_at = time.time()
        self.orphans: dict[str, OwnedWorkload] = {}
        self.ghosts: list[str] = []
        self.runtime_workloads: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._removals: set[asyncio.Task[None]] = set()
        self._started = False
        self._lock: StateLock | None = None

    async def start(self) -> None:
        """Lock the state directory, open the store, recover, start the background tasks."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.store is not None:
            self._lock = hold_state_dir(self.state_dir)
            self.store.open()
            self._tasks.append(self._guarded(self._persist_events(), "event store"))
            self.pool.drain = DrainState.from_flag(self.store.load_flags().get(DRAIN_FLAG))
        self.pool.load_replaced()
        adopt_unknown = True
        if self.settings.runtime.kind == "kubernetes":
            adopt_unknown = self.settings.runtime.kubernetes.unknown_workloads == "adopt"
        self.recovery = await recover(self.pool, adopt_unknown=adopt_unknown)
        if isinstance(self.runtime, MultiRuntime):
            self.runtime.start_heartbeats()
        self.pool.mark_running()
        self.refresher.start()
        self.liveness.start()
        self.culler.start()
        self.standby.start()
        self.resources.start()
        self._tasks.append(self._guarded(self._reconcile_loop(), "drift check"))
        self._started = True

    async def stop(self, *, stop_sessions: bool = False) -> None:
        """Close everything; workloads keep running for re-adoption unless asked."""
        await self.refresher.stop()
        await self.liveness.stop()
        await self.culler.stop()
        await self.standby.stop()
        await self.resources.stop()
        await asyncio.gather(*self._removals, return_exceptions=True)
        await self.pool.close(stop_sessions=stop_sessions)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.runtime.close()
        if self.store is not None:
            await self.store.flush()
            self.store.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._started = False

    async def __aenter__(self) -> Backend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _guarded(self, coro: Any, name: str) -> asyncio.Task[None]:
        """A named background task whose unexpected end is logged and seen in health."""

        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %r ended unexpectedly", name)
                raise

        return asyncio.get_running_loop().create_task(run(), name=f"podwarden: {name}")

    async def _persist_events(self) -> None:
        # Not log lines, and not reuses: at thousands per second they would push every
        # eviction and failure out of the store's last 2,000 events within a second;
        # nor the steps of a start or refresh, which the events that end them sum up.
        assert self.store is not None
        kinds = set(EventKind) - {
            EventKind.LOG,
            EventKind.REUSED,
            EventKind.PHASE,
            EventKind.REFRESH_STARTED,
        }
        with self.bus.subscribe(maxsize=10000, kinds=kinds) as sub:
            async for event in sub:
                self.store.add_event(event)

    async def _reconcile_loop(self) -> None:
        interval = self.settings.runtime.kubernetes.reconcile_interval
        while True:
            await asyncio.sleep(interval)
            await self.check_drift()

    async def check_drift(self) -> None:
        """Compare what the pool believes with what the runtime holds.

        Orphans (workloads the pool does not know) are listed for operators, never
        silently killed; ghosts (live sessions whose workload is gone) are handed to the
        pool, which recycles or removes them.
        """
        try:
            owned = await self.runtime.list_owned()
        except Exception as e:  # the runtime's health reports the outage
            log.warning("drift check failed: %s", e)
            return
        sessions = {s.session_id: s for s in self.pool.list()}
        known_live = {
            sid
            for sid, s in sessions.items()
            if s.state.is_live or s.state is SessionState.TERMINATING
        }
        owned = [w for w in owned if w.alive]
        self.runtime_workloads = len(owned)
        owned_ids = {w.session_id for w in owned}
        self.orphans = {w.session_id: w for w in owned if w.session_id not in known_live}
        ghosts = []
        for sid, session in sessions.items():
            if session.state in (SessionState.READY, SessionState.REFRESHING) and (
                sid not in owned_ids
            ):
                ghosts.append(sid)
                self.bus.publish_session(
                    EventKind.VANISHED, f"{sid}: its workload is gone from the runtime", session
                )
                self.pool.mark_lost(session, "workload vanished from the runtime")
        self.ghosts = ghosts

    async def remove_orphan(self, session_id: str) -> None:
        """Stop a workload the pool does not know (found by the drift check), and return
        once it is stopped; ``SessionNotFound`` if it is not a known orphan."""
        workload = self.orphans.pop(session_id, None)
        if workload is None:
            raise SessionNotFound(session_id)
        await self.pool.stopper.stop(
            workload.handle,
            session_id=session_id,
            user=workload.user,
            why="asked to remove it",
            verified_kind=EventKind.ORPHAN_REMOVED,
        )

    def begin_orphan_removal(self, session_id: str) -> None:
        """``remove_orphan`` in the background: returns at once (the API answers 202)."""
        if session_id not in self.orphans:
            raise SessionNotFound(session_id)
        task = asyncio.get_running_loop().create_task(
            self._remove_quietly(session_id), name=f"podwarden: remove orphan {session_id}"
        )
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _remove_quietly(self, session_id: str) -> None:
        try:
            await self.remove_orphan(session_id)
        except SessionNotFound:
            pass  # removed meanwhile by another request

    def health(self) -> HealthSnapshot:
        """The snapshot behind ``GET /health``."""
        pool = self.pool
        sessions = pool.list()
        counts = {state: 0 for state in SessionState}
        for session in sessions:
            counts[session.state] += 1
        runtime_health = self.runtime.health()
        reasons = []
        if not runtime_health.ok:
            reasons.append(f"runtime: {runtime_health.detail}")
        if self.store is not None and not self.store.healthy:
            reasons.append(f"store: {self.store.last_error}")
        if self._started and not self.refresher.running:
            reasons.append("refresher is not running")
        if self._started and not self.culler.running:
            reasons.append("culler is not running")
        settings = self.settings.pool
        active = pool.active_count
        workloads = runtime_health.workloads
        if workloads is None:
            workloads = self.runtime_workloads
        status = "degraded" if reasons else "healthy"
        if pool.drain.active and not reasons:
            status = "draining"
        return HealthSnapshot(
            status=status,
            active_sessions=active,
            max_sessions=pool.capacity.max_sessions,
            session_capacity=f"{active}/{pool.capacity.max_sessions}",
            persistent_sessions=counts[SessionState.READY] + counts[SessionState.REFRESHING],
            starting_sessions=counts[SessionState.STARTING],
            failed_sessions=counts[SessionState.FAILED],
            queued_acquires=pool.queued,
            users=len({s.user for s in sessions if s.state.is_live and not s.standby}),
            max_sessions_per_user=settings.max_sessions_per_user,
            runtime=self.runtime.describe(),
            runtime_ok=runtime_health.ok,
            runtime_workloads=workloads,
            orphans=sorted(self.orphans),
            ghosts=list(self.ghosts),
            store_ok=self.store.healthy if self.store is not None else True,
            degraded_reasons=reasons,
            uptime_s=round(time.time() - self.started_at, 3),
            refresh_interval_s=settings.refresh_interval,
            last_refresh_at=self.refresher.last_round_at,
            draining=pool.drain.active,
            draining_since=pool.drain.since,
            standby=len(pool.standby_sessions()),
            pinned_sessions=sum(1 for s in sessions if s.pinned and s.state.is_live),
            next_eviction=victim.session_id if (victim := pool.capacity.next_victim()) else None,
            resources=self.resources.summary(),
            targets=(
                self.runtime.target_health() if isinstance(self.runtime, MultiRuntime) else []
            ),
        )
