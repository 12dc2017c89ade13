"""A burst on a full pool: 50 users at once on 5 slots, each start taking 0.5 s.

Under the default ``evict-lru`` every waiter should be served as soon as a session
becomes ready (and so evictable), first come first served, in waves of 5: ideally
10 waves x 0.5 s = 5 s for all. Runs on the in-memory runtime with the SQLite store on.

    python tests/bench/bench_burst.py

Goals: all 50 served (no 503), and the slowest request under 2x the ideal (10 s).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.config import Settings  # noqa: E402
from backend.errors import PodwardenError  # noqa: E402
from backend.runtime.memory import MemoryRuntime  # noqa: E402
from backend.service import Backend  # noqa: E402

USERS = 50
SLOTS = 5
START_S = 0.5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def burst(state_dir: Path) -> tuple[list[float], int, float]:
    settings = Settings(state_dir=state_dir)
    settings.pool.max_sessions = SLOTS
    settings.pool.refresh_interval = 3600
    runtime = MemoryRuntime()
    runtime.start_delay = START_S
    backend = Backend(settings, runtime=runtime)
    await backend.start()
    pool = backend.pool

    async def one(user: str) -> float | None:
        began = time.perf_counter()
        try:
            await pool.acquire(user)
        except PodwardenError:
            return None
        return time.perf_counter() - began

    try:
        began = time.perf_counter()
        results = await asyncio.wait_for(
            asyncio.gather(*(one(f"user{i:02}") for i in range(USERS))), 60
        )
        total = time.perf_counter() - began
    finally:
        await backend.stop(stop_sessions=True)
    served = [r for r in results if r is not None]
    return served, USERS - len(served), total


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        served, refused, total = await burst(Path(tmp) / "state")
    ideal = (USERS // SLOTS) * START_S
    p50, p99, slowest = statistics.median(served), percentile(served, 0.99), max(served)
    print(f"{USERS} users on {SLOTS} slots, {START_S:g} s start, evict-lru")
    print(f"{'served':24} {len(served):8}")
    print(f"{'refused':24} {refused:8}")
    print(f"{'time to serve all (s)':24} {total:8.2f}")
    print(f"{'per request p50 (s)':24} {p50:8.2f}")
    print(f"{'per request p99 (s)':24} {p99:8.2f}")
    print(f"{'slowest (s)':24} {slowest:8.2f}")
    print(f"{'ideal (waves x start)':24} {ideal:8.2f}")
    print(f"{'slowest / ideal':24} {slowest / ideal:8.2f}  (goal < 2, all served)")
    print(
        json.dumps(
            {
                "bench": "burst",
                "users": USERS,
                "slots": SLOTS,
                "start_s": START_S,
                "served": len(served),
                "refused": refused,
                "total_s": round(total, 3),
                "p50_s": round(p50, 3),
                "p99_s": round(p99, 3),
                "slowest_s": round(slowest, 3),
                "ideal_s": ideal,
                "slowest_over_ideal": round(slowest / ideal, 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
