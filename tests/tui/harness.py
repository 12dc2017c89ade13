"""A deterministic pool for TUI tests: in-memory runtime, fixed clock, fixed ids.

Everything a screenshot shows is pinned here: the clock (pool, events and console read
the same fake one), the session ids (a counter instead of random hex), the templates (not
the built-in ones, which depend on what is installed) and the wall-clock zone (UTC).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.worker import WorkerState

from backend.client import LocalClient
from backend.config import Settings
from backend.models import SessionState, WorkloadHandle, WorkloadUsage
from backend.runtime.base import PhaseCallback, ResourceReport, ResourceTotals, WorkloadSpec
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend
from backend.templates import Template
from tui.app import PodwardenApp, make_app
from tui.settings import TuiSettings

T0 = 1_767_268_800.0
"""2026-01-01 12:00:00 UTC: where every test clock starts."""


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _FakeTime:
    """Stands in for the ``time`` module where the backend stamps events and durations."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock()

    def monotonic(self) -> float:
        return self._clock()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class PortedRuntime(MemoryRuntime):
    """The memory runtime, but its workloads "listen" on their template's port."""

    async def start(self, spec: WorkloadSpec, on_phase: PhaseCallback) -> WorkloadHandle:
        handle = await super().start(spec, on_phase)
        handle = replace(handle, port=spec.template.port)
        self.workloads[spec.session_id].handle = handle
        return handle


class EmbeddedLife:
    """Starts and stops the embedded backend inside the app's event loop."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.stopped = False

    async def start(self) -> None:
        await self.backend.start()

    async def stop(self) -> None:
        self.stopped = True
        await self.backend.stop()


@dataclass
class Pool:
    """A backend on the memory runtime, its client, and a console over it."""

    backend: Backend
    runtime: MemoryRuntime
    client: LocalClient
    clock: FakeClock
    life: EmbeddedLife
    tui: TuiSettings
    apps: list[PodwardenApp] = field(default_factory=list)

    def app(self, **changes: Any) -> PodwardenApp:
        for key, value in changes.items():
            setattr(self.tui, key, value)
        app = make_app(self.client, self.tui, self.life)
        self.apps.append(app)
        return app

    async def acquire(self, user: str, template: str = "demo", **kw: Any) -> dict[str, Any]:
        return await self.client.acquire(user, template, **kw)

    async def mixed(self) -> dict[str, str]:
        """Ready, refreshing, failed and starting sessions, with distinct ages."""
        ids = {}
        for user, template in (("alice", "demo"), ("bob", "demo"), ("carol", "chromium")):
            ids[user] = (await self.acquire(user, template))["session_id"]
            self.clock.advance(95)
        self.backend.pool.get(ids["bob"]).transition(SessionState.REFRESHING)
        self.runtime.fail_starts["demo"] = 3
        try:
            await self.acquire("dave")
        except Exception:
            pass
        ids["dave"] = next(s.session_id for s in self.backend.pool.list() if s.user == "dave")
        self.clock.advance(30)
        self.runtime.ready_gate = asyncio.Event()
        ids["erin"] = (await self.acquire("erin", wait=False))["session_id"]
        await asyncio.sleep(0)
        self.clock.advance(12)
        await self.acquire("alice")  # a reuse: alice's use count goes to 2
        self.clock.advance(3)
        return ids

    async def resources(self, ids: dict[str, str], scope: str = "host") -> None:
        """Resource figures for the mixed pool's sessions, as the local runtime (``host``,
        measured) or a cluster without metrics (``cluster``, requested) would report them,
        taken by one sampler round."""
        GiB, MiB = 1 << 30, 1 << 20
        if scope == "host":
            per_user = {
                "alice": (3.2, 120 * MiB),
                "bob": (0.4, 88 * MiB),
                "carol": (57.0, 1300 * MiB),
                "erin": (96.0, 40 * MiB),
            }
            source = "measured"
            totals = ResourceTotals("host", "measured", 2.0, 0.46, 8 * GiB, 3300 * MiB)
        else:
            per_user = {u: (25.0, 512 * MiB) for u in ("alice", "bob", "erin")}
            per_user["carol"] = (100.0, 2 * GiB)
            source = "requested"
            totals = ResourceTotals("cluster", "requested", 8.0, 1.75, 32 * GiB, 3584 * MiB)
        usage = {
            ids[user]: WorkloadUsage(cpu, memory, source)
            for user, (cpu, memory) in per_user.items()
        }
        self.runtime.resource_report = ResourceReport(usage, totals)
        assert await self.backend.resources.round()

    async def orphan(self, session_id: str, user: str = "mallory") -> None:
        """Start a workload behind the pool's back; the drift check lists it as an orphan."""
        spec = WorkloadSpec(session_id, user, self.backend.settings.templates["demo"], Path("."))
        await self.runtime.start(spec, lambda phase: None)
        await self.backend.check_drift()
        assert session_id in self.backend.orphans

    async def full(self, n: int = 10) -> None:
        """``n`` ready sessions of distinct users (the pool holds 10)."""
        for i in range(n):
            await self.acquire(f"user{i:02d}")
            self.clock.advance(7)


def build_pool(tmp_path: Path, monkeypatch: Any) -> Pool:
    """A fresh deterministic pool (not started: the console starts it in its loop)."""
    clock = FakeClock()
    counter = itertools.count(1)
    monkeypatch.setattr("backend.models.secrets.token_hex", lambda n=4: f"{next(counter):08x}")
    monkeypatch.setattr("backend.events.time", _FakeTime(clock))
    monkeypatch.setattr("backend.pool.time", _FakeTime(clock))  # "ready in 0.00s" etc.
    monkeypatch.setattr("backend.drain.time", _FakeTime(clock))  # "draining since"
    settings = Settings(state_dir=tmp_path / "state")
    settings.templates = {
        "demo": Template(name="demo", command=["demo"], port=3000),
        "chromium": Template(name="chromium", command=["chromium"], port=9222),
    }
    settings.pool.start_backoff = 0.0
    runtime = PortedRuntime()
    backend = Backend(settings, runtime=runtime, persist=False)
    runtime._logs = backend.logs
    backend.pool.clock = clock
    client = LocalClient(backend, api_address="127.0.0.1:5010")
    tui = TuiSettings(
        clock=clock,
        localtime=time.gmtime,
        cursor_blink=False,
        flush_interval=0.0,
        tick_interval=3600.0,
        resync_interval=3600.0,
    )
    return Pool(backend, runtime, client, clock, EmbeddedLife(backend), tui)


def _busy(app: PodwardenApp) -> list[Any]:
    return [
        w
        for w in app.workers
        if w.group != "events" and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
    ]


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until the console has started, drained its events and shown every change."""
    app = pilot.app
    assert isinstance(app, PodwardenApp)
    quiet = 0
    for _ in range(200):
        await pilot.pause()
        busy = _busy(app)
        if busy:
            await app.workers.wait_for_complete(busy)
            quiet = 0
            continue
        if app.started and app.is_quiet():
            quiet += 1
            if quiet >= 3:
                break
        else:
            quiet = 0
            await asyncio.sleep(0)
    await pilot.pause()


class FlakyClient:
    """A remote-looking client over a ``LocalClient`` whose event stream and calls fail
    while ``down`` is set; ``connects`` counts event-stream (re)connections."""

    def __init__(self, inner: LocalClient) -> None:
        self.inner = inner
        self.down = False
        self.connects = 0
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self.up = asyncio.Event()

    @property
    def address(self) -> str:
        return "http://backend.test:5010"

    @property
    def api_address(self) -> str | None:
        return "backend.test:5010"

    def _check(self) -> None:
        if self.down:
            from backend.errors import BackendUnreachable

            raise BackendUnreachable("cannot reach podwarden at http://backend.test:5010")

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return await method(*args, **kwargs)

        return call

    async def events(self, after: str | None = None) -> Any:
        self._check()
        self.connects += 1
        self.connected.set()
        async for event in self.inner.events(after):
            if self.down:
                self.lost.set()
                self._check()
            yield event

    async def close(self) -> None:
        await self.inner.close()
