"""Every change a person can see is an event carrying the session's whole document.

A front end applies ``data["session"]`` as it comes and never reads the pool to find out
what an event meant; so each transition must publish, the document must be the one
``/sessions`` returns, taken after the change, and the last event of a session must
leave it as the pool has it now.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.config import Settings
from backend.errors import StartError
from backend.events import Event, EventKind, Subscription
from backend.models import Session
from backend.operations import Operations
from backend.refresher import Refresher
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend
from tests.backend.conftest import free_port_range
from tests.backend.host_backend import crash_settings
from tests.backend.test_pod_replacement import PodRuntime

_NO_DOCUMENT = frozenset({EventKind.LOG, EventKind.CLEANUP_LEFTOVER, EventKind.ORPHAN_REMOVED})
"""Kinds that name a session id but are not a change of a pool session."""
_VOLATILE = ("age_s", "idle_s")


def drain(sub: Subscription) -> list[Event]:
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    return events


async def until(sub: Subscription, kind: EventKind, seen: list[Event]) -> Event:
    """Collect events into ``seen`` until one of ``kind`` arrives; return it."""
    while True:
        event = await asyncio.wait_for(sub.get(), 10)
        assert event is not None
        seen.append(event)
        if event.kind is kind:
            return event


def steady(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in _VOLATILE}


def check_documents(events: list[Event], ops: Operations) -> dict[str, dict[str, Any]]:
    """Every session event carries a document of the API's shape for its own session;
    the last one of each session is what ``/sessions`` says now. Returns those."""
    keys = set(Session("a-demo-0", "a", "demo").to_dict())
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.session_id is None or event.kind in _NO_DOCUMENT:
            continue
        doc = event.data.get("session")
        assert doc is not None, f"{event.kind.value} carries no session document"
        assert doc["session_id"] == event.session_id
        assert set(doc) == keys, event.kind.value
        last[event.session_id] = doc
    current = {d["session_id"]: d for d in ops.list_sessions()}
    for sid, doc in last.items():
        if sid in current:
            assert steady(doc) == steady(current[sid]), f"{sid} ends elsewhere than the pool"
    return last


def by_kind(events: list[Event], kind: EventKind) -> list[dict[str, Any]]:
    return [e.data["session"] for e in events if e.kind is kind]


@pytest.fixture
async def local_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    low, high = free_port_range(300)
    backend = Backend(crash_settings(tmp_path / "state", low, high))
    await backend.start()
    yield backend
    await backend.stop(stop_sessions=True)


async def test_a_local_session_publishes_every_transition_with_its_document(
    local_backend: Backend,
) -> None:
    """A real process: start phases, ready, refreshing, pin, a crash and its recycle,
    the end; each event says what the session became."""
    pool, ops = local_backend.pool, Operations(local_backend)
    seen: list[Event] = []
    with local_backend.bus.subscribe(maxsize=10_000) as sub:
        result = await pool.acquire("ana", wait=False)
        sid = result.session.session_id
        ready = await until(sub, EventKind.READY, seen)
        doc = ready.data["session"]
        assert (doc["state"], doc["phase"]) == ("ready", "ready")
        assert doc["tunnel"]["listening"] is True and doc["runtime_ref"]
        created = by_kind(seen, EventKind.CREATED)[0]
        assert (created["state"], created["session_id"]) == ("starting", sid)
        phases = [e.data["phase"] for e in seen if e.kind is EventKind.PHASE]
        assert phases[0] == "launching" and len(phases) >= 2, phases
        for event in seen:
            if event.kind is EventKind.PHASE:
                assert event.data["session"]["state"] == "starting"
                assert event.data["session"]["phase"] == event.data["phase"]
        opened = by_kind(seen, EventKind.TUNNEL_OPENED)[0]
        assert opened["tunnel"]["port"] == doc["tunnel"]["port"]

        await Refresher(pool).refresh_session(pool.get(sid))
        pool.pin(sid)
        pool.unpin(sid)
        await asyncio.sleep(0)
        seen += drain(sub)
        assert by_kind(seen, EventKind.REFRESH_STARTED)[0]["state"] == "refreshing"
        assert by_kind(seen, EventKind.REFRESH_OK)[0]["state"] == "ready"
        assert by_kind(seen, EventKind.PINNED)[0]["pinned"] is True
        assert by_kind(seen, EventKind.UNPINNED)[0]["pinned"] is False

        os.killpg(int(doc["runtime_ref"]), signal.SIGKILL)  # the workload dies on its own
        recycled = await until(sub, EventKind.RECYCLED, seen)
        assert recycled.data["session"]["state"] == "starting"
        assert recycled.data["session"]["phase"] == "recycling"
        back = await until(sub, EventKind.READY, seen)
        assert back.data["session"]["runtime_ref"] not in (None, doc["runtime_ref"])
        assert back.data["session"]["tunnel"]["port"] == doc["tunnel"]["port"]

        pool.delete(sid)
        ended = await until(sub, EventKind.CLEANUP_VERIFIED, seen)
        final = ended.data["session"]
        assert final["state"] == "terminated" and final["cleanup"].startswith("verified")
        assert by_kind(seen, EventKind.TERMINATING)[-1]["state"] == "terminating"
        closed = by_kind(seen, EventKind.TUNNEL_CLOSED)[-1]
        assert closed["tunnel"]["listening"] is False
        check_documents(seen, ops)


async def test_eviction_failure_and_a_replaced_pod_are_published_with_documents(
    settings: Settings,
) -> None:
    settings.pool.max_sessions = 1
    settings.pool.start_attempts = 2
    runtime = PodRuntime()
    backend = Backend(settings, runtime=runtime)
    await backend.start()
    pool, ops = backend.pool, Operations(backend)
    try:
        with backend.bus.subscribe(maxsize=10_000) as sub:
            first = (await pool.acquire("ana")).session
            await pool.acquire("ben")  # evicts ana's
            gate = runtime.ready_gate = asyncio.Event()
            ben = next(s for s in pool.list() if s.user == "ben")
            pool._on_workload_moved(ben.session_id, None, "pod gone")
            gate.set()
            await asyncio.sleep(0.05)
            runtime.ready_gate = None
            await pool.terminate(ben.session_id)  # frees the one slot
            runtime.fail_starts["demo"] = 2  # every try of the next start fails
            with pytest.raises(StartError, match="simulated start failure"):
                await pool.acquire("cid")
            await asyncio.sleep(0.05)
            seen = drain(sub)
        evicted = [e for e in seen if e.kind is EventKind.EVICTED]
        assert [e.session_id for e in evicted] == [first.session_id]
        assert evicted[0].data["session"]["state"] == "terminating"
        waiting = [e for e in seen if e.data.get("phase") == "waiting for a replacement pod"]
        assert [e.session_id for e in waiting] == [ben.session_id]
        assert waiting[0].data["session"]["state"] == "starting"
        assert by_kind(seen, EventKind.POD_REPLACED)[0]["state"] == "ready"
        assert by_kind(seen, EventKind.START_RETRY)[0]["phase"].startswith("retrying in")
        failed = by_kind(seen, EventKind.FAILED)[0]
        assert failed["state"] == "failed" and "simulated" in failed["last_error"]
        last = check_documents(seen, ops)
        assert last[first.session_id]["state"] == "terminated"
    finally:
        await backend.stop(stop_sessions=True)


async def test_a_claimed_standby_names_the_standby_it_replaces(settings: Settings) -> None:
    settings.templates["demo"].standby = 1
    backend = Backend(settings, runtime=MemoryRuntime())
    await backend.start()
    try:
        for _ in range(200):
            if any(s.state.value == "ready" for s in backend.pool.standby_sessions()):
                break
            await asyncio.sleep(0.01)
        standby = backend.pool.standby_sessions()[0]
        old_id = standby.session_id
        with backend.bus.subscribe(kinds={EventKind.STANDBY_CLAIMED}) as sub:
            session = (await backend.pool.acquire("ana")).session
            event = await asyncio.wait_for(sub.get(), 5)
        assert event is not None and event.data["standby_id"] == old_id
        doc = event.data["session"]
        assert (doc["session_id"], doc["user"], doc["standby"]) == (
            session.session_id,
            "ana",
            False,
        )
    finally:
        await backend.stop(stop_sessions=True)
