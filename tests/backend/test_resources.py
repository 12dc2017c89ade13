"""Per-session CPU and memory and the host's totals, on real processes, through the API.

Every workload here is a real process group: a small server that burns CPU or allocates
memory when told to over its port, and answers once it has, so the test waits on the
answer (not on a clock) before it samples again. The CPU rate needs time between two
samples by nature; what fills that time is the workload's own burn.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import psutil
import pytest

from backend.api.app import make_api
from backend.config import Settings
from backend.errors import RuntimeUnavailable
from backend.events import EventBus
from backend.logs import SessionLogs
from backend.models import WorkloadHandle, WorkloadUsage
from backend.resources import ResourceSampler
from backend.runtime.base import ResourceReport, ResourceTotals, WorkloadSpec
from backend.runtime.local import MARKER, LocalRuntime
from backend.runtime.memory import MemoryRuntime
from backend.runtime.procs import find_marked
from backend.service import Backend
from backend.templates import Template
from tests.backend.conftest import free_port_range

TOKEN = "resources-token-0123456789abcdef"
MiB = 1 << 20

# A server on argv[1]: "burn" spends 0.6 s of CPU, "grow" touches 64 MiB more, "child-burn"
# runs a child process that burns and exits (reaped here), each answering "ok" when done.
# With "kids" in argv[2] it starts two children first: one in its own process group (same
# session) that holds 32 MiB, one in the group that holds 48 MiB; both wait forever.
WORKLOAD = r"""
import os, socket, subprocess, sys, time
port = int(sys.argv[1])
hold = []
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
kids = []
if len(sys.argv) > 2 and sys.argv[2] == "kids":
    hog = "import time; x = b'\x01' * ({} << 20); time.sleep(3600)"
    kids.append(subprocess.Popen([sys.executable, "-c", hog.format(32)], process_group=0))
    kids.append(subprocess.Popen([sys.executable, "-c", hog.format(48)]))
srv = socket.create_server(("127.0.0.1", port))
while True:
    conn, _ = srv.accept()
    cmd = conn.recv(32).strip()
    if cmd == b"burn":
        burn(0.6)
    elif cmd == b"grow":
        hold.append(b"\x01" * (64 << 20))
    elif cmd == b"child-burn":
        code = "import time\nend = time.process_time() + 0.6\n"
        code += "while time.process_time() < end: pass"
        subprocess.run([sys.executable, "-c", code])
    elif cmd == b"ready":
        pass
    conn.sendall(b"ok")
    conn.close()
"""


def workload(name: str, *extra: str) -> Template:
    return Template(name=name, command=[sys.executable, "-c", WORKLOAD, "{port}", *extra])


async def tell(handle: WorkloadHandle, command: str) -> None:
    """Send ``command`` to the workload and wait until it says it is done."""
    reader, writer = await asyncio.open_connection(handle.host, handle.port)
    writer.write(command.encode())
    await writer.drain()
    assert await asyncio.wait_for(reader.read(2), 30) == b"ok"
    writer.close()


class Local:
    def __init__(self, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "state"
        self.runtime = LocalRuntime(self.state_dir, SessionLogs(EventBus()))

    async def start(self, template: Template, session_id: str) -> WorkloadHandle:
        workdir = self.state_dir / "sessions" / session_id
        spec = WorkloadSpec(session_id, "alice", template, workdir)
        handle = await self.runtime.start(spec, lambda _: None)
        return await self.runtime.wait_ready(handle, spec, 20, lambda _: None)

    async def usage(self, session_id: str, handle: WorkloadHandle) -> WorkloadUsage:
        report = await self.runtime.resources({session_id: handle})
        assert report is not None
        return report.sessions[session_id]


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[Local]:
    env = Local(tmp_path)
    yield env
    for workload in list(env.runtime._workloads.values()):
        await env.runtime.stop(workload.handle(), 1.0)
    await env.runtime.close()
    leftovers = find_marked(MARKER, str(env.state_dir))
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"processes outlived the test: {sorted(leftovers)}"


async def test_a_busy_workload_shows_measured_cpu_and_memory_that_grows(local: Local) -> None:
    handle = await local.start(workload("hog"), "alice-hog-1")
    first = await local.usage("alice-hog-1", handle)
    assert first.source == "measured"
    assert first.cpu_percent is None  # a rate needs two samples
    assert first.memory_bytes is not None and first.memory_bytes > 1 * MiB

    await tell(handle, "burn")
    burning = await local.usage("alice-hog-1", handle)
    assert burning.cpu_percent is not None and 10 < burning.cpu_percent < 150, burning

    await tell(handle, "grow")
    grown = await local.usage("alice-hog-1", handle)
    assert grown.memory_bytes is not None
    assert grown.memory_bytes >= first.memory_bytes + 60 * MiB, (first, grown)


async def test_the_process_group_counts_its_children(local: Local) -> None:
    handle = await local.start(workload("kids", "kids"), "alice-kids-1")
    leader = psutil.Process(int(handle.ref))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    # Wait until both children hold their memory (they allocate right after the start).
    while sum(c.memory_info().rss for c in leader.children()) < 80 * MiB:
        assert loop.time() < deadline, "the children did not allocate"
        await asyncio.sleep(0.02)
    own = leader.memory_info().rss
    usage = await local.usage("alice-kids-1", handle)
    assert usage.memory_bytes is not None
    assert usage.memory_bytes >= own + 80 * MiB  # both children: same group, own group

    # A child that burns and exits between two samples counts (reaped: its parent's
    # children times), though it is gone by the time of the second sample.
    await tell(handle, "child-burn")
    after = await local.usage("alice-kids-1", handle)
    assert after.cpu_percent is not None and 10 < after.cpu_percent < 150, after


async def test_a_gone_workload_has_no_figures(local: Local) -> None:
    handle = await local.start(workload("gone"), "alice-gone-1")
    await local.runtime.stop(handle, 1.0)
    report = await local.runtime.resources({"alice-gone-1": handle})
    assert report is not None and report.sessions == {}


async def test_host_totals_are_measured(local: Local) -> None:
    report = await local.runtime.resources({})
    assert report is not None and report.totals is not None
    first = report.totals
    assert first.scope == "host" and first.source == "measured"
    assert first.cpu_cores == psutil.cpu_count()
    assert first.cpu_used_cores is None  # a rate: from the second sample on
    assert first.memory_bytes == psutil.virtual_memory().total
    assert first.memory_used_bytes is not None and 0 < first.memory_used_bytes
    handle = await local.start(workload("host"), "alice-host-1")
    await tell(handle, "burn")  # at least 0.6 s of one core busy in between
    report = await local.runtime.resources({})
    assert report is not None and report.totals is not None
    used = report.totals.cpu_used_cores
    assert used is not None and 0 < used <= psutil.cpu_count()


# ------------------------------------------------------------------ the API, local runtime


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    settings = Settings(state_dir=tmp_path / "state")
    settings.pool.refresh_interval = 3600
    settings.pool.resources_interval = 3600  # rounds are taken by the test
    settings.tunnels.port_min, settings.tunnels.port_max = free_port_range(50)
    settings.templates["hog"] = workload("hog")
    settings.validate()
    backend = Backend(settings)
    await backend.start()
    yield backend
    await backend.stop(stop_sessions=True)


@pytest.fixture
async def api(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_api(backend, TOKEN))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://podwarden.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client


async def test_sessions_health_and_metrics_show_the_measured_figures(
    backend: Backend, api: httpx.AsyncClient
) -> None:
    answer = await api.post("/sessions", json={"user": "alice", "template": "hog"})
    assert answer.status_code == 200, answer.text
    sid = answer.json()["session_id"]
    session = backend.pool.get(sid)
    assert session.handle is not None
    await backend.resources.round()
    await tell(session.handle, "burn")
    await backend.resources.round()

    doc = (await api.get(f"/sessions/{sid}")).json()
    assert doc["resources_source"] == "measured"
    assert doc["cpu_percent"] > 10
    assert doc["memory_bytes"] > 1 * MiB
    listed = {s["session_id"]: s for s in (await api.get("/sessions")).json()}
    assert listed[sid]["cpu_percent"] == doc["cpu_percent"]

    health = (await api.get("/health")).json()
    res = health["resources"]
    assert res["scope"] == "host" and res["source"] == "measured"
    assert res["cpu_cores"] == psutil.cpu_count()
    assert 0 < res["cpu_percent"] <= 100
    assert res["memory_bytes"] == psutil.virtual_memory().total
    assert 0 < res["memory_percent"] < 100
    assert res["sessions_cpu_percent"] == doc["cpu_percent"]
    assert res["sessions_memory_bytes"] == doc["memory_bytes"]
    assert res["sessions_source"] == "measured"
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_api(backend, TOKEN)))
    async with anonymous:
        public = (await anonymous.get("http://podwarden.test/health")).json()
    assert public["resources"]["cpu_cores"] == res["cpu_cores"]  # figures, no names

    text = (await api.get("/metrics")).text
    labels = f'session_id="{sid}",source="measured",template="hog",user="alice"'
    cores = _metric(text, f"podwarden_session_cpu_cores{{{labels}}}")
    assert cores == pytest.approx(doc["cpu_percent"] / 100)
    assert _metric(text, f"podwarden_session_memory_bytes{{{labels}}}") == doc["memory_bytes"]
    assert (
        _metric(text, 'podwarden_sessions_memory_bytes{source="measured"}') == (doc["memory_bytes"])
    )
    assert _metric(text, 'podwarden_resources_cpu_cores{scope="host"}') == psutil.cpu_count()
    assert _metric(text, 'podwarden_resources_memory_used_bytes{scope="host",source="measured"}')

    await api.delete(f"/sessions/{sid}")
    doc = (await api.get(f"/sessions/{sid}")).json()
    assert doc["cpu_percent"] is None and doc["resources_source"] is None


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


# ------------------------------------------------------------------ the sampler


async def test_the_in_memory_runtime_cannot_tell_and_sampling_ends(settings: Settings) -> None:
    settings.pool.resources_interval = 0.01
    backend = Backend(settings, runtime=MemoryRuntime(), persist=False)
    await backend.start()
    try:
        await asyncio.wait_for(backend.resources._loop.wait_stopped(), 5)
        assert backend.resources.supported is False
        assert backend.health().resources is None
        doc = backend.pool.list()
        assert doc == []
    finally:
        await backend.stop()


async def test_figures_a_runtime_reports_reach_sessions_and_health(settings: Settings) -> None:
    runtime = MemoryRuntime()
    settings.pool.resources_interval = 3600
    backend = Backend(settings, runtime=runtime, persist=False)
    await backend.start()
    try:
        result = await backend.pool.acquire("alice", "demo")
        sid = result.session.session_id
        runtime.resource_report = ResourceReport(
            {sid: WorkloadUsage(25.0, 512 * MiB, "requested")},
            ResourceTotals("cluster", "requested", 8.0, 0.25, 32 << 30, 512 * MiB),
        )
        await backend.resources.round()
        doc = backend.pool.get(sid).to_dict()
        assert (doc["cpu_percent"], doc["memory_bytes"], doc["resources_source"]) == (
            25.0,
            512 * MiB,
            "requested",
        )
        health = backend.health().to_dict()["resources"]
        assert health["scope"] == "cluster" and health["source"] == "requested"
        assert health["cpu_percent"] == 3.1 and health["memory_percent"] == 1.6
        assert health["sessions_source"] == "requested"
        runtime.resource_report = ResourceReport({}, None)
        await backend.resources.round()  # no figures this time: none shown
        assert backend.pool.get(sid).to_dict()["cpu_percent"] is None
    finally:
        await backend.stop()


async def test_a_failing_sample_is_said_once_and_sampling_goes_on(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    class Away(MemoryRuntime):
        failures = 3

        async def resources(self, handles: Mapping[str, WorkloadHandle]) -> ResourceReport:
            if self.failures:
                self.failures -= 1
                raise RuntimeUnavailable("cannot reach the cluster")
            return ResourceReport({}, ResourceTotals("cluster", "requested", 8.0, 0.0, 1, 0))

    backend = Backend(settings, runtime=Away(), persist=False)
    sleeps: list[float] = []
    fourth = asyncio.Event()

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:
            fourth.set()
            await asyncio.Event().wait()  # stays here until stopped

    sampler = ResourceSampler(backend.pool, sleep=sleep)
    with caplog.at_level(logging.DEBUG, logger="podwarden.resources"):
        sampler.start()
        await asyncio.wait_for(fourth.wait(), 5)
        await sampler.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot reach the cluster" in warnings[0].getMessage()
    assert sampler.totals is not None and sampler.last_error == ""
    assert sleeps == [1.0, 5.0, 5.0, 5.0]  # the second sample a second after the first
