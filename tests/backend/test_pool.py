"""Pool bookkeeping on the in-memory runtime: reuse, single flight, capacity, policies."""

from __future__ import annotations

import asyncio

import pytest

from backend.errors import (
    CapacityError,
    InvalidRequest,
    QuotaExceeded,
    StartError,
    UnknownTemplate,
)
from backend.events import EventKind
from backend.models import SessionState
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend


def runtime_of(backend: Backend) -> MemoryRuntime:
    assert isinstance(backend.runtime, MemoryRuntime)
    return backend.runtime


async def test_reuse_gives_the_same_session_without_touching_the_runtime(
    memory_backend: Backend,
) -> None:
    pool = memory_backend.pool
    first = await pool.acquire("jfernandez")
    calls = dict(runtime_of(memory_backend).calls)
    second = await pool.acquire("jfernandez")
    assert first.is_new_session is True
    assert second.is_new_session is False
    assert second.session.session_id == first.session.session_id
    assert runtime_of(memory_backend).calls == calls
    assert second.session.use_count == 2
    assert first.session.session_id.startswith("jfernandez-demo-")


async def test_different_users_get_different_sessions(memory_backend: Backend) -> None:
    a = await memory_backend.pool.acquire("jfernandez")
    b = await memory_backend.pool.acquire("Gustavoa")
    assert a.session.session_id != b.session.session_id
    assert memory_backend.health().session_capacity == "2/10"


async def test_reuse_false_starts_another_session_for_the_same_user(
    memory_backend: Backend,
) -> None:
    pool = memory_backend.pool
    a = await pool.acquire("admin")
    b = await pool.acquire("admin", reuse=False)
    c = await pool.acquire("admin")
    assert b.is_new_session and a.session.session_id != b.session.session_id
    assert c.session.session_id == a.session.session_id and not c.is_new_session


async def test_hundred_concurrent_acquires_start_one_workload(memory_backend: Backend) -> None:
    runtime = runtime_of(memory_backend)
    runtime.ready_gate = asyncio.Event()
    tasks = [asyncio.create_task(memory_backend.pool.acquire("jfernandez")) for _ in range(100)]
    await asyncio.sleep(0)
    runtime.ready_gate.set()
    results = await asyncio.gather(*tasks)
    assert runtime.calls["start"] == 1
    assert len({r.session.session_id for r in results}) == 1
    assert memory_backend.pool.active_count == 1


async def test_a_failed_start_fails_all_waiters_and_the_next_acquire_tries_again(
    memory_backend: Backend,
) -> None:
    runtime = runtime_of(memory_backend)
    memory_backend.settings.pool.start_attempts = 2
    runtime.fail_starts["demo"] = 2
    results = await asyncio.gather(
        *(memory_backend.pool.acquire("u1") for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, StartError) for r in results)
    assert len({id(r) for r in results}) == 1, "every waiter gets the same error"
    assert runtime.calls["start"] == 2
    failed = [s for s in memory_backend.pool.list() if s.state is SessionState.FAILED]
    assert len(failed) == 1 and "simulated start failure" in (failed[0].last_error or "")
    assert memory_backend.pool.active_count == 0
    again = await memory_backend.pool.acquire("u1")
    assert again.is_new_session and again.session.state is SessionState.READY


async def test_start_is_retried_with_backoff_then_succeeds(memory_backend: Backend) -> None:
    runtime = runtime_of(memory_backend)
    runtime.fail_starts["demo"] = 2
    with memory_backend.bus.subscribe() as events:
        result = await memory_backend.pool.acquire("u1")
        kinds = []
        while (event := events.get_nowait()) is not None:
            kinds.append(event.kind)
    assert result.session.state is SessionState.READY
    assert kinds.count(EventKind.START_RETRY) == 2
    assert memory_backend.pool.metrics.start_retries == 2


async def test_eleventh_user_evicts_the_least_recently_used(memory_backend: Backend) -> None:
    pool = memory_backend.pool
    first = [await pool.acquire(f"user{i}") for i in range(10)]
    await pool.acquire("user0")  # reuse moves user0 to most recent
    eleventh = await pool.acquire("user10")
    assert eleventh.session.state is SessionState.READY
    victim = first[1].session
    assert victim.state is SessionState.TERMINATED
    assert victim.cleanup and victim.cleanup.startswith("verified")
    assert victim.session_id not in runtime_of(memory_backend).workloads
    assert memory_backend.health().session_capacity == "10/10"
    assert first[0].session.state is SessionState.READY
    assert pool.metrics.evictions == 1


async def test_a_user_at_the_per_user_limit_is_refused_at_once_and_keeps_its_sessions(
    memory_backend: Backend,
) -> None:
    memory_backend.settings.pool.max_sessions_per_user = 2
    pool = memory_backend.pool
    a = await pool.acquire("admin", reuse=False)
    other = await pool.acquire("someone")
    b = await pool.acquire("admin", reuse=False)
    with pytest.raises(QuotaExceeded) as refused:
        await asyncio.wait_for(pool.acquire("admin", reuse=False), 1)
    assert refused.value.status == 429
    assert "max_sessions_per_user = 2" in refused.value.message
    assert a.session.state is SessionState.READY and b.session.state is SessionState.READY
    assert other.session.state is SessionState.READY
    assert pool.user_count("admin") == 2 and pool.metrics.evictions == 0
    again = await pool.acquire("admin")  # a reuse needs no new session: still served
    assert again.session.session_id == a.session.session_id and not again.is_new_session


async def test_reject_policy_refuses_at_once_with_a_clear_message(
    memory_backend: Backend,
) -> None:
    settings = memory_backend.settings.pool
    settings.when_full, settings.max_sessions = "reject", 2
    await memory_backend.pool.acquire("a")
    await memory_backend.pool.acquire("b")
    with pytest.raises(CapacityError, match=r"full \(2/2\)"):
        await memory_backend.pool.acquire("c")
    assert memory_backend.pool.metrics.acquires["refused"] == 1


async def test_recently_used_sessions_are_not_evicted_and_the_caller_gets_an_error(
    memory_backend: Backend,
) -> None:
    settings = memory_backend.settings.pool
    settings.max_sessions, settings.min_idle_before_evict, settings.queue_timeout = 2, 600, 0.05
    await memory_backend.pool.acquire("a")
    await memory_backend.pool.acquire("b")
    with pytest.raises(CapacityError, match="min_idle_before_evict 600s.*waited"):
        await memory_backend.pool.acquire("c")
    assert memory_backend.pool.active_count == 2


async def test_eviction_waits_until_the_lru_session_has_been_idle_long_enough(
    memory_backend: Backend,
) -> None:
    pool = memory_backend.pool
    settings = memory_backend.settings.pool
    settings.max_sessions, settings.min_idle_before_evict, settings.queue_timeout = 1, 0.2, 5
    a = await pool.acquire("a")
    loop = asyncio.get_running_loop()
    asked = loop.time()
    waiting = asyncio.create_task(pool.acquire("b"))
    await asyncio.sleep(0)
    assert not waiting.done()
    b = await asyncio.wait_for(waiting, 3)
    # Woken by its own timer when a became evictable, not by polling or the timeout.
    assert 0.15 <= loop.time() - asked < 2
    assert b.session.state is SessionState.READY
    assert a.session.state is SessionState.TERMINATED


async def test_queue_policy_is_fifo_and_proceeds_when_room_frees(
    memory_backend: Backend,
) -> None:
    settings = memory_backend.settings.pool
    settings.when_full, settings.max_sessions, settings.queue_timeout = "queue", 1, 5
    pool = memory_backend.pool
    a = await pool.acquire("a")
    order: list[str] = []

    async def acquire(user: str) -> None:
        await pool.acquire(user)
        order.append(user)

    second = asyncio.create_task(acquire("b"))
    await asyncio.sleep(0.01)
    third = asyncio.create_task(acquire("c"))
    await asyncio.sleep(0.01)
    assert pool.queued == 2
    await pool.terminate(a.session.session_id)
    await asyncio.wait_for(second, 2)
    assert order == ["b"] and not third.done()
    b_id = next(s.session_id for s in pool.list() if s.user == "b" and s.state.is_live)
    await pool.terminate(b_id)
    await asyncio.wait_for(third, 2)
    assert order == ["b", "c"]


async def test_queue_timeout_refuses_instead_of_hanging(memory_backend: Backend) -> None:
    settings = memory_backend.settings.pool
    settings.when_full, settings.max_sessions, settings.queue_timeout = "queue", 1, 0.05
    await memory_backend.pool.acquire("a")
    with pytest.raises(CapacityError, match="waited 0.05s"):
        await asyncio.wait_for(memory_backend.pool.acquire("b"), 2)
    assert memory_backend.pool.queued == 0


async def test_unknown_template_and_bad_users_are_refused_by_name(
    memory_backend: Backend,
) -> None:
    pool = memory_backend.pool
    with pytest.raises(UnknownTemplate, match="unknown template 'nope' \\(known: .*demo"):
        await pool.acquire("a", "nope")
    for bad in ("", "   ", "x" * 300, "a\nb", 42):
        with pytest.raises(InvalidRequest) as info:
            await pool.acquire(bad)  # type: ignore[arg-type]
        assert info.value.field == "user"
    with pytest.raises(InvalidRequest, match="credentials"):
        await pool.acquire("a", credentials={"bad name": "x"})
    assert pool.active_count == 0


async def test_deleting_a_starting_session_fails_its_waiters_and_frees_the_slot(
    memory_backend: Backend,
) -> None:
    runtime = runtime_of(memory_backend)
    runtime.ready_gate = asyncio.Event()
    waiter = asyncio.create_task(memory_backend.pool.acquire("a"))
    await asyncio.sleep(0.01)
    (session,) = memory_backend.pool.list()
    assert session.state is SessionState.STARTING
    await memory_backend.pool.terminate(session.session_id)
    with pytest.raises(StartError, match="deleted while it was starting"):
        await waiter
    assert session.state is SessionState.TERMINATED
    assert memory_backend.pool.active_count == 0
    assert runtime.workloads == {}


async def test_a_workload_that_dies_is_recycled_under_the_same_id(
    memory_backend: Backend,
) -> None:
    runtime = runtime_of(memory_backend)
    first = await memory_backend.pool.acquire("a")
    sid = first.session.session_id
    port = first.session.tunnel.port if first.session.tunnel else None
    runtime.kill(sid)
    assert first.session.state is SessionState.STARTING, "a dead session is never ready"
    again = await memory_backend.pool.acquire("a")
    assert again.session.session_id == sid and again.session.state is SessionState.READY
    assert again.session.tunnel is not None and again.session.tunnel.port == port
    assert memory_backend.pool.metrics.recycles == 1


async def test_nowait_returns_a_starting_session(memory_backend: Backend) -> None:
    runtime = runtime_of(memory_backend)
    runtime.ready_gate = asyncio.Event()
    result = await memory_backend.pool.acquire("a", wait=False)
    assert result.is_new_session and result.session.state is SessionState.STARTING
    runtime.ready_gate.set()
    done = await memory_backend.pool.acquire("a")
    assert done.session.session_id == result.session.session_id
    assert done.session.state is SessionState.READY


async def test_health_counts(memory_backend: Backend) -> None:
    await memory_backend.pool.acquire("jfernandez")
    health = memory_backend.health().to_dict()
    assert health["status"] == "healthy"
    assert health["active_sessions"] == 1
    assert health["max_sessions"] == 10
    assert health["session_capacity"] == "1/10"
    assert health["persistent_sessions"] == 1
    runtime_of(memory_backend).unhealthy = True
    degraded = memory_backend.health()
    assert degraded.status == "degraded" and "simulated outage" in degraded.degraded_reasons[0]


async def test_deleting_right_after_a_nowait_acquire_starts_nothing(
    memory_backend: Backend,
) -> None:
    runtime = runtime_of(memory_backend)
    with memory_backend.bus.subscribe() as events:
        started = await memory_backend.pool.acquire("a", wait=False)
        memory_backend.pool.delete(started.session.session_id)  # before its start task ran
        await memory_backend.pool.terminate(started.session.session_id)
        kinds = [e.kind for e in iter(events.get_nowait, None)]
    assert started.session.state is SessionState.TERMINATED
    assert EventKind.FAILED not in kinds and EventKind.CLEANUP_VERIFIED in kinds
    assert runtime.calls.get("start", 0) == 0 and runtime.workloads == {}
    again = await asyncio.wait_for(memory_backend.pool.acquire("a"), 2)
    assert again.is_new_session and again.session.session_id != started.session.session_id


async def test_nowait_refuses_when_the_start_would_have_to_queue(
    memory_backend: Backend,
) -> None:
    settings = memory_backend.settings.pool
    settings.when_full, settings.max_sessions = "queue", 1
    await memory_backend.pool.acquire("a")
    with pytest.raises(CapacityError, match=r"full \(1/1\)"):
        await memory_backend.pool.acquire("b", wait=False)


async def test_a_reuse_that_waits_for_a_recycle_counts_as_a_use_for_eviction(
    memory_backend: Backend,
) -> None:
    """Found by the pool model: a reuse that found its workload dead and waited for the
    recycle got the session, yet it kept its old LRU place and was evicted next."""
    pool = memory_backend.pool
    now = [1000.0]
    pool.clock = lambda: now[0]
    memory_backend.settings.pool.max_sessions = 2
    memory_backend.settings.pool.liveness_interval = 5.0
    await memory_backend.liveness.stop()  # only the reuse's own probe finds the death
    alice = (await pool.acquire("alice")).session
    now[0] += 1
    bob = (await pool.acquire("bob")).session
    runtime_of(memory_backend).workloads[alice.session_id].alive = False  # hangs silently
    runtime_of(memory_backend).start_delay = 0.05  # the reuse joins the recycle in flight
    now[0] += 10  # past the liveness interval: the next reuse probes first
    again = await pool.acquire("alice")
    assert again.session is alice and again.is_new_session  # recycled, a new workload
    now[0] += 1
    carol = await pool.acquire("carol")  # full: the least recently used goes
    assert carol.is_new_session
    assert pool.get(bob.session_id).state in (SessionState.TERMINATING, SessionState.TERMINATED)
    assert pool.get(alice.session_id).state is SessionState.READY
