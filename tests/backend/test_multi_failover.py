"""Failover: a lost target's sessions are unreachable; a reuse waits, then moves.

In-memory children and a faked heartbeat clock, as in ``test_multi_heartbeats``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from backend.config import Settings
from backend.events import EventKind
from backend.models import SessionState
from tests.backend.test_multi_heartbeats import World


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    settings.runtime.failover_wait = 0.2
    w = World(settings)
    await w.backend.start()
    yield w
    await w.backend.stop(stop_sessions=True)


async def lose_east(world: World) -> None:
    await world.runtime.heartbeat_once()  # a last good contact
    world.east.unhealthy = True
    world.now += 20
    await world.runtime.heartbeat_once()
    await world.runtime.heartbeat_once()
    assert world.runtime.targets["east"].state.value == "lost"


async def bring_back_east(world: World) -> None:
    world.east.unhealthy = False
    world.now += 1
    await world.runtime.heartbeat_once()
    assert world.runtime.targets["east"].state.value == "healthy"


async def test_a_reuse_on_a_lost_target_fails_over_and_the_old_one_goes_on_return(
    world: World,
) -> None:
    pool, bus = world.backend.pool, world.backend.bus
    first = await pool.acquire("ada")
    sid = first.session.session_id
    assert first.session.handle is not None and first.session.handle.extra["target"] == "east"
    kinds = {EventKind.UNREACHABLE, EventKind.FAILED_OVER, EventKind.CLEANUP_VERIFIED}
    with bus.subscribe(kinds=kinds) as sub:
        await lose_east(world)
        unreachable = await asyncio.wait_for(sub.get(), 5)
        assert unreachable is not None and unreachable.session_id == sid
        session = pool.get(sid)
        assert session.state is SessionState.UNREACHABLE
        assert "target east is lost" in (session.last_error or "")
        assert world.backend.health().persistent_sessions == 0, "not ready"

        again = await asyncio.wait_for(pool.acquire("ada"), 5)
        moved = await asyncio.wait_for(sub.get(), 5)
        assert moved is not None and moved.kind is EventKind.FAILED_OVER
        assert again.is_new_session, "its login state is gone: the client must know"
        assert again.session.session_id == sid and again.session.state is SessionState.READY
        assert again.session.handle is not None
        assert again.session.handle.extra["target"] == "west"
        assert sid in world.west.workloads and sid in world.east.workloads
        assert len(pool.replaced) == 1

        await bring_back_east(world)
        cleaned = await asyncio.wait_for(sub.get(), 5)
        assert cleaned is not None and cleaned.kind is EventKind.CLEANUP_VERIFIED
    assert sid not in world.east.workloads and sid in world.west.workloads, "no duplicate"
    assert pool.replaced == []
    assert pool.get(sid).state is SessionState.READY
    reuse = await pool.acquire("ada")
    assert not reuse.is_new_session and reuse.session.handle is not None
    assert reuse.session.handle.extra["target"] == "west"


async def test_a_target_back_within_failover_wait_keeps_the_session(world: World) -> None:
    pool = world.backend.pool
    world.backend.settings.runtime.failover_wait = 30
    first = await pool.acquire("ada")
    await lose_east(world)
    waiting = asyncio.ensure_future(pool.acquire("ada"))
    await asyncio.sleep(0)
    assert not waiting.done()
    with world.backend.bus.subscribe(kinds={EventKind.REACHABLE}) as sub:
        await bring_back_east(world)
        back = await asyncio.wait_for(sub.get(), 5)
    assert back is not None and back.session_id == first.session.session_id
    again = await asyncio.wait_for(waiting, 5)
    assert again.session.session_id == first.session.session_id
    assert not again.is_new_session, "the same workload, as it was"
    assert len(world.east.workloads) == 1 and not world.west.workloads


async def test_new_sessions_go_elsewhere_while_a_target_is_lost(world: World) -> None:
    await lose_east(world)
    result = await world.backend.pool.acquire("bob")
    assert result.session.handle is not None and result.session.handle.extra["target"] == "west"


async def test_a_restart_during_an_outage_keeps_the_lost_targets_sessions(
    settings: Settings,
) -> None:
    first = World(settings, persist=True)
    await first.backend.start()
    sessions = {
        r.session.user: r.session
        for r in [await first.backend.pool.acquire(user) for user in ("ada", "bob", "cyd")]
    }
    where = {u: s.handle.extra["target"] for u, s in sessions.items() if s.handle}
    assert sorted(where.values()) == ["east", "east", "west"]
    ports = {u: s.tunnel.port for u, s in sessions.items() if s.tunnel}
    await first.backend.stop()  # the workloads keep running, the store keeps the sessions

    first.east.unhealthy = True  # east does not answer when podwarden comes back
    second = World(settings, persist=True)
    second.east, second.west = first.east, first.west
    for name, child in (("east", first.east), ("west", first.west)):
        second.runtime.targets[name].runtime = child
    second.backend = type(first.backend)(settings, runtime=second.runtime)
    await asyncio.wait_for(second.backend.start(), 10)
    try:
        pool = second.backend.pool
        report = second.backend.recovery
        assert report is not None
        east_users = {u for u, t in where.items() if t == "east"}
        assert {pool.get(sessions[u].session_id).state for u in east_users} == {
            SessionState.UNREACHABLE
        }
        assert set(report.unreachable) == {sessions[u].session_id for u in east_users}
        assert second.runtime.targets["east"].state.value == "lost"
        west_user = next(u for u, t in where.items() if t == "west")
        reuse = await pool.acquire(west_user)
        assert not reuse.is_new_session

        with second.backend.bus.subscribe(kinds={EventKind.TUNNEL_OPENED}) as sub:
            first.east.unhealthy = False
            await second.runtime.heartbeat_once()
            for _ in east_users:
                await asyncio.wait_for(sub.get(), 5)
        for user in east_users:
            again = await pool.acquire(user)
            assert again.session.session_id == sessions[user].session_id
            assert not again.is_new_session, "re-adopted as it was"
            assert again.session.tunnel is not None
            assert again.session.tunnel.port == ports[user]
    finally:
        await second.backend.stop(stop_sessions=True)
    assert not first.east.workloads and not first.west.workloads


async def test_a_delete_during_the_outage_is_queued_and_verified_on_return(
    world: World,
) -> None:
    pool, bus = world.backend.pool, world.backend.bus
    first = await pool.acquire("ada")
    sid = first.session.session_id
    await lose_east(world)
    with bus.subscribe(kinds={EventKind.DELETE_QUEUED, EventKind.CLEANUP_VERIFIED}) as sub:
        pool.delete(sid)  # the API answers 202 here
        queued = await asyncio.wait_for(sub.get(), 5)
        assert queued is not None and queued.kind is EventKind.DELETE_QUEUED
        session = pool.get(sid)
        assert session.state is SessionState.TERMINATING
        assert session.phase == "delete queued: target east is lost"
        assert sid in world.east.workloads, "nothing reached the lost target"
        await bring_back_east(world)
        verified = await asyncio.wait_for(sub.get(), 5)
        assert verified is not None and verified.kind is EventKind.CLEANUP_VERIFIED
    assert not world.east.workloads
    assert pool.get(sid).state is SessionState.TERMINATED


def restarted(first: World, settings: Settings) -> World:
    """A second podwarden on the same children and state directory."""
    second = World(settings, persist=True)
    second.east, second.west = first.east, first.west
    for name, child in (("east", first.east), ("west", first.west)):
        second.runtime.targets[name].runtime = child
    second.backend = type(first.backend)(settings, runtime=second.runtime)
    return second


async def test_a_queued_delete_survives_a_restart_during_the_outage(settings: Settings) -> None:
    first = World(settings, persist=True)
    await first.backend.start()
    sid = (await first.backend.pool.acquire("ada")).session.session_id
    await lose_east(first)
    first.backend.pool.delete(sid)
    await first.backend.stop()  # the queued stop is left to the next start
    assert sid in first.east.workloads

    second = restarted(first, settings)
    await asyncio.wait_for(second.backend.start(), 10)
    try:
        assert second.backend.pool.get(sid).state is SessionState.TERMINATING
        with second.backend.bus.subscribe(kinds={EventKind.CLEANUP_VERIFIED}) as sub:
            first.east.unhealthy = False
            await second.runtime.heartbeat_once()
            verified = await asyncio.wait_for(sub.get(), 5)
        assert verified is not None and verified.session_id == sid
        assert not first.east.workloads
        assert second.backend.store is not None
        record = second.backend.pool.record(sid)
        if record is not None and record.stop_task is not None:
            await record.stop_task
        await second.backend.store.flush()
        assert sid not in {s.session_id for s in second.backend.store.load_sessions()}
    finally:
        await second.backend.stop(stop_sessions=True)


async def test_a_workload_replaced_during_the_outage_goes_after_a_restart(
    settings: Settings,
) -> None:
    settings.runtime.failover_wait = 0.0
    first = World(settings, persist=True)
    await first.backend.start()
    sid = (await first.backend.pool.acquire("ada")).session.session_id
    await lose_east(first)
    moved = await first.backend.pool.acquire("ada")
    assert moved.is_new_session and sid in first.west.workloads and sid in first.east.workloads
    await first.backend.stop()

    first.east.unhealthy = False  # east is back by the time podwarden restarts
    second = restarted(first, settings)
    with second.backend.bus.subscribe(kinds={EventKind.CLEANUP_VERIFIED}) as sub:
        await asyncio.wait_for(second.backend.start(), 10)
        try:
            verified = await asyncio.wait_for(sub.get(), 5)
            assert verified is not None and verified.session_id == sid
            assert sid not in first.east.workloads and sid in first.west.workloads
            session = second.backend.pool.get(sid)
            assert session.handle is not None and session.handle.extra["target"] == "west"
            assert second.backend.pool.replaced == []
        finally:
            await second.backend.stop(stop_sessions=True)
