"""Benchmark: from a change in the backend to the console's changed frame.

Run: ``python tests/bench/bench_events.py [--probes N]``. Prints a table, then ONE JSON
line (last). Bounded: ``--probes`` changes per mode (150), one every ~60 ms, each waited
for at most 2 s; about a minute in all.

The pool holds 1,000 sessions (memory runtime, an hour old) and a load of 50 events a
second (reuses of random sessions, each an event carrying its session's document) runs
throughout.
Each probe reuses a session whose row is on screen, which changes its USES cell; the
latency is from the backend's change (the ``ts`` of the event it published, the Unix
time in either process) to the first frame written after the table took the new cell.
For information, the same from just before the request was sent. The console runs
with its default timers (0.25 s flush, 1 s tick, 10 s full re-read), rendering every
frame like a terminal driver.

- embedded: backend and console in one loop; the change is ``LocalClient.acquire``.
- remote: the backend serves the HTTP API (``serve_api``, what ``podwarden serve``
  runs) in a subprocess on 127.0.0.1; the console uses its remote client
  (``HttpClient``, the SSE stream), and the change is a ``POST /sessions`` over HTTP
  from the console's process (sent from its loop, so "from the request" also counts
  waiting for the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402
from rich.text import Text  # noqa: E402

from backend.config import Settings  # noqa: E402
from backend.http_client import HttpClient  # noqa: E402
from backend.runtime.memory import MemoryRuntime  # noqa: E402
from backend.service import Backend  # noqa: E402
from backend.templates import Template  # noqa: E402
from tests.bench.bench_tui import (  # noqa: E402
    SESSIONS,
    SIZE,
    FrameDriver,
    build,
    next_frame,
    pct,
    quiet,
)
from tui.app import PodwardenApp, make_app  # noqa: E402
from tui.settings import TuiSettings  # noqa: E402

RATE = 50.0
"""Background events a second."""
AGE = 3600.0
"""Sessions were created an hour ago (as in ``bench_tui``): their ages change once a
minute, so what a frame shows is the change, not every age ticking each second."""
TOKEN = "bench-token-0123456789abcdef"

Acquire = Callable[[str], Awaitable[Any]]


async def load(acquire: Acquire, stop: asyncio.Event) -> int:
    """Reuse random sessions at ``RATE`` a second until ``stop``; how many."""
    rng = random.Random(7)
    sent = 0
    started = time.perf_counter()
    while not stop.is_set():
        await acquire(f"u{rng.randrange(SESSIONS):04d}")
        sent += 1
        due = started + sent / RATE
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
    return sent


async def seeded(app: PodwardenApp, acquire: Acquire) -> None:
    """1,000 sessions, all shown in the table, the cursor in the middle."""
    await quiet(app)
    for i in range(SESSIONS):
        await acquire(f"u{i:04d}")
    main = app.main
    assert main is not None
    for _ in range(400):
        if main.table.row_count == SESSIONS:
            break
        app.request_sync(full=True)
        await asyncio.sleep(0.05)
    assert main.table.row_count == SESSIONS, main.table.row_count
    main.table.move_cursor(row=SESSIONS // 2)
    await asyncio.sleep(1.5)  # the first frames and the heap freeze settle


Probe = tuple[float, float]
"""One probe: ms from the backend's publish to the frame, and from the request."""


async def probes(app: PodwardenApp, acquire: Acquire, count: int) -> tuple[list[Probe], int]:
    """Change a visible session ``count`` times under load; latencies to its frame."""
    main = app.main
    assert main is not None
    table = main.table
    write, consume = table._write, app.consume_events
    taken: dict[str, float] = {}
    published: dict[str, float] = {}
    arrived = asyncio.Event()
    target = {"sid": ""}

    def spy(updates: list[tuple[str, str, Text]]) -> None:
        write(updates)
        for sid, key, _ in updates:
            if sid == target["sid"] and key == "uses" and sid not in taken:
                taken[sid] = time.perf_counter()
                arrived.set()

    def events(batch: list[dict[str, Any]]) -> None:
        for event in batch:
            sid = event.get("session_id")
            if sid == target["sid"] and event.get("kind") == "reused" and sid not in published:
                published[sid] = float(event["ts"])  # the backend's clock: time.time()
        consume(batch)

    table._write = spy  # type: ignore[method-assign]
    app.consume_events = events  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    loader = asyncio.create_task(load(acquire, stop))
    await asyncio.sleep(0.5)
    out: list[Probe] = []
    missed = 0
    rng = random.Random(11)
    wall = time.time() - time.perf_counter()  # perf_counter + wall: the Unix time
    try:
        for _ in range(count):
            sid = rng.choice(sorted(table._visible_ids()))
            user = app.view.sessions[sid]["user"]
            taken.pop(sid, None)
            published.pop(sid, None)
            target["sid"] = sid
            arrived.clear()
            t0 = time.perf_counter()
            await acquire(user)
            try:
                await asyncio.wait_for(arrived.wait(), 2.0)
            except TimeoutError:
                missed += 1
                continue
            t1 = await next_frame(taken[sid])
            if t1 != t1 or sid not in published:  # nan: no frame
                missed += 1
                continue
            out.append(((t1 + wall - published[sid]) * 1000, (t1 - t0) * 1000))
            await asyncio.sleep(rng.uniform(0.03, 0.09))
    finally:
        stop.set()
        await loader
        table._write = write  # type: ignore[method-assign]
        app.consume_events = consume  # type: ignore[method-assign]
    return out, missed


def fresh_driver() -> None:
    """The frame driver's event belongs to one loop: a new one for each run."""
    FrameDriver.written = asyncio.Event()
    FrameDriver.writes = []


async def embedded(count: int) -> dict[str, float]:
    fresh_driver()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app, _backend, client = build(tmp, AGE)

        async def acquire(user: str) -> Any:
            return await client.acquire(user)

        async def bench(pilot: Any) -> None:
            await seeded(app, acquire)
            got, missed = await probes(app, acquire, count)
            results.update(summary(got, missed))
            app.exit()

        await app.run_async(headless=False, size=SIZE, mouse=False, auto_pilot=bench)
    return results


async def remote(count: int) -> dict[str, float]:
    fresh_driver()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), url
            app = make_app(HttpClient(url, TOKEN), TuiSettings(cursor_blink=False))
            app.driver_class = FrameDriver
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as http:

                async def acquire(user: str) -> Any:
                    response = await http.post("/sessions", json={"user": user})
                    response.raise_for_status()
                    return response.json()

                async def bench(pilot: Any) -> None:
                    await seeded(app, acquire)
                    got, missed = await probes(app, acquire, count)
                    results.update(summary(got, missed))
                    app.exit()

                await app.run_async(headless=False, size=SIZE, mouse=False, auto_pilot=bench)
        finally:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return results


def summary(got: list[Probe], missed: int) -> dict[str, float]:
    change = [c for c, _ in got]
    request = [r for _, r in got]
    return {
        "probes": float(len(got)),
        "missed": float(missed),
        "p50_ms": statistics.median(change),
        "p99_ms": pct(change, 0.99),
        "max_ms": max(change),
        "request_p50_ms": statistics.median(request),
        "request_p99_ms": pct(request, 0.99),
    }


async def serve(state_dir: str) -> None:
    """The remote side: a memory-runtime backend behind the real API server."""
    from backend.api.server import serve_api

    settings = Settings(state_dir=Path(state_dir))
    settings.templates = {"demo": Template(name="demo", command=["demo"])}
    settings.pool.max_sessions = SESSIONS + 10
    settings.tunnels.port_max = settings.tunnels.port_min + SESSIONS + 100
    runtime = MemoryRuntime()
    backend = Backend(settings, runtime=runtime, persist=False)
    runtime._logs = backend.logs
    backend.pool.clock = lambda: time.time() - AGE
    await backend.start()
    server = await serve_api(backend, "127.0.0.1", 0, token=TOKEN)
    print(server.url, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    await server.stop()
    await backend.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=150)
    parser.add_argument("--serve", metavar="STATE_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    modes = {
        "embedded": asyncio.run(embedded(args.probes)),
        "remote": asyncio.run(remote(args.probes)),
    }
    print(
        f"backend change -> changed frame ({SESSIONS} sessions, {RATE:g} events/s, "
        f"{SIZE[0]}x{SIZE[1]}, memory runtime)"
    )
    print("                  from the backend's change      from the request (info)")
    heads = ("p50 ms", "p99 ms", "max ms")
    print(f"{'mode':10} {'probes':>6} " + " ".join(f"{h:>8}" for h in heads), end="")
    print(f" {'p50 ms':>10} {'p99 ms':>8}")
    for mode, r in modes.items():
        print(
            f"{mode:10} {r['probes']:6.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['max_ms']:8.2f} {r['request_p50_ms']:10.2f} {r['request_p99_ms']:8.2f}"
            + (f"  ({r['missed']:.0f} missed)" if r["missed"] else "")
        )
    print("goal (from the change): p50 < 50 ms, p99 < 100 ms")
    print(
        json.dumps(
            {
                "bench": "events",
                "sessions": SESSIONS,
                "events_per_s": RATE,
                **{f"{m}_{k}": round(v, 3) for m, r in modes.items() for k, v in r.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
