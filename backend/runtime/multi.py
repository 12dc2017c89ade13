"""``MultiRuntime``: one ``Runtime`` over several targets (clusters, or this host).

The pool sees one runtime; behind it each target has its own child runtime
(``KubernetesRuntime`` per cluster, ``LocalRuntime`` for this host), and this module
only decides *where* (``backend.placement``) and routes every later call to the child
that holds the workload. Kubernetes stays the engine: a target is asked to run a
session, it never has its pods scheduled by podwarden.

- Every handle a child returns is tagged with ``extra["target"]`` (and the session id),
  so stop, probe, keepalive, logs and tunnels go to the right child, also after a
  restart: the handle is in the store, and ``list_owned`` asks every target.
- A start the target itself refuses (quota exceeded, unschedulable, its API refusing) is
  tried once more on another target, and an event says so.
- Each target's health is checked every ``heartbeat_interval`` (an API round trip; the
  local runtime is trivially healthy): ``healthy``, ``degraded`` (slow or erroring) or
  ``lost`` (no contact for ``target_lost_after``). A lost target takes no new sessions
  and its capacity leaves the pool's total.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from backend.errors import (
    NoTarget,
    PodwardenError,
    RuntimeUnavailable,
    StartError,
)
from backend.events import EventBus, EventKind
from backend.models import WorkloadHandle
from backend.placement import check_labels, choose, is_target_fault
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
from backend.runtime.multi_resources import merge_reports
from backend.runtime.targets import (
    SESSION_KEY,
    TARGET_KEY,
    Target,
    TargetState,
    tag,
    untag,
)
from backend.templates import Template

__all__ = ["MultiRuntime", "Target", "TargetState"]

log = logging.getLogger(__name__)


class MultiRuntime:
    """The ``Runtime`` of a pool spread over several targets."""

    name = "multi"

    def __init__(
        self,
        targets: list[Target],
        bus: EventBus | None = None,
        *,
        heartbeat_interval: float = 5.0,
        degraded_latency: float = 1.0,
        target_lost_after: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not targets:
            raise ValueError("a MultiRuntime needs at least one target")
        self.targets: dict[str, Target] = {t.name: t for t in targets}
        self.bus = bus
        self.heartbeat_interval = heartbeat_interval
        self.degraded_latency = degraded_latency
        self.target_lost_after = target_lost_after
        self._clock = clock
        self._placed: dict[str, str] = {}
        """Session id -> target name."""
        self._moved_once: set[str] = set()
        """Sessions whose start was already moved once to another target."""
        self._heartbeat: asyncio.Task[None] | None = None
        self.capacity_changed: Callable[[], None] | None = None
        """Called when room may have appeared: a target back, a workload stopping."""
        self._room: asyncio.Event | None = None
        self._on_lost: Callable[[str, str], None] | None = None
        self._on_back: Callable[[str], None] | None = None
        self.room_wait = 2.0
        """Seconds a start waits for a target to have room when all that could take it
        are full (an evicted session's stop frees its slot just after the start began)."""

    # ------------------------------------------------------------------ describe
    def describe(self) -> str:
        parts = ", ".join(f"{t.name}: {t.runtime.describe()}" for t in self.targets.values())
        return f"multi ({parts})"

    @property
    def available_capacity(self) -> int:
        """Capacity of the targets that are not lost."""
        return sum(t.capacity for t in self.targets.values() if t.state is not TargetState.LOST)

    def capacity_limit(self) -> int:
        """Live sessions the pool may hold now: the room of the targets not lost, plus the
        sessions stranded on lost ones (they hold a slot, but not a target's room)."""
        stranded = sum(
            len(t.sessions) for t in self.targets.values() if t.state is TargetState.LOST
        )
        return self.available_capacity + stranded

    @property
    def all_lost(self) -> bool:
        return all(t.state is TargetState.LOST for t in self.targets.values())

    def check_available(self) -> None:
        """Raise ``NoTarget`` (503 with Retry-After) when every target is lost."""
        if self.all_lost:
            since = ", ".join(
                f"{t.name}: {t.last_error or 'no contact'}" for t in self.targets.values()
            )
            raise NoTarget(
                f"every target is lost ({since}); no session can be started or reached "
                "now; retry later",
                retry_after=max(1.0, self.heartbeat_interval),
            )

    def set_target_callbacks(
        self, lost: Callable[[str, str], None], back: Callable[[str], None]
    ) -> None:
        """Who to tell when a target is lost (name, why) and when it answers again."""
        self._on_lost, self._on_back = lost, back

    def is_lost(self, handle: WorkloadHandle) -> bool:
        """Whether the target holding ``handle`` is lost now."""
        try:
            return self._route(handle).state is TargetState.LOST
        except RuntimeUnavailable:
            return False

    def forget(self, handle: WorkloadHandle) -> None:
        """A workload on a lost target was replaced elsewhere: its session no longer counts
        there (it is stopped, through ``stop``, when the target returns)."""
        self._release_if(self._route(handle), self._session_of(handle))

    def set_capacity_callback(self, callback: Callable[[], None]) -> None:
        """Who to tell when room may have appeared (a target back, a workload stopping)."""
        self.capacity_changed = callback

    def target_of(self, session_id: str) -> str | None:
        """The target a session's workload was placed on, when known."""
        return self._placed.get(session_id)

    # ------------------------------------------------------------------ callbacks
    def set_workload_lost_callback(self, callback: WorkloadLostCallback) -> None:
        """Passed on from each target, but only for sessions placed there now (a workload
        replaced elsewhere during an outage is not its session's news)."""
        for target in self.targets.values():

            def lost(sid: str, why: str, name: str = target.name) -> None:
                if self._placed.get(sid, name) == name:
                    callback(sid, why)

            target.runtime.set_workload_lost_callback(lost)

    def set_workload_moved_callback(self, callback: WorkloadMovedCallback) -> None:
        for target in self.targets.values():
            setter = getattr(target.runtime, "set_workload_moved_callback", None)
            if setter is None:
                continue

            def moved(
                sid: str, handle: WorkloadHandle | None, why: str, name: str = target.name
            ) -> None:
                if self._placed.get(sid, name) != name:
                    return  # replaced elsewhere during an outage: not this session's pod
                callback(sid, tag(handle, name, sid) if handle is not None else None, why)

            setter(moved)

    # ------------------------------------------------------------------ placement
    def check_requirements(self, template: Template, requires: Mapping[str, str]) -> None:
        """Raise ``InvalidRequest`` (422) naming a required label no target carries."""
        if requires or template.requires:
            check_labels([t.view() for t in self.targets.values()], template, requires)

    def _choose(self, spec: WorkloadSpec, exclude: set[str]) -> Target | None:
        requires = {**spec.template.requires, **spec.requires}
        name = choose(
            [t.view() for t in self.targets.values()],
            spec.user,
            requires=requires,
            allowed=spec.template.targets,
            exclude=exclude,
        )
        return self.targets[name] if name is not None else None

    def _no_room(self, spec: WorkloadSpec, exclude: set[str]) -> StartError:
        states = ", ".join(
            f"{t.name} {t.state.value} {len(t.sessions)}/{t.capacity}"
            for t in self.targets.values()
        )
        what = "no target can take this session"
        requires = {**spec.template.requires, **spec.requires}
        if requires:
            what += " (it requires " + ", ".join(f"{k}={v}" for k, v in requires.items()) + ")"
        if exclude:
            what += f"; refused by {', '.join(sorted(exclude))}"
        return StartError(f"{what}: {states}", retryable=False)

    def _reserve(self, target: Target, spec: WorkloadSpec) -> None:
        old = self._placed.get(spec.session_id)
        if old is not None and old != target.name:
            self.targets[old].sessions.pop(spec.session_id, None)
        target.sessions[spec.session_id] = spec.user
        self._placed[spec.session_id] = target.name

    def _release(self, session_id: str) -> None:
        name = self._placed.pop(session_id, None)
        if name is not None:
            self.targets[name].sessions.pop(session_id, None)
        self._moved_once.discard(session_id)

    def _spec_for(self, target: Target, spec: WorkloadSpec) -> WorkloadSpec:
        if target.workdir_root is None:
            return spec
        return dataclasses.replace(spec, workdir=target.workdir_root / spec.session_id)

    def _route(self, handle: WorkloadHandle) -> Target:
        name = handle.extra.get(TARGET_KEY)
        if name is not None and name in self.targets:
            return self.targets[name]
        # A handle from before the pool was multi: the first target of its kind.
        for target in self.targets.values():
            if target.runtime.name == handle.runtime:
                return target
        raise RuntimeUnavailable(
            f"workload {handle.ref} belongs to target {name!r}, which is not configured"
        )

    def _session_of(self, handle: WorkloadHandle) -> str:
        return handle.extra.get(SESSION_KEY) or handle.ref

    # ------------------------------------------------------------------ start
    async def _start_on(
        self, target: Target, spec: WorkloadSpec, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        self._reserve(target, spec)
        try:
            handle = await target.runtime.start(self._spec_for(target, spec), on_phase)
        except BaseException:
            self._release_if(target, spec.session_id)
            raise
        return tag(handle, target.name, spec.session_id)

    def _release_if(self, target: Target, session_id: str) -> None:
        if self._placed.get(session_id) == target.name:
            self._placed.pop(session_id, None)
        target.sessions.pop(session_id, None)

    def _announce_move(self, spec: WorkloadSpec, old: Target, new: Target, why: str) -> None:
        self._moved_once.add(spec.session_id)
        log.info("%s: %s refused the start (%s); trying %s", spec.session_id, old.name, why, new)
        if self.bus is not None:
            self.bus.publish(
                EventKind.START_RETRY,
                f"{spec.session_id}: target {old.name} refused the start ({why}); "
                f"moved to target {new.name}",
                session_id=spec.session_id,
                user=spec.user,
                from_target=old.name,
                to_target=new.name,
            )

    async def _choose_waiting(self, spec: WorkloadSpec) -> Target | None:
        """``_choose``, waiting up to ``room_wait`` while the only targets that could take
        the session are full: a stop that began meanwhile frees a slot at once."""
        target = self._choose(spec, set())
        if target is not None:
            return target
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.room_wait
        while target is None and not self.all_lost:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if self._room is None:
                self._room = asyncio.Event()
            room = self._room
            try:
                await asyncio.wait_for(room.wait(), remaining)
            except TimeoutError:
                break
            finally:
                if self._room is room and room.is_set():
                    self._room = None
            target = self._choose(spec, set())
        return target

    def _freed(self) -> None:
        if self._room is not None:
            self._room.set()
        if self.capacity_changed is not None:
            self.capacity_changed()

    async def start(self, spec: WorkloadSpec, on_phase: PhaseCallback) -> WorkloadHandle:
        """Place the session and start it there; a target's own refusal moves it, once."""
        target = await self._choose_waiting(spec)
        if target is None:
            raise self._no_room(spec, set())
        try:
            return await self._start_on(target, spec, on_phase)
        except (StartError, RuntimeUnavailable) as e:
            if spec.session_id in self._moved_once or not _blames_target(e):
                raise
            other = self._choose(spec, {target.name})
            if other is None:
                raise
            self._announce_move(spec, target, other, e.message)
            return await self._start_on(other, spec, on_phase)

    async def wait_ready(
        self, handle: WorkloadHandle, spec: WorkloadSpec, timeout: float, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        """Wait on the target that holds it; a target's own refusal (unschedulable, quota)
        stops it there and starts it once more on another target."""
        target = self._route(handle)
        try:
            ready = await target.runtime.wait_ready(
                untag(handle), self._spec_for(target, spec), timeout, on_phase
            )
            return tag(ready, target.name, spec.session_id)
        except StartError as e:
            if spec.session_id in self._moved_once or not _blames_target(e):
                raise
            other = self._choose(spec, {target.name})
            if other is None:
                raise
            reason = e.message
        await target.runtime.stop(untag(handle), 0.0)
        self._release_if(target, spec.session_id)
        self._announce_move(spec, target, other, reason)
        moved = await self._start_on(other, spec, on_phase)
        try:
            ready = await other.runtime.wait_ready(
                untag(moved), self._spec_for(other, spec), timeout, on_phase
            )
        except BaseException:
            # The caller only knows the first handle: this workload is ours to remove.
            await asyncio.shield(self.stop(moved, 0.0))
            raise
        return tag(ready, other.name, spec.session_id)

    # ------------------------------------------------------------------ routed calls
    async def probe(self, handle: WorkloadHandle, template: Template) -> ProbeResult:
        target = self._route(handle)
        if target.state is TargetState.LOST:
            raise RuntimeUnavailable(f"target {target.name} is lost: {target.last_error}")
        return await target.runtime.probe(untag(handle), template)

    async def resources(self, handles: Mapping[str, WorkloadHandle]) -> ResourceReport | None:
        """Each reachable target's sample of its own sessions, merged; a target that
        cannot be asked now only leaves its sessions out of this sample."""
        by_target: dict[str, dict[str, WorkloadHandle]] = {n: {} for n in self.targets}
        for sid, handle in handles.items():
            by_target[self._route(handle).name][sid] = untag(handle)
        live = [t for t in self.targets.values() if t.state is not TargetState.LOST]
        reports = await asyncio.gather(
            *(t.runtime.resources(by_target[t.name]) for t in live), return_exceptions=True
        )
        known = [r for r in reports if isinstance(r, ResourceReport)]
        return merge_reports(known) if known else None

    async def keepalive(self, handle: WorkloadHandle, template: Template) -> None:
        await self._route(handle).runtime.keepalive(untag(handle), template)

    async def stop(self, handle: WorkloadHandle, grace: float) -> CleanupReport:
        """Stop it on its target; its slot there is free from the moment the stop begins
        (as the pool's own slot is), so the start an eviction made room for finds it."""
        target = self._route(handle)
        sid = self._session_of(handle)
        self._release_if(target, sid)
        self._moved_once.discard(sid)
        self._freed()
        return await target.runtime.stop(untag(handle), grace)

    async def open_tunnel(self, handle: WorkloadHandle, host: str, port: int) -> Tunnel:
        return await self._route(handle).runtime.open_tunnel(untag(handle), host, port)

    def logs(self, session_id: str) -> list[str]:
        name = self._placed.get(session_id)
        target = self.targets[name] if name is not None else next(iter(self.targets.values()))
        return target.runtime.logs(session_id)

    @property
    def claim_writes_files(self) -> bool:
        return all(getattr(t.runtime, "claim_writes_files", True) for t in self.targets.values())

    async def claim(self, handle: WorkloadHandle, spec: WorkloadSpec) -> WorkloadHandle:
        """Hand a standby workload to ``spec``'s session on the target that runs it."""
        target = self._route(handle)
        claim = getattr(target.runtime, "claim", None)
        if claim is None:
            raise StartError(f"target {target.name} cannot hand over standby workloads")
        claimed: WorkloadHandle = await claim(untag(handle), self._spec_for(target, spec))
        self._release_if(target, self._session_of(handle))
        self._reserve(target, spec)
        return tag(claimed, target.name, spec.session_id)

    # ------------------------------------------------------------------ recovery
    async def list_owned(self) -> list[OwnedWorkload]:
        """Every target's workloads, tagged with their target. A target that cannot be
        listed fails the whole list (``RuntimeUnavailable`` naming it): reporting its
        sessions as gone would have them marked vanished."""
        targets = list(self.targets.values())
        answers = await asyncio.gather(
            *(t.runtime.list_owned() for t in targets), return_exceptions=True
        )
        owned: list[OwnedWorkload] = []
        for target, answer in zip(targets, answers, strict=True):
            if isinstance(answer, BaseException):
                why = answer.message if isinstance(answer, PodwardenError) else repr(answer)
                raise RuntimeUnavailable(f"target {target.name}: {why}") from answer
            owned += self._listed(target, answer)
        return owned

    def _listed(self, target: Target, workloads: list[OwnedWorkload]) -> list[OwnedWorkload]:
        """A target's listed workloads, tagged with it and counted there."""
        listed = []
        for w in workloads:
            listed.append(dataclasses.replace(w, handle=tag(w.handle, target.name, w.session_id)))
            if w.session_id not in self._placed:
                target.sessions[w.session_id] = w.user
                self._placed[w.session_id] = target.name
        return listed

    async def list_reachable(self) -> tuple[list[OwnedWorkload], set[str]]:
        """``list_owned`` of every target that answers within ``target_lost_after``, and
        the names of those that do not: they are marked lost at once (recovery keeps
        their stored sessions as unreachable instead of calling them vanished)."""
        targets = list(self.targets.values())

        async def listed(target: Target) -> list[OwnedWorkload]:
            return await asyncio.wait_for(target.runtime.list_owned(), self.target_lost_after)

        answers = await asyncio.gather(*(listed(t) for t in targets), return_exceptions=True)
        owned: list[OwnedWorkload] = []
        unlisted: set[str] = set()
        for target, answer in zip(targets, answers, strict=True):
            if isinstance(answer, BaseException):
                if isinstance(answer, TimeoutError):
                    why = f"no answer within {self.target_lost_after:g}s"
                elif isinstance(answer, PodwardenError):
                    why = answer.message
                else:
                    why = repr(answer)
                target.last_error = f"cannot list its workloads: {why}"
                target.failing_since = self._clock()
                self._set_state(target, TargetState.LOST)
                unlisted.add(target.name)
                continue
            owned += self._listed(target, answer)
        return owned, unlisted

    def remember(self, handle: WorkloadHandle, session_id: str, user: str) -> None:
        """Count a stored session on its target without listing it (the target is lost)."""
        target = self._route(handle)
        target.sessions[session_id] = user
        self._placed[session_id] = target.name

    # ------------------------------------------------------------------ health
    def health(self) -> RuntimeHealth:
        workloads = 0
        unknown = False
        problems = []
        for target in self.targets.values():
            child = target.runtime.health()
            if child.workloads is None:
                unknown = True
            else:
                workloads += child.workloads
            if target.state is not TargetState.HEALTHY:
                problems.append(f"{target.name} {target.state.value}: {target.last_error}")
            elif not child.ok:
                problems.append(f"{target.name}: {child.detail}")
        if problems:
            return RuntimeHealth(False, "; ".join(problems), None if unknown else workloads)
        names = ", ".join(self.targets)
        return RuntimeHealth(True, f"targets {names}", None if unknown else workloads)

    def target_health(self) -> list[dict[str, Any]]:
        """Each target's state, latency and last contact (for ``/health``)."""
        return [t.to_dict() for t in self.targets.values()]

    # ------------------------------------------------------------------ heartbeats
    def start_heartbeats(self) -> None:
        """Check every target now and every ``heartbeat_interval`` after (a named task)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._heartbeats(), name="podwarden: target heartbeats"
            )

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self.heartbeat_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the heartbeats
                log.exception("target heartbeat round failed")
            await asyncio.sleep(self.heartbeat_interval)

    async def heartbeat_once(self) -> None:
        """One round: every target checked at once, each within ``heartbeat_interval``."""
        await asyncio.gather(*(self._beat(t) for t in self.targets.values()))

    async def _beat(self, target: Target) -> None:
        started = time.monotonic()
        error = ""
        try:
            ping = getattr(target.runtime, "ping", None)
            if ping is not None:
                await asyncio.wait_for(ping(), max(self.heartbeat_interval, 0.1))
            else:
                child = target.runtime.health()
                if not child.ok:
                    error = child.detail or "not healthy"
        except TimeoutError:
            error = f"no answer within {self.heartbeat_interval:g}s"
        except PodwardenError as e:
            error = e.message
        except Exception as e:  # a library error from the ping: the target's, not ours
            error = repr(e)
        latency = time.monotonic() - started
        now = self._clock()
        target.heartbeats += 1
        if not error:
            target.latency_s = latency
            target.last_contact = now
            target.last_error = ""
            target.failing_since = None
            slow = latency > self.degraded_latency
            if slow:
                target.last_error = f"heartbeat took {latency * 1000:.0f} ms"
            self._set_state(target, TargetState.DEGRADED if slow else TargetState.HEALTHY)
            return
        target.heartbeat_failures += 1
        target.last_error = error
        if target.failing_since is None:
            target.failing_since = now
        since = target.last_contact if target.last_contact is not None else target.failing_since
        lost = now - since >= self.target_lost_after
        self._set_state(target, TargetState.LOST if lost else TargetState.DEGRADED)

    def _set_state(self, target: Target, state: TargetState) -> None:
        previous = target.state
        if state is previous:
            return
        target.state = state
        detail = f" ({target.last_error})" if target.last_error else ""
        if target.latency_s is not None and state is not TargetState.LOST:
            detail += f", latency {target.latency_s * 1000:.0f} ms"
        log.warning("target %s: %s -> %s%s", target.name, previous.value, state.value, detail)
        if self.bus is not None:
            self.bus.publish(
                EventKind.TARGET_STATE,
                f"target {target.name} is {state.value} (was {previous.value}){detail}",
                target=target.name,
                state=state.value,
                previous=previous.value,
                latency_ms=None if target.latency_s is None else round(target.latency_s * 1000, 3),
                last_contact=target.last_contact,
            )
        if state is TargetState.LOST and self._on_lost is not None:
            self._on_lost(target.name, target.last_error)
        elif previous is TargetState.LOST and self._on_back is not None:
            self._on_back(target.name)
        if TargetState.LOST in (state, previous):
            self._freed()

    async def close(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(
            *(t.runtime.close() for t in self.targets.values()), return_exceptions=True
        )


def _blames_target(error: PodwardenError) -> bool:
    """A failure that is the target's, not the template's: worth a try elsewhere."""
    return isinstance(error, RuntimeUnavailable) or is_target_fault(error.message)
