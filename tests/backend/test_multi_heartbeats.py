"""Target heartbeats: healthy, degraded, lost and back, in /health, /metrics and events.

The children are in-memory runtimes whose ``unhealthy`` flag stands for a failing API;
the runtime's clock is faked, so "lost after 15 s" takes no time. Heartbeat rounds are run
by the test (``heartbeat_once``); the background loop's interval is set out of the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from backend.api.app import make_api
from backend.config import Settings
from backend.errors import NoTarget
from backend.events import EventKind
from backend.runtime.base import OwnedWorkload
from backend.runtime.memory import MemoryRuntime
from backend.runtime.multi import MultiRuntime, Target, TargetState
from backend.service import Backend
from tests.backend.api.conftest import AUTH, TOKEN


class SlowPing(MemoryRuntime):
    """A child whose heartbeat takes ``delay`` seconds (a slow API server)."""

    delay = 0.0

    async def ping(self) -> None:
        await asyncio.sleep(self.delay)
        if self.unhealthy:
            raise_unavailable()

    async def list_owned(self) -> list[OwnedWorkload]:
        if self.unhealthy:
            raise_unavailable()
        return await super().list_owned()


def raise_unavailable() -> None:
    from backend.errors import RuntimeUnavailable

    raise RuntimeUnavailable("connection refused")


class World:
    def __init__(self, settings: Settings, *, persist: bool = False) -> None:
        self.now = 1000.0
        self.east, self.west = SlowPing(), SlowPing()
        self.runtime = MultiRuntime(
            [Target("east", self.east, 3), Target("west", self.west, 2)],
            heartbeat_interval=3600,
            degraded_latency=0.05,
            target_lost_after=15,
            clock=lambda: self.now,
        )
        settings.pool.max_sessions = 5
        self.backend = Backend(settings, runtime=self.runtime, persist=persist)


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    w = World(settings)
    await w.backend.start()
    yield w
    await w.backend.stop(stop_sessions=True)


@pytest.fixture
async def api(world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_api(world.backend, TOKEN))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://podwarden.test", headers=AUTH
    ) as client:
        yield client


async def test_a_failing_target_goes_degraded_then_lost_then_back(world: World) -> None:
    runtime, backend = world.runtime, world.backend
    await runtime.heartbeat_once()
    assert [t["state"] for t in backend.health().targets] == ["healthy", "healthy"]
    assert backend.health().max_sessions == 5
    with backend.bus.subscribe(kinds={EventKind.TARGET_STATE}) as sub:
        world.east.unhealthy = True
        world.now += 5
        await runtime.heartbeat_once()
        degraded = await asyncio.wait_for(sub.get(), 5)
        world.now += 11  # 16 s since the last contact
        await runtime.heartbeat_once()
        lost = await asyncio.wait_for(sub.get(), 5)
        assert degraded is not None and lost is not None
        assert degraded.data == {
            "target": "east",
            "state": "degraded",
            "previous": "healthy",
            "latency_ms": degraded.data["latency_ms"],
            "last_contact": 1000.0,
        }
        assert "target east is degraded (was healthy) (connection refused)" in degraded.message
        assert lost.data["state"] == "lost" and lost.data["previous"] == "degraded"
        health = backend.health()
        east = health.targets[0]
        assert (east["name"], east["state"], east["last_contact"]) == ("east", "lost", 1000.0)
        assert east["last_error"] == "connection refused"
        assert health.max_sessions == 2, "the lost target's capacity left the total"
        assert health.session_capacity == "0/2"
        assert health.status == "degraded"
        assert any("east lost" in r for r in health.degraded_reasons)
        placed = await backend.pool.acquire("ada")
        assert placed.session.handle is not None
        assert placed.session.handle.extra["target"] == "west"
        world.east.unhealthy = False
        world.now += 5
        await runtime.heartbeat_once()
        back = await asyncio.wait_for(sub.get(), 5)
        assert back is not None and back.data["state"] == "healthy"
        assert back.data["previous"] == "lost"
    assert backend.health().max_sessions == 5


async def test_a_slow_target_is_degraded(world: World) -> None:
    world.west.delay = 0.1
    await world.runtime.heartbeat_once()
    west = world.runtime.targets["west"]
    assert west.state is TargetState.DEGRADED and west.latency_s is not None
    assert west.latency_s >= 0.1 and "heartbeat took" in west.last_error
    world.west.delay = 0.0
    await world.runtime.heartbeat_once()
    assert west.state is TargetState.HEALTHY


async def test_with_every_target_lost_an_acquire_is_a_503_with_retry_after(
    world: World, api: httpx.AsyncClient
) -> None:
    ready = await api.post("/sessions", json={"user": "ada"})
    assert ready.status_code == 200
    world.east.unhealthy = world.west.unhealthy = True
    world.now += 20
    await world.runtime.heartbeat_once()
    await world.runtime.heartbeat_once()
    assert world.runtime.all_lost
    for body in ({"user": "ada"}, {"user": "bob"}, {"user": "cyd", "wait": False}):
        answer = await asyncio.wait_for(api.post("/sessions", json=body), 5)
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        error = answer.json()["error"]
        assert error["code"] == "no_target" and "every target is lost" in error["message"]
    with pytest.raises(NoTarget):
        await world.backend.pool.acquire("ada")
    health = (await api.get("/health")).json()
    assert [t["state"] for t in health["targets"]] == ["lost", "lost"]
    assert health["status"] == "degraded"


async def test_metrics_carry_every_targets_state_and_latency(
    world: World, api: httpx.AsyncClient
) -> None:
    await world.runtime.heartbeat_once()
    text = (await api.get("/metrics")).text
    assert 'podwarden_target_state{state="healthy",target="east"} 1.0' in text
    assert 'podwarden_target_state{state="lost",target="east"} 0.0' in text
    assert 'podwarden_target_max_sessions{target="west"} 2.0' in text
    assert 'podwarden_target_latency_seconds{target="east"}' in text
    assert 'podwarden_target_heartbeats_total{outcome="ok",target="east"}' in text


async def test_an_eviction_makes_room_on_the_victims_target(settings: Settings) -> None:
    east, west = MemoryRuntime(), MemoryRuntime()
    runtime = MultiRuntime([Target("east", east, 1), Target("west", west, 1)])
    settings.pool.max_sessions = 2
    backend = Backend(settings, runtime=runtime, persist=False)
    await backend.start()
    try:
        first = await backend.pool.acquire("ada")
        assert first.session.handle is not None
        home = first.session.handle.extra["target"]
        await backend.pool.acquire("bob")
        third = await asyncio.wait_for(backend.pool.acquire("cyd"), 5)
        assert first.session.state.value == "terminated", "ada's was the LRU"
        assert third.session.handle is not None
        assert third.session.handle.extra["target"] == home
        assert len(east.workloads) == len(west.workloads) == 1
    finally:
        await backend.stop(stop_sessions=True)
