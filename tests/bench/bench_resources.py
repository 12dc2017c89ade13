"""What sampling CPU and memory costs: one round, and the daemon's idle CPU with it.

Run: ``python tests/bench/bench_resources.py [--sessions 10] [--window 10] [--pairs 3]``

A backend on the real local runtime holds ``--sessions`` live sessions, each an idle
Python server (its own process group). Measured in one run:

- ``round``: one ``ResourceSampler.round()`` (a pass over every pid, psutil for each
  session's processes, the host's CPU times and memory, in a worker thread): wall time
  and CPU time of this process, medians of 50, with the sessions and with none;
- ``idle``: this process's CPU over ``--window`` seconds of an idle pool (no requests),
  sampling at the default ``pool.resources_interval`` against sampling off, in
  interleaved pairs (the machine is shared); medians, their difference and ratio. The
  other background tasks (liveness checks every 5 s, the culler) run in both.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.config import Settings  # noqa: E402
from backend.service import Backend  # noqa: E402
from backend.templates import Template  # noqa: E402
from tests.backend.conftest import free_port_range  # noqa: E402

IDLE = r"""
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    conn.close()
"""


def settings(state: Path, interval: float) -> Settings:
    s = Settings(state_dir=state)
    s.pool.resources_interval = interval
    s.tunnels.port_min, s.tunnels.port_max = free_port_range(100)
    s.templates["idle"] = Template(
        name="idle", command=[sys.executable, "-S", "-c", IDLE, "{port}"]
    )
    s.default_template = "idle"
    s.validate()
    return s


async def round_cost(backend: Backend, rounds: int = 50) -> tuple[float, float]:
    """Median (wall ms, CPU ms of this process) of one sampler round."""
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        await backend.resources.round()
        cpus.append((time.process_time() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
    return statistics.median(walls), statistics.median(cpus)


async def idle_cpu(backend: Backend, window: float) -> float:
    """Percent of one core this process used over ``window`` seconds."""
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(window)
    return 100 * (time.process_time() - cpu) / (time.monotonic() - wall)


async def main(sessions: int, window: float, pairs: int) -> None:
    default = Settings().pool.resources_interval
    with tempfile.TemporaryDirectory(prefix="podwarden-bench-res-") as tmp:
        state = Path(tmp) / "state"
        empty = Backend(settings(Path(tmp) / "empty", 0), persist=False)
        await empty.start()
        try:
            empty_wall, empty_cpu = await round_cost(empty)
        finally:
            await empty.stop()

        # One state directory, two backends in turn: sessions survive each stop and are
        # re-adopted by the next start, so both measure the same processes.
        on, off = settings(state, default), settings(state, 0)
        backend = Backend(on)
        await backend.start()
        for i in range(sessions):
            await backend.pool.acquire(f"user{i:02d}")
        wall_ms, cpu_ms = await round_cost(backend)
        await backend.stop()
        with_sampling: list[float] = []
        without: list[float] = []
        for n in range(pairs):
            for chosen, out in ((on, with_sampling), (off, without)):
                backend = Backend(chosen)
                await backend.start()
                await asyncio.sleep(1.5)  # past the first two samples (at 0 s and 1 s)
                out.append(await idle_cpu(backend, window))
                await backend.stop(stop_sessions=n == pairs - 1 and chosen is off)
    on_pct, off_pct = statistics.median(with_sampling), statistics.median(without)
    print(f"resource sampling, local runtime, {sessions} idle sessions\n")
    print(f"{'what':<44}{'figure':>12}")
    print(f"{'one round, wall (p50)':<44}{wall_ms:>10.2f}ms")
    print(f"{'one round, CPU of the daemon (p50)':<44}{cpu_ms:>10.2f}ms")
    print(
        f"{'one round with no session, wall / CPU (p50)':<44}{empty_wall:>5.2f} / {empty_cpu:.2f}ms"
    )
    print(f"{f'rounds per minute (every {default:g} s)':<44}{60 / default:>12.0f}")
    print(f"{'sampling CPU, estimated (round CPU / interval)':<44}{cpu_ms / default / 10:>11.3f}%")
    print(f"{'idle CPU with sampling (median)':<44}{on_pct:>11.3f}%")
    print(f"{'idle CPU without sampling (median)':<44}{off_pct:>11.3f}%")
    print(f"{'difference':<44}{on_pct - off_pct:>11.3f}%")
    print(
        json.dumps(
            {
                "bench": "resources",
                "sessions": sessions,
                "interval_s": default,
                "round_wall_ms": round(wall_ms, 3),
                "round_cpu_ms": round(cpu_ms, 3),
                "round_empty_wall_ms": round(empty_wall, 3),
                "round_empty_cpu_ms": round(empty_cpu, 3),
                "estimated_cpu_pct": round(cpu_ms / default / 10, 4),
                "idle_cpu_pct_on": round(on_pct, 3),
                "idle_cpu_pct_off": round(off_pct, 3),
                "idle_cpu_pct_diff": round(on_pct - off_pct, 3),
                "windows_s": window,
                "pairs": pairs,
                "ok": on_pct < 2.0,
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.window, args.pairs))
