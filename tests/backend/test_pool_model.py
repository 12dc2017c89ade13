"""A model-based test of the pool: random steps against a small reference model.

Hypothesis drives the real pool (in-memory runtime, real SQLite store, a clock the test
moves) through acquires of several users and templates (reuse on or off), deletes,
workload deaths and hangs, clock advances, liveness and refresh rounds, pins and unpins,
and restarts (a new backend over the same store and the same still-running workloads).
After every step the pool must agree with the model: the same live sessions, capacity
and the per-user quota held, one reusable session per (user, template), the least
recently used *unpinned* session evicted (and, with every session pinned, the acquire
refused, never a pinned session evicted), pins kept across restarts, ``is_new_session``
true exactly when the answer's workload had not been handed out before, and no waiter
left waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from backend.config import Settings
from backend.errors import CapacityError, QuotaExceeded
from backend.models import SessionState
from backend.runtime.memory import MemoryRuntime
from backend.runtime.procs import read_proc
from backend.service import Backend
from backend.templates import builtin_templates
from tests.backend.conftest import free_port_range
from tests.backend.test_local_pool import workload_pids

USERS = ("ana", "bo", "cy", "di")
TEMPLATES = ("demo", "alt")
CAPACITY = 3
QUOTA = 2
LIVENESS = 5.0


@dataclass
class Model:
    """What the pool should hold: live sessions and what each answer must say."""

    user: str
    template: str
    primary: bool
    last_used: float
    checked: float
    announced: bool = True
    dead: bool = False
    pinned: bool = False


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.settings = Settings(state_dir=Path(self.tmp.name) / "state")
        pool = self.settings.pool
        pool.max_sessions, pool.max_sessions_per_user = CAPACITY, QUOTA
        pool.liveness_interval, pool.refresh_interval = LIVENESS, 3600
        pool.start_backoff = 0.0
        pool.queue_timeout = 0.02  # every session pinned: the acquire is refused soon
        demo = self.settings.templates["demo"]
        self.settings.templates = {"demo": demo, "alt": dataclasses.replace(demo, name="alt")}
        self.settings.tunnels.port_min, self.settings.tunnels.port_max = free_port_range(100)
        self.runtime = MemoryRuntime()
        self.now = 1000.0
        self.model: dict[str, Model] = {}
        self.backend = self._start()

    # ----------------------------------------------------------------- plumbing

    def _run(self, coro: object) -> object:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def _start(self) -> Backend:
        backend = Backend(self.settings, runtime=self.runtime)
        backend.pool.clock = lambda: self.now
        self._run(backend.start())
        # Liveness rounds are rules (``liveness_round``): the background loop would run
        # them on its own real-time timer against the model's clock, between any two
        # steps, whenever an example runs longer than its period (real processes, load).
        self._run(backend.liveness.stop())
        backend.refresher._retry_delay = 0.0
        return backend

    def _settle(self) -> None:
        """Let background recycles and stops finish."""
        for _ in range(50):
            self._run(asyncio.sleep(0))
        pool = self.backend.pool
        pending = [r.flight.future for r in pool._records.values() if r.flight is not None]
        stops = [r.stop_task for r in pool._records.values() if r.stop_task is not None]
        if pending or stops:
            self._run(asyncio.gather(*pending, *stops, return_exceptions=True))

    def teardown(self) -> None:
        self._run(self.backend.stop(stop_sessions=True))
        self.loop.close()
        self.tmp.cleanup()

    def _primary(self, user: str, template: str) -> str | None:
        for sid, m in self.model.items():
            if m.user == user and m.template == template and m.primary:
                return sid
        return None

    def _recycle_in_model(self, sid: str) -> None:
        m = self.model[sid]
        m.dead, m.announced, m.checked = False, False, self.now

    # ----------------------------------------------------------------- rules

    @rule(
        user=st.sampled_from(USERS),
        template=st.sampled_from(TEMPLATES),
        reuse=st.booleans(),
    )
    def acquire(self, user: str, template: str, reuse: bool) -> None:
        self.now += 1
        pool = self.backend.pool
        primary = self._primary(user, template) if reuse else None
        if primary is not None:
            m = self.model[primary]
            if self.now - m.checked > LIVENESS:
                if m.dead:
                    self._recycle_in_model(primary)
                else:
                    m.checked = self.now
            result = self._run(asyncio.wait_for(pool.acquire(user, template, reuse=True), 5))
            assert result.session.session_id == primary  # type: ignore[attr-defined]
            expected_new = not m.announced
            assert result.is_new_session is expected_new  # type: ignore[attr-defined]
            m.announced, m.last_used = True, self.now
            return
        held = sum(1 for m in self.model.values() if m.user == user)
        if held >= QUOTA:
            try:
                self._run(pool.acquire(user, template, reuse=reuse))
            except QuotaExceeded:
                return
            raise AssertionError("a user at the quota was not refused")
        victim = None
        if len(self.model) >= CAPACITY:
            unpinned = [sid for sid, m in self.model.items() if not m.pinned]
            if not unpinned:
                try:
                    self._run(asyncio.wait_for(pool.acquire(user, template, reuse=reuse), 5))
                except CapacityError as e:
                    assert not isinstance(e, QuotaExceeded)
                    event("refused: every session pinned")
                    return
                raise AssertionError("a pinned session was evicted, or capacity exceeded")
            victim = min(unpinned, key=lambda sid: self.model[sid].last_used)
            if len(unpinned) < len(self.model):
                event("evicted past a pinned session")
        result = self._run(asyncio.wait_for(pool.acquire(user, template, reuse=reuse), 5))
        session = result.session  # type: ignore[attr-defined]
        assert result.is_new_session is True  # type: ignore[attr-defined]
        assert session.state is SessionState.READY and session.session_id not in self.model
        if victim is not None:
            assert pool.get(victim).state in (SessionState.TERMINATING, SessionState.TERMINATED)
            del self.model[victim]
        self.model[session.session_id] = Model(
            user,
            template,
            primary=reuse or self._primary(user, template) is None,
            last_used=self.now,
            checked=self.now,
        )
        self._settle()

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100))
    def delete(self, pick: int) -> None:
        sid = sorted(self.model)[pick % len(self.model)]
        self._run(self.backend.pool.terminate(sid))
        del self.model[sid]

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100))
    def workload_dies(self, pick: int) -> None:
        """The runtime notices and says so: the pool recycles at once."""
        sid = sorted(self.model)[pick % len(self.model)]
        if self.model[sid].dead:
            return

        async def kill() -> None:  # the runtime calls back from inside the loop
            self.runtime.kill(sid)

        self._run(kill())
        self._settle()
        self._recycle_in_model(sid)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100))
    def workload_hangs(self, pick: int) -> None:
        """Dead without a word: only a probe finds out."""
        sid = sorted(self.model)[pick % len(self.model)]
        self.runtime.workloads[sid].alive = False
        self.model[sid].dead = True

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100), pinned=st.sampled_from((True, True, True, False)))
    def pin_or_unpin(self, pick: int, pinned: bool) -> None:
        sid = sorted(self.model)[pick % len(self.model)]
        pool = self.backend.pool
        session = pool.pin(sid) if pinned else pool.unpin(sid)
        assert session.pinned is pinned
        self.model[sid].pinned = pinned

    @precondition(lambda self: self.model)
    @rule()
    def pin_every_session(self) -> None:
        """An operator pins the whole pool: a full pool must then refuse, never evict."""
        for sid, m in self.model.items():
            assert self.backend.pool.pin(sid).pinned
            m.pinned = True

    @rule(seconds=st.integers(1, 12))
    def clock_advances(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def liveness_round(self) -> None:
        self._run(self.backend.liveness.check_round())
        self._settle()
        for sid, m in self.model.items():
            if m.checked <= self.now - LIVENESS / 2:
                if m.dead:
                    self._recycle_in_model(sid)
                else:
                    m.checked = self.now

    @rule()
    def refresh_round(self) -> None:
        self._run(self.backend.refresher.refresh_round())
        self._settle()
        for sid, m in self.model.items():
            if m.dead:
                self._recycle_in_model(sid)
            else:
                m.checked = self.now

    @rule()
    def restart(self) -> None:
        self._run(self.backend.stop())
        self.backend = self._start()
        for sid in [sid for sid, m in self.model.items() if m.dead]:
            del self.model[sid]  # found dead at recovery: stopped, and shown as vanished
        for m in self.model.values():
            m.checked, m.announced = self.now, True

    # ----------------------------------------------------------------- invariants

    @invariant()
    def pool_agrees_with_the_model(self) -> None:
        pool = self.backend.pool
        live = {s.session_id: s for s in pool.list() if s.state.is_live}
        assert set(live) == set(self.model), "no session lost or duplicated"
        for sid, m in self.model.items():
            assert (live[sid].user, live[sid].template) == (m.user, m.template)
            assert live[sid].state is SessionState.READY
            assert live[sid].pinned is m.pinned, "pins held, also across restarts"
        assert pool.active_count == len(self.model) <= CAPACITY
        for user in USERS:
            assert pool.user_count(user) <= QUOTA
        keys = [(m.user, m.template) for m in self.model.values() if m.primary]
        assert len(keys) == len(set(keys)), "one reusable session per (user, template)"
        assert pool.queued == 0, "nobody waits while they could be served"


PoolMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_pool_keeps_its_promises = PoolMachine.TestCase


class LocalPoolMachine(PoolMachine):
    """The same machine on the local runtime: real processes, killed and stopped for real.

    A restart happens only while no workload is stopped: a stopped process is alive to
    recovery, which then waits for its readiness (up to the ready timeout), a path the
    field case tests cover on their own.
    """

    def _start(self) -> Backend:
        if not hasattr(self, "local_ready"):
            self.local_ready = True
            demo = builtin_templates()["demo"]
            demo.login_delay = 0.0
            alt = dataclasses.replace(demo, name="alt")
            self.settings.templates = {"demo": demo, "alt": alt}
            self.settings.pool.stop_grace = 1.0
        backend = Backend(self.settings)
        backend.pool.clock = lambda: self.now
        self._run(backend.start())
        self._run(backend.liveness.stop())  # rounds are rules here too (see above)
        backend.refresher._retry_delay = 0.0
        return backend

    def _pid(self, sid: str) -> int:
        handle = self.backend.pool.get(sid).handle
        assert handle is not None
        return int(handle.ref)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100))
    def workload_dies(self, pick: int) -> None:
        sid = sorted(self.model)[pick % len(self.model)]
        if self.model[sid].dead:
            return
        pid = self._pid(sid)
        os.kill(pid, signal.SIGKILL)

        async def recycled() -> None:  # the runtime notices the exit and the pool recycles
            async with asyncio.timeout(15):
                while True:
                    session = self.backend.pool.get(sid)
                    handle = session.handle
                    if session.state is SessionState.READY and handle and int(handle.ref) != pid:
                        return
                    await asyncio.sleep(0.01)

        self._run(recycled())
        self._settle()
        self._recycle_in_model(sid)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100))
    def workload_hangs(self, pick: int) -> None:
        sid = sorted(self.model)[pick % len(self.model)]
        if self.model[sid].dead:
            return
        pid = self._pid(sid)
        os.kill(pid, signal.SIGSTOP)

        async def stopped() -> None:  # SIGSTOP lands when the process next runs
            async with asyncio.timeout(10):
                while (info := read_proc(pid)) is None or info.state not in ("T", "t"):
                    await asyncio.sleep(0.01)

        self._run(stopped())
        self.model[sid].dead = True

    @precondition(lambda self: not any(m.dead for m in self.model.values()))
    @rule()
    def restart(self) -> None:
        super().restart()

    def teardown(self) -> None:
        for session in self.backend.pool.list():
            if session.handle is not None and session.state.is_live:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(session.handle.ref), signal.SIGCONT)
        super().teardown()
        assert workload_pids(self.settings.state_dir) == set(), "a workload outlived its pool"


LocalPoolMachine.TestCase.settings = settings(
    max_examples=10,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_pool_keeps_its_promises_with_real_processes = LocalPoolMachine.TestCase
