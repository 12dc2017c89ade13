"""The real ``podwarden`` command in tmux at 80x24, as an operator runs it over SSH.

First screen, a session created over the API that shows as ready within a second of the
API's answer, the quit question while it lives, and a clean shell screen after quitting.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.test_local_pool import pid_alive, workload_pids
from tests.e2e.conftest import write_config

PODWARDEN = Path(sys.executable).parent / "podwarden"
"""The installed command, next to this interpreter (``pip install -e .`` puts it there)."""

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not PODWARDEN.exists(), reason="the podwarden command is not installed"),
]


class Tmux:
    """One detached tmux server of its own (``-L``), so nothing touches the user's."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "console", *keys)

    async def until(self, predicate: str, timeout: float = 30.0, gone: bool = False) -> float:
        """Wait until ``predicate`` is on screen (or, ``gone``, off it); the time it took."""
        started = time.monotonic()
        while (predicate in self.screen()) is gone:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{predicate!r} never showed; screen:\n{self.screen()}")
            await asyncio.sleep(0.02)
        return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(f"podwarden-test-{tmp_path.name}")
    yield server
    server.run("kill-server")


async def test_the_console_in_tmux_shows_an_api_session_ready_and_quits_cleanly(
    tmp_path: Path, tmux: Tmux
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "podwarden.toml", login_delay=0.3)
    port = free_port()
    command = (
        f"{PODWARDEN} --state-dir {state} --config {config} --port {port}; echo EXITED-$?; sleep 30"
    )
    tmux.run("new-session", "-d", "-x", "80", "-y", "24", "-s", "console", command)
    try:
        await tmux.until("Pool")  # painted before the backend is up
        await tmux.until("EMBEDDED")
        await tmux.until("Sessions 0")
        first = tmux.screen()
        assert all(len(line) <= 80 for line in first.splitlines())

        token = (state / "token").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            auth = {"Authorization": f"Bearer {token}"}
            answer = await api.post("/sessions", json={"user": "alice"}, headers=auth)
            assert answer.status_code in (200, 201), answer.text
            assert answer.json()["state"] == "ready"
            shown_after = await tmux.until("● ready", timeout=5)
            assert shown_after < 1.0, f"ready reached the screen {shown_after:.2f} s late"
            assert "alice" in tmux.screen()

        tmux.keys("q")  # a live session: the console asks, and says the API stops too
        await tmux.until("The HTTP API at")
        question = tmux.screen()
        assert "1 live session keeps running" in question
        tmux.keys("Escape")  # stays; waited for, so that Q is not read as alt+Q
        await tmux.until("The HTTP API at", gone=True)
        tmux.keys("Q")  # quits at once
        await tmux.until("EXITED-0")
        after = tmux.screen()
        assert "Pool" not in after and "Sessions" not in after  # the shell screen is back
    finally:
        for pid in workload_pids(state):  # sessions outlive the console by design
            subprocess.run(["kill", "-TERM", "--", f"-{pid}"], check=False)
        for _ in range(200):
            if not any(pid_alive(pid) for pid in workload_pids(state)):
                break
            await asyncio.sleep(0.05)
    assert workload_pids(state) == set()
