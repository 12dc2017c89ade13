"""Benchmark of the operator console: keys, refreshes, idle CPU, start-up.

Run: ``python tests/bench/bench_tui.py``. Prints a table, then ONE JSON line (last).
Bounded: about a minute.

- key to screen: the time from a key press (cursor down/up) to the bytes of the updated
  frame being written, with 1,000 sessions, idle and under 50 events a second. The app
  runs with a driver that renders every frame like a terminal driver and discards it.
- refresh: every one of the 1,000 rows changed, from session documents to cells, and to
  the next frame written.
- idle CPU: process time over 10 s with the pool unchanged, default timers (1 s tick,
  10 s resync), as a share of one core; with sessions an hour old (their ages change
  once a minute) and, for information, with sessions under a minute old (every visible
  age changes every second).
- ``podwarden --help`` and the time until the first screen (and until the embedded
  backend is up) of the real console script in a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from textual.drivers.headless_driver import HeadlessDriver  # noqa: E402

from backend.client import LocalClient  # noqa: E402
from backend.config import Settings  # noqa: E402
from backend.runtime.memory import MemoryRuntime  # noqa: E402
from backend.service import Backend  # noqa: E402
from backend.templates import Template  # noqa: E402
from tui.app import PodwardenApp, make_app  # noqa: E402
from tui.settings import TuiSettings  # noqa: E402

SESSIONS = 1000
SIZE = (120, 40)


class FrameDriver(HeadlessDriver):
    """Renders every frame as a terminal driver would, then drops the bytes."""

    frames = 0
    written = asyncio.Event()
    last_write = 0.0
    writes: list[float] = []

    @property
    def is_headless(self) -> bool:
        return False

    def write(self, data: str) -> None:
        FrameDriver.frames += 1
        FrameDriver.last_write = time.perf_counter()
        FrameDriver.writes.append(FrameDriver.last_write)
        del FrameDriver.writes[:-64]
        FrameDriver.written.set()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Life:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def start(self) -> None:
        await self.backend.start()

    async def stop(self) -> None:
        await self.backend.stop()


def build(tmp: str, age: float = 0.0, **tui: Any) -> tuple[PodwardenApp, Backend, LocalClient]:
    settings = Settings(state_dir=Path(tmp))
    settings.templates = {"demo": Template(name="demo", command=["demo"])}
    settings.pool.max_sessions = SESSIONS + 10
    settings.tunnels.port_max = settings.tunnels.port_min + SESSIONS + 100
    runtime = MemoryRuntime()
    backend = Backend(settings, runtime=runtime, persist=False)
    runtime._logs = backend.logs
    backend.pool.clock = lambda: time.time() - age  # sessions created ``age`` s ago
    client = LocalClient(backend, api_address="127.0.0.1:5010")
    app = make_app(client, TuiSettings(cursor_blink=False, **tui), _Life(backend))
    app.driver_class = FrameDriver
    return app, backend, client


async def quiet(app: PodwardenApp) -> None:
    for _ in range(2000):
        await asyncio.sleep(0.005)
        busy = [w for w in app.workers if w.group != "events" and not w.is_finished]
        if app.started and app.is_quiet() and not busy:
            return


async def next_frame(after: float, timeout: float = 2.0) -> float:
    """The time of the first frame written at or after ``after``."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        for written in FrameDriver.writes:
            if written >= after:
                return written
        FrameDriver.written.clear()
        try:
            await asyncio.wait_for(FrameDriver.written.wait(), 0.05)
        except TimeoutError:
            pass
    return float("nan")


async def key_latencies(app: PodwardenApp, presses: int) -> list[float]:
    """Send keys as the terminal driver does; time each until its frame is written.

    A press is done when the cursor has moved (the key was handled) *and* a frame was
    written after that: the terminal has the new screen.
    """
    from textual import events

    assert app.main is not None and app._driver is not None
    table = app.main.table
    moved: list[float] = []
    handled = asyncio.Event()
    forward = table.on_select

    def on_select(session_id: str | None) -> None:
        moved.append(time.perf_counter())  # the key is handled: the cursor moved
        handled.set()
        if forward is not None:
            forward(session_id)

    table.on_select = on_select
    out = []
    for i in range(presses):
        key = "down" if i % 40 < 20 else "up"
        moved.clear()
        handled.clear()
        t0 = time.perf_counter()
        app._driver.send_message(events.Key(key, None))
        await handled.wait()
        t1 = await next_frame(moved[0])
        out.append((t1 - t0) * 1000)
        await asyncio.sleep(0.01)  # a human-ish gap: no queue of keys
    table.on_select = forward
    return out


async def load(client: LocalClient, rate: float, stop: asyncio.Event) -> None:
    """Reuse random sessions at ``rate`` per second: real events and real cell changes."""
    i = 0
    while not stop.is_set():
        await client.acquire(f"u{(i * 37) % SESSIONS:04d}")
        i += 1
        await asyncio.sleep(1 / rate)


async def idle_cpu(app: PodwardenApp, seconds: float = 10.0) -> float:
    """Share of one core the process uses while nothing changes in the pool."""
    await quiet(app)
    await asyncio.sleep(1.5)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)


async def run_console(age: float, full: bool) -> dict[str, float]:
    """Seed 1,000 sessions created ``age`` seconds ago; measure (all, or idle only)."""
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app, backend, client = build(tmp, age)

        async def bench(pilot: Any) -> None:
            await quiet(app)
            for i in range(SESSIONS):
                await client.acquire(f"u{i:04d}")
            main = app.main
            assert main is not None
            for _ in range(50):  # until the console shows every session
                app.request_sync(full=True)
                await quiet(app)
                if main.table.row_count == SESSIONS:
                    break
            assert main.table.row_count == SESSIONS, main.table.row_count
            main.table.move_cursor(row=SESSIONS // 2)
            await pilot.pause()
            if not full:
                results["idle_cpu_pct"] = await idle_cpu(app)
                app.exit()
                return
            await asyncio.sleep(1.5)  # the console freezes its heap once changes settle

            idle = await key_latencies(app, 200)
            results["key_p50_ms"] = statistics.median(idle)
            results["key_p99_ms"] = pct(idle, 0.99)

            stop = asyncio.Event()
            loader = asyncio.create_task(load(client, 50, stop))
            await asyncio.sleep(0.5)
            busy = await key_latencies(app, 200)
            stop.set()
            await loader
            results["key_load_p50_ms"] = statistics.median(busy)
            results["key_load_p99_ms"] = pct(busy, 0.99)
            await quiet(app)

            # Every row changed: documents -> cells, and -> the next frame.
            cells, frames = [], []
            for _ in range(10):
                for session in backend.pool.list():
                    session.use_count += 1
                docs = await client.list_sessions()
                t0 = time.perf_counter()
                changed, removed = app.view.apply(docs, complete=True)
                main.show(changed, removed, app.clock())
                t1 = time.perf_counter()
                t2 = await next_frame(t1)
                assert len(changed) == SESSIONS
                cells.append((t1 - t0) * 1000)
                frames.append((t2 - t0) * 1000)
            results["refresh_all_ms"] = statistics.median(cells)
            results["refresh_all_frame_ms"] = statistics.median(frames)
            t0 = time.perf_counter()
            main.table.rebuild(app.view, app.clock())
            results["rebuild_all_ms"] = (time.perf_counter() - t0) * 1000

            results["idle_cpu_pct"] = await idle_cpu(app)
            app.exit()

        await app.run_async(headless=False, size=SIZE, mouse=False, auto_pilot=bench)
    return results


def console_script() -> str:
    local = Path(sys.executable).parent / "podwarden"
    return str(local) if local.exists() else (shutil.which("podwarden") or "podwarden")


def help_time(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([console_script(), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def first_screen(timeout: float = 10.0) -> tuple[float, float]:
    """Seconds until the first screen shows, and until the embedded backend is up."""
    exe = console_script()
    with tempfile.TemporaryDirectory() as state:
        t0 = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:  # child
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.environ["TERM"] = "xterm-256color"
            os.execv(exe, [exe, "--state-dir", state, "--port", "0"])
        seen: dict[bytes, float] = {}
        buffer = b""
        while time.perf_counter() - t0 < timeout and len(seen) < 2:
            ready, _, _ = select.select([fd], [], [], 0.02)
            if not ready:
                continue
            try:
                buffer += os.read(fd, 65536)
            except OSError:
                break
            for mark in (b"Sessions", b"EMBEDDED"):
                if mark in buffer and mark not in seen:
                    seen[mark] = time.perf_counter() - t0
        os.write(fd, b"q")
        deadline = time.time() + 5
        while time.time() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            try:
                os.read(fd, 65536)
            except OSError:
                pass
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    return seen.get(b"Sessions", float("nan")), seen.get(b"EMBEDDED", float("nan"))


def main() -> None:
    console = asyncio.run(run_console(age=3600.0, full=True))
    young = asyncio.run(run_console(age=0.0, full=False))
    console["idle_young_cpu_pct"] = young["idle_cpu_pct"]
    help_s = help_time()
    starts = [first_screen() for _ in range(3)]
    first = statistics.median(s[0] for s in starts)
    backend_up = statistics.median(s[1] for s in starts)
    rows = [
        ("key to screen p50, 1,000 sessions", console["key_p50_ms"], "ms", "< 20"),
        ("key to screen p99, 1,000 sessions", console["key_p99_ms"], "ms", "< 100"),
        ("key to screen p50, + 50 events/s", console["key_load_p50_ms"], "ms", "< 20"),
        ("key to screen p99, + 50 events/s", console["key_load_p99_ms"], "ms", "< 100"),
        ("refresh all 1,000 rows (docs -> cells)", console["refresh_all_ms"], "ms", "< 50"),
        ("refresh all 1,000 rows, to frame", console["refresh_all_frame_ms"], "ms", ""),
        ("rebuild table (filter/sort/resize)", console["rebuild_all_ms"], "ms", ""),
        ("idle CPU, pool unchanged (sessions 1 h old)", console["idle_cpu_pct"], "% core", "< 2"),
        ("idle CPU, sessions < 1 min (ages tick 1/s)", console["idle_young_cpu_pct"], "%", ""),
        ("podwarden --help", help_s * 1000, "ms", "< 300"),
        ("first screen (80x24 pty)", first * 1000, "ms", "< 1500"),
        ("embedded backend + API up", backend_up * 1000, "ms", ""),
    ]
    print(f"console benchmark ({SESSIONS} sessions, {SIZE[0]}x{SIZE[1]}, memory runtime)")
    print(f"{'measure':42} {'value':>10} {'unit':7} {'goal':>7}")
    for label, value, unit, goal in rows:
        print(f"{label:42} {value:10.2f} {unit:7} {goal:>7}")
    print(
        json.dumps(
            {
                "bench": "tui",
                "sessions": SESSIONS,
                **{k: round(v, 3) for k, v in console.items()},
                "help_ms": round(help_s * 1000, 1),
                "first_screen_ms": round(first * 1000, 1),
                "backend_up_ms": round(backend_up * 1000, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
