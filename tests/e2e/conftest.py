"""End-to-end fixtures: a real ``podwarden serve`` subprocess on an ephemeral port.

Each server runs ``python -m backend.cli serve --port 0`` on the local runtime with the
demo template (login delay 0.3 s) in a temporary state directory; the test reads the bound
address from the start banner on stderr and talks to it with ``HttpClient``. At teardown
every server is stopped, and a last sweep stops any workload a failing test left behind
(and fails the test run if there was one).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from backend.events import EventBus
from backend.http_client import HttpClient
from backend.logs import SessionLogs
from backend.runtime.local import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


def free_port_range(size: int) -> tuple[int, int]:
    """A range whose first port is free now (the tunnels' range for one test)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + size < 65000:
            return start, start + size
    raise RuntimeError("no free port range")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def port_listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Serve:
    """One ``podwarden serve`` process."""

    def __init__(
        self,
        state_dir: Path,
        config: Path,
        extra: list[str],
        preexec: Callable[[], object] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.config = config
        self.extra = extra
        self.preexec = preexec
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.url = ""
        self._drain: asyncio.Task[None] | None = None

    @property
    def token(self) -> str:
        return (self.state_dir / "token").read_text().strip()

    def client(self) -> HttpClient:
        return HttpClient(self.url, self.token)

    async def start(self) -> Serve:
        argv = [sys.executable, "-m", "backend.cli", "serve", "--port", "0"]
        argv += ["--state-dir", str(self.state_dir), "--config", str(self.config), *self.extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PODWARDEN_")}
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=self.preexec,
        )
        assert self.proc.stderr is not None
        try:
            await asyncio.wait_for(self._read_banner(), START_TIMEOUT)
        except (TimeoutError, EOFError) as e:
            raise AssertionError("podwarden serve did not start:\n" + "".join(self.lines)) from e
        self._drain = asyncio.get_running_loop().create_task(self._read_rest())
        return self

    async def _read_banner(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            raw = await self.proc.stderr.readline()
            if not raw:
                raise EOFError
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if "podwarden: serving http://" in line:
                self.url = line.split("serving ", 1)[1].split()[0]
            if line.startswith("podwarden: token:"):
                return

    async def _read_rest(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace"))

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server and wait for it to exit; its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError("podwarden serve did not stop:\n" + "".join(self.lines)) from None
        if self._drain is not None:
            await self._drain
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)


class Events:
    """The server's event stream, read by a task into a list the test can wait on.

    ``open`` returns once the server has subscribed (its first comment line has
    arrived), so nothing the test does afterwards can be missed.
    """

    def __init__(self, server: Serve) -> None:
        self.server = server
        self.seen: list[dict[str, object]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> Events:
        subscribed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read(subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)
        return self

    async def _read(self, subscribed: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.server.token}"}
        timeout = httpx.Timeout(10, read=None)
        async with httpx.AsyncClient(base_url=self.server.url, timeout=timeout) as http:
            async with http.stream("GET", "/events", headers=headers) as response:
                async for line in response.aiter_lines():
                    if line.startswith(":"):
                        subscribed.set()
                    elif line.startswith("data: "):
                        self.seen.append(json.loads(line[6:]))
                        self._changed.set()

    async def wait_for(self, kind: str, session_id: str, timeout: float = 30) -> dict[str, object]:
        """The first event of ``kind`` for ``session_id`` (waiting for it if need be)."""

        async def find() -> dict[str, object]:
            while True:
                for event in self.seen:
                    if event["kind"] == kind and event["session_id"] == session_id:
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def write_config(path: Path, *, max_sessions: int = 10, login_delay: float = 0.3) -> Path:
    low, high = free_port_range(300)
    path.write_text(
        f"""
[pool]
max_sessions = {max_sessions}
max_sessions_per_user = 5
refresh_interval = 3600
stop_grace = 3

[tunnels]
port_min = {low}
port_max = {high}

[templates.demo]
login_delay = {login_delay}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "podwarden.toml")


@pytest.fixture
async def serve(state_dir: Path, config_file: Path) -> AsyncIterator[Callable[..., object]]:
    """``await serve(*flags)`` starts a server on the test's state directory."""
    started: list[Serve] = []

    async def start(*extra: str) -> Serve:
        server = await Serve(state_dir, config_file, list(extra)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.proc is not None
        if server.proc.returncode is None:
            await server.stop()
    leftovers = await sweep(state_dir)
    assert not leftovers, f"workloads left running: {leftovers}"


async def sweep(state_dir: Path) -> list[str]:
    """Stop every workload still recorded under ``state_dir``; the ids of those found."""
    runtime = LocalRuntime(state_dir, SessionLogs(EventBus()))
    found = []
    for workload in await runtime.list_owned():
        if workload.alive:
            found.append(workload.session_id)
            await runtime.stop(workload.handle, 2.0)
    await runtime.close()
    return found
