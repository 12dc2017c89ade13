"""``MultiRuntime``: placement across targets, routing by handle, moves and re-adoption.

The children are in-memory runtimes here (the rules are about bookkeeping); the local
end-to-end test with real processes is ``test_multi_local.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.config import Settings
from backend.errors import InvalidRequest, StartError
from backend.events import EventKind
from backend.models import WorkloadHandle
from backend.runtime.base import PhaseCallback, WorkloadSpec
from backend.runtime.memory import MemoryRuntime
from backend.runtime.multi import MultiRuntime, Target
from backend.service import Backend
from backend.templates import Template


def memory_targets(
    *specs: tuple[str, int, float, dict[str, str]],
) -> tuple[MultiRuntime, dict[str, MemoryRuntime]]:
    children = {name: MemoryRuntime() for name, *_ in specs}
    targets = [
        Target(name, children[name], capacity, weight, labels)
        for name, capacity, weight, labels in specs
    ]
    return MultiRuntime(targets), children


async def started(settings: Settings, runtime: MultiRuntime) -> Backend:
    settings.pool.max_sessions = sum(t.capacity for t in runtime.targets.values())
    backend = Backend(settings, runtime=runtime, persist=False)
    await backend.start()
    return backend


async def test_hundred_concurrent_creates_spread_evenly_over_two_equal_targets(
    settings: Settings,
) -> None:
    runtime, children = memory_targets(("east", 60, 1.0, {}), ("west", 60, 1.0, {}))
    for child in children.values():
        child.start_delay = 0.01
    backend = await started(settings, runtime)
    try:
        results = await asyncio.gather(*(backend.pool.acquire(f"user{i}") for i in range(100)))
        assert all(r.is_new_session for r in results)
        spread = {name: len(c.workloads) for name, c in children.items()}
        assert sum(spread.values()) == 100
        assert abs(spread["east"] - 50) <= 10 and abs(spread["west"] - 50) <= 10, spread
        for r in results:
            assert r.session.handle is not None
            where = r.session.handle.extra["target"]
            assert r.session.session_id in children[where].workloads
    finally:
        await backend.stop(stop_sessions=True)
    assert not any(c.workloads for c in children.values()), "every stop went to its target"


async def test_weights_skew_the_spread(settings: Settings) -> None:
    runtime, children = memory_targets(("east", 100, 1.0, {}), ("west", 100, 3.0, {}))
    backend = await started(settings, runtime)
    try:
        await asyncio.gather(*(backend.pool.acquire(f"user{i}") for i in range(100)))
        assert len(children["west"].workloads) > 2 * len(children["east"].workloads)
    finally:
        await backend.stop(stop_sessions=True)


async def test_a_users_further_sessions_stay_on_its_target_while_it_has_room(
    settings: Settings,
) -> None:
    runtime, children = memory_targets(("east", 3, 1.0, {}), ("west", 3, 1.0, {}))
    backend = await started(settings, runtime)
    try:
        first = await backend.pool.acquire("ada")
        assert first.session.handle is not None
        home = first.session.handle.extra["target"]
        more = [await backend.pool.acquire("ada", reuse=False) for _ in range(2)]
        assert {r.session.handle.extra["target"] for r in more if r.session.handle} == {home}
        spill = await backend.pool.acquire("ada", reuse=False)  # home is full now
        assert spill.session.handle is not None
        assert spill.session.handle.extra["target"] != home
    finally:
        await backend.stop(stop_sessions=True)


async def test_a_required_label_no_target_has_is_refused_naming_it(settings: Settings) -> None:
    runtime, children = memory_targets(
        ("east", 2, 1.0, {"zone": "east"}), ("west", 2, 1.0, {"zone": "west"})
    )
    backend = await started(settings, runtime)
    try:
        with pytest.raises(InvalidRequest) as info:
            await backend.pool.acquire("ada", requires={"zone": "north"})
        assert info.value.status == 422 and info.value.field == "requires.zone"
        assert "zone=north" in info.value.message
        assert not any(c.calls.get("start") for c in children.values())
        for _ in range(2):
            placed = await backend.pool.acquire("bob", reuse=False, requires={"zone": "west"})
            assert placed.session.handle is not None
            assert placed.session.handle.extra["target"] == "west"
        with pytest.raises(StartError, match="no target can take this session"):
            await backend.pool.acquire("cyd", requires={"zone": "west"})
    finally:
        await backend.stop(stop_sessions=True)


async def test_template_requirements_pick_the_target(settings: Settings, tmp_path: Path) -> None:
    runtime, children = memory_targets(("east", 2, 1.0, {}), ("west", 2, 1.0, {"gpu": "yes"}))
    settings.templates["gpu"] = Template(name="gpu", command=["true"], requires={"gpu": "yes"})
    backend = await started(settings, runtime)
    try:
        result = await backend.pool.acquire("ada", "gpu")
        assert result.session.handle is not None
        assert result.session.handle.extra["target"] == "west"
        runtime.targets["west"].labels = {}
        with pytest.raises(InvalidRequest, match="template 'gpu'"):
            await backend.pool.acquire("bob", "gpu")
    finally:
        await backend.stop(stop_sessions=True)


async def test_a_targets_own_refusal_moves_the_start_once_and_says_so(
    settings: Settings,
) -> None:
    runtime, children = memory_targets(("east", 5, 1.0, {}), ("west", 5, 1.0, {}))
    backend = await started(settings, runtime)
    children["east"].fail_starts["demo"] = 5
    children["east"].fail_reason = "exceeded quota: pods=5"
    try:
        with backend.bus.subscribe(kinds={EventKind.START_RETRY}) as sub:
            result = await backend.pool.acquire("ada")
            event = await asyncio.wait_for(sub.get(), 5)
        assert event is not None
        assert result.session.handle is not None
        assert result.session.handle.extra["target"] == "west"
        assert "target east refused the start (simulated" in event.message
        assert "exceeded quota" in event.message and "moved to target west" in event.message
        assert children["east"].calls["start"] == 1, "one try there, then elsewhere"
        # A template's own failure is not the target's: no move.
        children["east"].fail_starts["demo"] = 1
        children["east"].fail_reason = ""
        settings.pool.start_attempts = 1
        west_starts = children["west"].calls["start"]
        with pytest.raises(StartError, match=r"simulated start failure \(exit code 1\)"):
            await backend.pool.acquire("bob")
        assert children["west"].calls["start"] == west_starts
    finally:
        await backend.stop(stop_sessions=True)


async def test_readoption_finds_the_sessions_of_every_target(settings: Settings) -> None:
    runtime, children = memory_targets(("east", 5, 1.0, {}), ("west", 5, 1.0, {}))
    backend = Backend(settings, runtime=runtime)
    settings.pool.max_sessions = 10
    await backend.start()
    ids = {(await backend.pool.acquire(f"user{i}")).session.session_id for i in range(6)}
    await backend.stop()
    assert {len(c.workloads) for c in children.values()} == {3}
    again, _ = memory_targets(("east", 5, 1.0, {}), ("west", 5, 1.0, {}))
    for name, target in again.targets.items():
        target.runtime = children[name]
    backend = Backend(settings, runtime=again)
    await backend.start()
    try:
        assert backend.recovery is not None and set(backend.recovery.adopted) == ids
        assert {len(t.sessions) for t in again.targets.values()} == {3}
        for sid in ids:
            session = backend.pool.get(sid)
            assert session.handle is not None
            assert sid in children[session.handle.extra["target"]].workloads
            assert (await again.probe(session.handle, settings.templates["demo"])).alive
    finally:
        await backend.stop(stop_sessions=True)
    assert not any(c.workloads for c in children.values())


class Unschedulable(MemoryRuntime):
    """A target whose cluster refuses to schedule the next ``refusals`` pods."""

    refusals = 0

    async def wait_ready(
        self, handle: WorkloadHandle, spec: WorkloadSpec, timeout: float, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        if self.refusals:
            self.refusals -= 1
            raise StartError("Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.")
        return await super().wait_ready(handle, spec, timeout, on_phase)


async def test_an_unschedulable_pod_moves_the_session_once_to_another_target(
    settings: Settings,
) -> None:
    east, west = Unschedulable(), Unschedulable()
    runtime = MultiRuntime([Target("east", east, 5), Target("west", west, 5)])
    backend = await started(settings, runtime)
    settings.pool.start_attempts = 1
    east.refusals = 1
    try:
        with backend.bus.subscribe(kinds={EventKind.START_RETRY}) as sub:
            result = await backend.pool.acquire("ada")
            event = await asyncio.wait_for(sub.get(), 5)
        assert event is not None and "Unschedulable" in event.message
        assert result.session.target == "west"
        assert not east.workloads, "the refused one was removed there"
        assert list(west.workloads) == [result.session.session_id]
        east.refusals = west.refusals = 1  # both refuse: moved once, then it fails
        with pytest.raises(StartError, match="Unschedulable"):
            await backend.pool.acquire("bob")
        assert len(east.workloads) + len(west.workloads) == 1, "nothing of bob's is left"
    finally:
        await backend.stop(stop_sessions=True)
