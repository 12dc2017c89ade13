"""The pool's side of a pod replacement, on the in-memory runtime.

The Kubernetes runtime tells the pool when a ready session's pod went (no handle) and when
a new one serves it (its handle); these tests play that runtime, whose ``wait_ready``
hands out a new pod name each time. The real thing is ``kubernetes/test_k8s_replacement.py``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from backend.config import Settings
from backend.errors import StartError
from backend.events import EventKind
from backend.models import SessionState, WorkloadHandle
from backend.runtime.base import PhaseCallback, WorkloadSpec
from backend.runtime.memory import MemoryRuntime
from backend.service import Backend


class PodRuntime(MemoryRuntime):
    """Each ready workload is a new pod, as after a ReplicaSet's replacement."""

    def __init__(self) -> None:
        super().__init__()
        self._pods = itertools.count(1)

    async def wait_ready(
        self, handle: WorkloadHandle, spec: WorkloadSpec, timeout: float, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        ready = await super().wait_ready(handle, spec, timeout, on_phase)
        extra = {**ready.extra, "pod": f"{spec.session_id}-pod{next(self._pods)}"}
        return WorkloadHandle("kubernetes", ready.ref, ready.host, ready.port, extra)


@pytest.fixture
async def backend(settings: Settings) -> AsyncIterator[Backend]:
    backend = Backend(settings, runtime=PodRuntime())
    await backend.start()
    yield backend
    await backend.stop(stop_sessions=True)


def runtime_of(backend: Backend) -> PodRuntime:
    assert isinstance(backend.runtime, PodRuntime)
    return backend.runtime


async def test_a_reuse_waits_for_the_replacement_on_the_same_port(backend: Backend) -> None:
    pool = backend.pool
    session = (await pool.acquire("alice")).session
    tunnel, old_pod = pool.record(session.session_id).tunnel, session.pod  # type: ignore[union-attr]
    assert old_pod is not None and old_pod.endswith("pod1")
    gate = runtime_of(backend).ready_gate = asyncio.Event()

    with backend.bus.subscribe(kinds={EventKind.POD_REPLACED}) as events:
        pool._on_workload_moved(session.session_id, None, f"pod {old_pod} is no longer ready")
        assert session.state is SessionState.STARTING
        assert session.to_dict()["phase"] == "waiting for a replacement pod"
        reuse = asyncio.ensure_future(pool.acquire("alice"))
        await asyncio.sleep(0)
        assert not reuse.done()
        gate.set()
        result = await asyncio.wait_for(reuse, 5)
        event = await asyncio.wait_for(events.get(), 5)

    assert result.session is session and session.state is SessionState.READY
    record = pool.record(session.session_id)
    assert record is not None and record.tunnel is tunnel
    assert session.pod is not None and session.pod.endswith("pod2")
    assert event is not None
    assert (event.data["old_pod"], event.data["new_pod"]) == (old_pod, session.pod)
    assert event.data["session"]["pod"] == session.pod
    assert runtime_of(backend).calls["start"] == 1  # nothing was started anew


async def test_a_new_pod_while_ready_is_taken_at_once(backend: Backend) -> None:
    pool = backend.pool
    session = (await pool.acquire("alice")).session
    assert session.handle is not None and session.pod is not None
    old_pod = session.pod
    moved = WorkloadHandle(
        "kubernetes", session.handle.ref, "", 3000, {**session.handle.extra, "pod": "p-new"}
    )
    with backend.bus.subscribe(kinds={EventKind.POD_REPLACED}) as events:
        pool._on_workload_moved(session.session_id, moved, f"pod {old_pod} replaced by p-new")
        event = await asyncio.wait_for(events.get(), 5)
    assert session.state is SessionState.READY and session.pod == "p-new"
    assert event is not None and event.data["old_pod"] == old_pod


async def test_a_replacement_that_never_gets_ready_fails_with_the_reason(
    backend: Backend,
) -> None:
    pool = backend.pool
    session = (await pool.acquire("alice")).session
    runtime = runtime_of(backend)
    runtime.ready_gate = asyncio.Event()  # never opens: no replacement gets ready
    backend.settings.templates[session.template].ready_timeout = 0.05
    pool._on_workload_moved(session.session_id, None, "pod gone")
    with pytest.raises(StartError) as info:
        await pool.acquire("alice")
    assert "its pod was replaced and the new one did not get ready" in info.value.message
    assert session.state is SessionState.FAILED
    assert session.last_error is not None and "did not get ready" in session.last_error
    assert runtime.workloads == {}  # its workload was stopped
