"""The refresher: probes and keepalives on ready sessions, dead ones recycled or removed."""

from __future__ import annotations

import asyncio
import random

from backend.errors import RuntimeUnavailable
from backend.events import EventKind
from backend.models import SessionState
from backend.refresher import Refresher
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend


async def no_sleep(_: float) -> None:
    return None


async def test_a_round_probes_and_keeps_alive_every_ready_session(
    memory_backend: Backend,
) -> None:
    runtime = memory_backend.runtime
    assert isinstance(runtime, MemoryRuntime)
    for user in ("a", "b", "c"):
        await memory_backend.pool.acquire(user)
    refresher = Refresher(memory_backend.pool, sleep=no_sleep)
    with memory_backend.bus.subscribe(kinds={EventKind.REFRESH_OK}) as events:
        await refresher.refresh_round()
        assert sum(1 for _ in range(3) if events.get_nowait()) == 3
    assert runtime.calls["probe"] == 3 and runtime.calls["keepalive"] == 3
    assert all(w.keepalives == 1 for w in runtime.workloads.values())
    assert all(s.state is SessionState.READY for s in memory_backend.pool.list())
    assert refresher.last_round_at is not None
    documents = [s.to_dict() for s in memory_backend.pool.list()]
    assert all(d["last_refresh_at"] is not None and d["recycles"] == 0 for d in documents)


async def test_a_dead_workload_is_detected_and_recycled(memory_backend: Backend) -> None:
    runtime = memory_backend.runtime
    assert isinstance(runtime, MemoryRuntime)
    now = [1000.0]
    memory_backend.pool.clock = lambda: now[0]
    result = await memory_backend.pool.acquire("a")
    sid = result.session.session_id
    assert result.session.to_dict()["starting_since"] == result.session.created_at == 1000.0
    runtime.workloads[sid].alive = False  # died silently: no callback, only a probe sees it
    now[0] += 300
    refresher = Refresher(memory_backend.pool, sleep=no_sleep)
    with memory_backend.bus.subscribe() as events:
        assert await refresher.refresh_session(result.session) is False
        kinds = [e.kind for e in iter(events.get_nowait, None)]
    assert EventKind.REFRESH_FAILED in kinds and EventKind.RECYCLED in kinds
    assert result.session.state is not SessionState.READY
    again = await memory_backend.pool.acquire("a")
    assert again.session.session_id == sid and again.session.state is SessionState.READY
    assert memory_backend.pool.metrics.refreshes["failed"] == 1
    document = again.session.to_dict()
    assert document["recycles"] == 1 and document["starting_since"] == 1300.0  # not created_at


async def test_remove_policy_ends_the_dead_session(memory_backend: Backend) -> None:
    memory_backend.settings.pool.on_refresh_failure = "remove"
    runtime = memory_backend.runtime
    assert isinstance(runtime, MemoryRuntime)
    result = await memory_backend.pool.acquire("a")
    runtime.workloads[result.session.session_id].alive = False
    await Refresher(memory_backend.pool, sleep=no_sleep).refresh_round()
    await memory_backend.pool.terminate(result.session.session_id)
    assert result.session.state is SessionState.TERMINATED
    assert memory_backend.pool.active_count == 0


async def test_the_loop_runs_rounds_at_the_jittered_interval(memory_backend: Backend) -> None:
    memory_backend.settings.pool.refresh_interval = 300
    memory_backend.settings.pool.refresh_jitter = 0.1
    delays: list[float] = []
    rounds_wanted = 3
    refresher: Refresher

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) > rounds_wanted:
            raise asyncio.CancelledError  # ends the loop as stop() would

    refresher = Refresher(memory_backend.pool, sleep=fake_sleep, rng=random.Random(7))
    await memory_backend.pool.acquire("a")
    refresher.start()
    await refresher.wait_stopped()
    assert refresher.rounds == rounds_wanted
    assert all(270 <= d <= 330 for d in delays)
    assert len(set(delays)) == len(delays), "jitter shifts every round"


async def test_a_runtime_outage_does_not_count_against_sessions(memory_backend: Backend) -> None:
    runtime = memory_backend.runtime
    assert isinstance(runtime, MemoryRuntime)
    result = await memory_backend.pool.acquire("a")

    async def unavailable(*_: object) -> None:
        raise RuntimeUnavailable("cluster API unreachable")

    runtime.probe = unavailable  # type: ignore[method-assign,assignment]
    refresher = Refresher(memory_backend.pool, sleep=no_sleep)
    assert await refresher.refresh_session(result.session) is False
    assert result.session.state is SessionState.READY
    assert result.session.refresh_failures == 0
    assert memory_backend.pool.metrics.recycles == 0
