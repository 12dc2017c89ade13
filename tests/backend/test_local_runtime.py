"""The local runtime on real processes: start, readiness, probes, stop, recovery, hygiene.

Nothing is mocked: every test spawns real workloads (mostly the demo) in a temporary state
directory, and the ``runtime`` fixture makes sure no process of the test outlives it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from backend.errors import StartError
from backend.events import EventBus, EventKind
from backend.logs import SessionLogs
from backend.models import WorkloadHandle
from backend.runtime import local_workload
from backend.runtime.base import Runtime, WorkloadSpec
from backend.runtime.checks import check, http_get_status
from backend.runtime.local import MARKER, LocalRuntime
from backend.runtime.procs import find_marked, read_proc
from backend.templates import Template, builtin_templates

SECRET = "hunter2-correct-horse-battery"


def demo(login_delay: float = 0.2) -> Template:
    return dataclasses.replace(builtin_templates()["demo"], login_delay=login_delay)


def python_template(name: str, code: str, **kwargs: object) -> Template:
    return Template(name=name, command=[sys.executable, "-c", code], **kwargs)  # type: ignore[arg-type]


DEMO_ARGS = "-m backend.workloads.demo --port {port} --login-delay 0"


class Env:
    """A runtime over a temporary state directory, and what the tests need around it."""

    def __init__(self, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "state"
        self.bus = EventBus()
        self.logs = SessionLogs(self.bus)
        self.runtime = LocalRuntime(self.state_dir, self.logs)
        self.phases: list[str] = []
        self.lost: list[tuple[str, str]] = []
        self.lost_event = asyncio.Event()
        self.runtime.set_workload_lost_callback(self._on_lost)

    def _on_lost(self, session_id: str, reason: str) -> None:
        self.lost.append((session_id, reason))
        self.lost_event.set()

    def spec(
        self, template: Template, session_id: str = "alice-demo-1", **env: str
    ) -> WorkloadSpec:
        workdir = self.state_dir / "sessions" / session_id
        return WorkloadSpec(session_id, "alice", template, workdir, env=dict(env))

    async def start_ready(self, spec: WorkloadSpec, timeout: float = 20) -> WorkloadHandle:
        handle = await self.runtime.start(spec, self.phases.append)
        return await self.runtime.wait_ready(handle, spec, timeout, self.phases.append)

    def fresh_runtime(self) -> LocalRuntime:
        """Another runtime on the same state directory, as after a restart."""
        runtime = LocalRuntime(self.state_dir, self.logs)
        runtime.set_workload_lost_callback(self._on_lost)
        return runtime


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    env = Env(tmp_path)
    yield env
    await env.runtime.close()
    # Whatever a test left behind (it failed half-way): kill it, then fail loudly.
    leftovers = find_marked(MARKER, str(env.state_dir))
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leftovers, f"processes outlived the test: {sorted(leftovers)}"


def test_it_is_a_runtime(tmp_path: Path) -> None:
    assert isinstance(LocalRuntime(tmp_path, SessionLogs(EventBus())), Runtime)


async def test_demo_starts_gets_ready_answers_and_stops(env: Env) -> None:
    spec = env.spec(demo(0.2))
    handle = await env.start_ready(spec)
    assert env.phases[0] == "launching" and "login" in env.phases
    pid = int(handle.ref)
    info = read_proc(pid)
    assert info is not None and info.pgid == pid == info.sid  # its own session and group
    assert os.readlink(f"/proc/{pid}/cwd") == str(spec.workdir)

    probe = await env.runtime.probe(handle, spec.template)
    assert probe.alive and not probe.gone
    await env.runtime.keepalive(handle, spec.template)
    assert await http_get_status(handle.host, handle.port, "/whoami", 2) == 200

    report = await env.runtime.stop(handle, grace=5)
    assert report.verified and report.duration_s < 5
    assert read_proc(pid) is None, "stopped workload left a zombie or still runs"
    assert not (env.state_dir / "sessions" / spec.session_id).exists()
    probe = await env.runtime.probe(handle, spec.template)
    assert not probe.alive and probe.gone


async def test_workload_output_reaches_session_logs_and_log_events(env: Env) -> None:
    spec = env.spec(demo(0.1))
    with env.bus.subscribe(kinds={EventKind.LOG}) as events:
        handle = await env.start_ready(spec)
        await env.runtime.keepalive(handle, spec.template)
        while True:
            event = await asyncio.wait_for(events.get(), 5)
            assert event is not None and event.session_id == spec.session_id
            if event.message == "keepalive #1":
                break
    lines = env.runtime.logs(spec.session_id)
    assert "logged in as alice" in lines
    assert any("GET /keepalive 200" in line for line in lines)
    await env.runtime.stop(handle, 5)
    assert env.runtime.logs(spec.session_id)[-1] == "stopped (SIGTERM)"  # read before rmtree


async def test_early_exit_fails_fast_with_exit_code_and_log_tail(env: Env) -> None:
    template = python_template(
        "broken", "import sys; print('error: cannot read config.toml', flush=True); sys.exit(3)"
    )
    spec = env.spec(template)
    handle = await env.runtime.start(spec, env.phases.append)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StartError) as info:
        await env.runtime.wait_ready(handle, spec, 30, env.phases.append)
    assert loop.time() - started < 5  # not the 30 s timeout
    assert info.value.exit_code == 3
    assert any("cannot read config.toml" in line for line in info.value.log_tail)
    assert "exit code 3" in info.value.message
    assert read_proc(int(handle.ref)) is None  # reaped on exit: no zombie
    assert env.lost == []  # never ready: a failed start, not a lost workload
    report = await env.runtime.stop(handle, 1)
    assert report.verified


async def test_readiness_timeout_names_the_time_and_the_last_lines(env: Env) -> None:
    template = python_template(
        "sleepy", "import time; print('warming up forever', flush=True); time.sleep(60)"
    )
    spec = env.spec(template)
    handle = await env.runtime.start(spec, env.phases.append)
    with pytest.raises(StartError) as info:
        await env.runtime.wait_ready(handle, spec, 0.5, env.phases.append)
    assert "not ready after 0.5s" in info.value.message
    assert "refuses connections" in info.value.message
    assert info.value.log_tail == ["warming up forever"]
    assert env.phases == ["launching", "waiting for port"]
    assert (await env.runtime.stop(handle, 2)).verified


async def test_bad_command_is_a_clear_non_retryable_error(env: Env) -> None:
    spec = env.spec(Template(name="nope", command=["/nonexistent/podwarden-workload"]))
    with pytest.raises(StartError) as info:
        await env.runtime.start(spec, env.phases.append)
    assert "/nonexistent/podwarden-workload" in info.value.message
    assert not info.value.retryable
    assert not (env.state_dir / "sessions" / spec.session_id).exists()


async def test_stop_kills_the_whole_group_including_grandchildren(env: Env) -> None:
    template = Template(
        name="family",
        command=[
            "sh",
            "-c",
            f"sleep 300 & echo $! > {{workdir}}/child.pid; exec {sys.executable} {DEMO_ARGS}",
        ],
        readiness="http",
        readiness_path="/health",
    )
    spec = env.spec(template)
    handle = await env.start_ready(spec)
    child = int((spec.workdir / "child.pid").read_text())
    info = read_proc(child)
    assert info is not None and info.pgid == int(handle.ref)
    report = await env.runtime.stop(handle, 5)
    assert report.verified
    child_info = read_proc(child)
    assert child_info is None or child_info.zombie  # reparented; its reaper is not us


async def test_stop_escalates_to_sigkill_after_the_grace_period(env: Env) -> None:
    code = (
        "import signal, socket, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "s = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(300)\n"
    )
    template = Template(name="stubborn", command=[sys.executable, "-c", code, "{port}"])
    spec = env.spec(template)
    handle = await env.start_ready(spec)
    report = await env.runtime.stop(handle, grace=0.3)
    assert report.verified
    assert 0.3 <= report.duration_s < 3
    assert read_proc(int(handle.ref)) is None


async def test_concurrent_and_repeated_stops_are_one_stop(env: Env) -> None:
    handle = await env.start_ready(env.spec(demo(0)))
    first, second = await asyncio.gather(env.runtime.stop(handle, 5), env.runtime.stop(handle, 5))
    assert first is second and first.verified
    again = await env.runtime.stop(handle, 5)
    assert again.verified


async def test_a_ready_workload_that_dies_is_reported_lost(env: Env) -> None:
    spec = env.spec(demo(0))
    handle = await env.start_ready(spec)
    os.kill(int(handle.ref), signal.SIGKILL)
    await asyncio.wait_for(env.lost_event.wait(), 5)
    ((session_id, reason),) = env.lost
    assert session_id == spec.session_id
    assert "exited with code -9" in reason
    assert read_proc(int(handle.ref)) is None  # reaped at once
    probe = await env.runtime.probe(handle, spec.template)
    assert probe.gone and not probe.alive
    assert (await env.runtime.stop(handle, 1)).verified


async def test_a_fresh_runtime_adopts_and_stops_a_running_workload(env: Env) -> None:
    spec = env.spec(demo(0))
    handle = await env.start_ready(spec)
    pid = int(handle.ref)
    await env.runtime.close()  # the backend goes away; the workload stays
    assert read_proc(pid) is not None

    runtime = env.fresh_runtime()
    try:
        (owned,) = await runtime.list_owned()
        assert (owned.session_id, owned.user, owned.template) == (spec.session_id, "alice", "demo")
        assert owned.alive and owned.ready and owned.handle.ref == str(pid)
        assert owned.handle.port == handle.port
        probe = await runtime.probe(owned.handle, spec.template)
        assert probe.alive
        report = await runtime.stop(owned.handle, 5)
        assert report.verified
        assert read_proc(pid) is None
        assert await runtime.list_owned() == []
    finally:
        await runtime.close()


async def test_an_adopted_workload_that_dies_is_reported_lost(env: Env) -> None:
    spec = env.spec(demo(0))
    handle = await env.start_ready(spec)
    await env.runtime.close()
    runtime = env.fresh_runtime()
    try:
        (owned,) = await runtime.list_owned()
        os.kill(int(handle.ref), signal.SIGTERM)
        await asyncio.wait_for(env.lost_event.wait(), 5)
        assert env.lost[0][0] == spec.session_id
        assert (await runtime.stop(owned.handle, 1)).verified
    finally:
        await runtime.close()


async def test_list_owned_reports_and_cleans_a_dead_workload(env: Env) -> None:
    spec = env.spec(demo(0))
    handle = await env.start_ready(spec)
    await env.runtime.close()
    pid = int(handle.ref)
    os.kill(pid, signal.SIGKILL)
    await _until(lambda: getattr(read_proc(pid), "zombie", True), "SIGKILL took no effect")
    runtime = env.fresh_runtime()
    try:
        (owned,) = await runtime.list_owned()
        assert owned.session_id == spec.session_id and not owned.alive and not owned.ready
        assert not (env.state_dir / "sessions" / spec.session_id).exists()
        assert read_proc(int(handle.ref)) is None  # the zombie was ours to reap, and was
        assert await runtime.list_owned() == []
    finally:
        await runtime.close()


async def test_list_owned_finds_a_workload_whose_record_was_never_written(env: Env) -> None:
    spec = env.spec(demo(0))
    handle = await env.start_ready(spec)
    await env.runtime.close()
    (spec.workdir / "workload.json").unlink()  # as if the host died right after the spawn
    runtime = env.fresh_runtime()
    try:
        (owned,) = await runtime.list_owned()
        assert owned.session_id == spec.session_id and owned.alive
        assert owned.handle.ref == handle.ref and owned.handle.port == handle.port
        assert (spec.workdir / "workload.json").exists()
        assert (await runtime.stop(owned.handle, 5)).verified
    finally:
        await runtime.close()


async def test_stop_of_a_handle_unknown_to_this_runtime(env: Env) -> None:
    handle = await env.start_ready(env.spec(demo(0)))
    await env.runtime.close()
    runtime = env.fresh_runtime()  # no list_owned: the pool restored the handle itself
    try:
        report = await runtime.stop(handle, 5)
        assert report.verified
        assert read_proc(int(handle.ref)) is None
    finally:
        await runtime.close()


async def test_workload_record_holds_identity_but_no_environment(env: Env) -> None:
    spec = env.spec(demo(0), TOKEN=SECRET, PODWARDEN_CREDENTIALS="TOKEN")
    handle = await env.start_ready(spec)
    record = json.loads((spec.workdir / "workload.json").read_text())
    assert record["pid"] == int(handle.ref) == record["pgid"]
    assert record["start_ticks"] == read_proc(int(handle.ref)).start_ticks  # type: ignore[union-attr]
    assert (record["port"], record["user"], record["template"]) == (handle.port, "alice", "demo")
    assert record["session_id"] == spec.session_id and record["runtime"] == "local"
    assert "env" not in record and SECRET not in json.dumps(record)
    assert oct((spec.workdir / "workload.json").stat().st_mode & 0o777) == "0o600"
    await env.runtime.stop(handle, 5)


async def test_credentials_reach_the_workload_but_no_file_under_the_state_dir(
    env: Env, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    template = Template(
        name="tattletale",
        command=[
            "sh",
            "-c",
            f'printf %s "$TOKEN" > {outside}/seen; exec {sys.executable} {DEMO_ARGS}',
        ],
        readiness="http",
        readiness_path="/health",
    )
    spec = env.spec(template, TOKEN=SECRET, PODWARDEN_CREDENTIALS="TOKEN")
    handle = await env.start_ready(spec)
    assert (outside / "seen").read_text() == SECRET
    assert await http_get_status(handle.host, handle.port, "/whoami", 2) == 200
    await env.runtime.keepalive(handle, demo())
    assert SECRET not in repr(spec)

    def files_with_secret() -> list[Path]:
        return [
            path
            for path in env.state_dir.rglob("*")
            if path.is_file() and SECRET.encode() in path.read_bytes()
        ]

    assert files_with_secret() == []
    assert not any(SECRET in line for line in env.runtime.logs(spec.session_id))
    await env.runtime.stop(handle, 5)
    assert files_with_secret() == []


async def test_demo_whoami_says_credentials_arrived_without_showing_them(env: Env) -> None:
    spec = env.spec(demo(0), TOKEN=SECRET, PODWARDEN_CREDENTIALS="TOKEN")
    handle = await env.start_ready(spec)
    reader, writer = await asyncio.open_connection(handle.host, handle.port)
    writer.write(b"GET /whoami HTTP/1.0\r\n\r\n")
    raw = await reader.read()
    writer.close()
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert body["user"] == "alice" and body["session_id"] == spec.session_id
    assert body["credentials"] == ["TOKEN"]
    assert SECRET.encode() not in raw
    await env.runtime.stop(handle, 5)


async def test_backend_settings_do_not_leak_into_workloads(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODWARDEN_TOKEN", "api-token-of-the-backend")
    out = tmp_path / "env.txt"
    template = python_template(
        "envdump",
        f"import os, socket, sys, time\nopen({str(out)!r}, 'w').write(repr(dict(os.environ)))\n"
        "s = socket.create_server(('127.0.0.1', int(sys.argv[1])))\ntime.sleep(300)\n",
    )
    template.command.append("{port}")
    spec = env.spec(template, EXTRA="1")
    handle = await env.start_ready(spec)
    seen = out.read_text()
    assert "api-token-of-the-backend" not in seen
    for name in ("PODWARDEN_SESSION_ID", "PODWARDEN_USER", "PODWARDEN_PORT", "EXTRA"):
        assert name in seen
    await env.runtime.stop(handle, 5)


async def test_no_file_descriptor_leaks_over_a_session_life(env: Env) -> None:
    async def one_life() -> None:
        spec = env.spec(demo(0.05))
        handle = await env.start_ready(spec)
        await env.runtime.probe(handle, spec.template)
        await env.runtime.keepalive(handle, spec.template)
        tunnel = await env.runtime.open_tunnel(handle, "127.0.0.1", 0)
        assert await http_get_status("127.0.0.1", tunnel.info.port, "/health", 2) == 200
        await tunnel.close()
        await env.runtime.stop(handle, 5)
        failing = env.spec(python_template("fail", "raise SystemExit(1)"), "bob-fail-1")
        failed = await env.runtime.start(failing, env.phases.append)
        with pytest.raises(StartError):
            await env.runtime.wait_ready(failed, failing, 10, env.phases.append)
        await env.runtime.stop(failed, 1)

    await one_life()  # warm-up: lazily created loop resources are not leaks
    before = _fds()
    await one_life()
    await _until(lambda: _fds() == before, f"fds before {before}")


async def test_a_workload_never_gets_a_port_of_the_avoided_range(tmp_path: Path) -> None:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    avoid = range(low, (low + high) // 2)  # half of the kernel's ephemeral ports
    runtime = LocalRuntime(tmp_path, SessionLogs(EventBus()), avoid_ports=avoid)
    spec = WorkloadSpec("s1", "u", demo(0), tmp_path / "sessions" / "s1")
    try:
        handle = await runtime.start(spec, lambda _: None)
        assert handle.port not in avoid
        await runtime.wait_ready(handle, spec, 20, lambda _: None)
        assert (await runtime.stop(handle, 5)).verified
    finally:
        await runtime.close()
    everything = LocalRuntime(tmp_path, SessionLogs(EventBus()), avoid_ports=range(1, 65536))
    with pytest.raises(StartError, match="no free local port"):
        await everything.start(spec, lambda _: None)
    await everything.close()


async def test_two_workloads_run_side_by_side(env: Env) -> None:
    specs = [env.spec(demo(0.1), f"user{i}-demo-{i}") for i in range(3)]
    handles = await asyncio.gather(*(env.start_ready(spec) for spec in specs))
    assert len({h.port for h in handles}) == 3 and len({h.ref for h in handles}) == 3
    assert env.runtime.health().workloads == 3
    owned = await env.runtime.list_owned()
    assert sorted(o.session_id for o in owned) == sorted(s.session_id for s in specs)
    reports = await asyncio.gather(*(env.runtime.stop(h, 5) for h in handles))
    assert all(r.verified for r in reports)
    assert env.runtime.health().workloads == 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _until(condition: Callable[[], bool], message: str, timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.005)


async def test_demo_page_sets_a_session_cookie_and_unknown_paths_are_404(env: Env) -> None:
    handle = await env.start_ready(env.spec(demo(0)))

    async def get(path: str) -> bytes:
        reader, writer = await asyncio.open_connection(handle.host, handle.port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        return data

    page = await get("/")
    assert page.startswith(b"HTTP/1.1 200") and b"Set-Cookie: podwarden_demo=" in page
    assert b"Hello, alice" in page
    assert (await get("/nope")).startswith(b"HTTP/1.1 404")
    assert (await get("/health")).startswith(b"HTTP/1.1 200")
    await env.runtime.stop(handle, 5)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", (True, 204)),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", (True, 200)),
        (b"HTTP/1.0 503 Busy\r\n\r\nlogging in", (False, 503)),
        (b"SSH-2.0-OpenSSH\r\n", (False, None)),
    ],
)
async def test_http_check_reads_whole_answers_and_keeps_the_connection_open_meanwhile(
    response: bytes, expected: tuple[bool, int | None]
) -> None:
    """The server answers, then waits for the client to close (like a keep-alive server);
    the check must return once the answer is complete, not at its timeout."""
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        if response.startswith(b"HTTP/1.0") or not response.startswith(b"HTTP"):
            writer.close()  # EOF ends these
        await reader.read()
        done.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await check("127.0.0.1", port, "http", "/health", timeout=5)
        assert (result.ok, result.status) == expected
        assert result.listening
        await asyncio.wait_for(done.wait(), 2)  # we closed the connection ourselves
    finally:
        server.close()


async def test_list_owned_leaves_a_watched_dead_workload_to_its_stop(env: Env) -> None:
    spec = env.spec(demo(0))
    handle = await env.start_ready(spec)
    os.kill(int(handle.ref), signal.SIGKILL)
    await asyncio.wait_for(env.lost_event.wait(), 5)
    (owned,) = await env.runtime.list_owned()
    assert not owned.alive
    assert (spec.workdir / "workload.log").exists()  # still there for the pool to read
    assert (await env.runtime.stop(handle, 1)).verified
    assert await env.runtime.list_owned() == []


async def test_a_process_whose_main_thread_exited_still_counts_as_running(env: Env) -> None:
    """Its main thread shows "Z" in /proc while another thread serves: not dead yet."""
    code = (
        "import ctypes, socket, sys, threading\n"
        "server = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
        "def serve():\n"
        "    while True:\n"
        "        server.accept()[0].close()\n"
        "threading.Thread(target=serve).start()\n"
        "print('main thread leaving', flush=True)\n"
        "ctypes.CDLL(None).pthread_exit(None)\n"
    )
    template = Template(name="headless", command=[sys.executable, "-c", code, "{port}"])
    spec = env.spec(template)
    handle = await env.start_ready(spec)
    pid = int(handle.ref)
    await _until(lambda: getattr(read_proc(pid), "state", "") == "Z", "main thread still runs")
    info = read_proc(pid)
    assert info is not None and info.threads > 1 and not info.zombie
    probe = await env.runtime.probe(handle, template)
    assert probe.alive and not probe.gone
    report = await env.runtime.stop(handle, 5)
    assert report.verified
    assert read_proc(pid) is None  # really ended, and reaped


async def test_a_chatty_workload_log_is_trimmed_on_disk_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_workload, "_TRIM_AT", 64 * 1024)
    monkeypatch.setattr(local_workload, "_TRIM_KEEP", 16 * 1024)
    logs = SessionLogs(EventBus(), limit=100_000)
    runtime = LocalRuntime(tmp_path, logs)
    code = (
        "import socket, sys, time\n"
        "server = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
        "for i in range(20000):\n"
        "    print(f'line {i:05d} ' + 'x' * 40)\n"
        "    if i % 2000 == 0:\n"
        "        sys.stdout.flush(); time.sleep(0.02)\n"
        "print('done', flush=True)\n"
        "time.sleep(300)\n"
    )
    template = Template(name="chatty", command=[sys.executable, "-c", code, "{port}"])
    spec = WorkloadSpec("s-chatty", "u", template, tmp_path / "sessions" / "s-chatty")
    handle = await runtime.start(spec, lambda _: None)
    try:
        await runtime.wait_ready(handle, spec, 20, lambda _: None)
        await _until(lambda: logs.get("s-chatty")[-1:] == ["done"], "the log never ended", 20)
        lines = logs.get("s-chatty")
        assert lines[:-1] == [f"line {i:05d} " + "x" * 40 for i in range(20000)]
        stat = (spec.workdir / "workload.log").stat()
        assert stat.st_size > 1_000_000  # the file keeps its size...
        if _can_punch_holes(tmp_path):
            assert stat.st_blocks * 512 < 300_000  # ...but not its blocks
        assert local_workload.read_log_tail(spec.workdir / "workload.log", 1) == ["done"]
    finally:
        await runtime.stop(handle, 5)
        await runtime.close()


def _can_punch_holes(directory: Path) -> bool:
    probe = directory / "punch-probe"
    probe.write_bytes(b"x" * 8192)
    try:
        with open(probe, "rb+") as f:
            local_workload._punch_hole(f.fileno(), 4096)
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


async def test_starting_again_after_an_unstopped_death_clears_the_old_one(env: Env) -> None:
    spec = env.spec(demo(0))
    first = await env.start_ready(spec)
    os.kill(int(first.ref), signal.SIGKILL)
    await asyncio.wait_for(env.lost_event.wait(), 5)
    second = await env.start_ready(spec)  # no stop in between
    assert second.ref != first.ref
    assert read_proc(int(first.ref)) is None
    probe = await env.runtime.probe(second, spec.template)
    assert probe.alive
    assert (await env.runtime.stop(second, 5)).verified
