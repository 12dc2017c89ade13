"""Cold start overhead of the local runtime beyond the workload's own start time.

Run: ``python tests/bench/bench_cold_start.py [--runs 20]``

The workload is a tiny Python server that notes ``time.monotonic()`` (one clock for all
processes on Linux) the moment it listens and prints it. For each run:

- ``spawn``: how long ``LocalRuntime.start`` took (port, directory, record, fork/exec);
- ``own``: from ``start`` returning to the workload listening: the interpreter's start-up
  and the workload's own work, which podwarden cannot make faster;
- ``detect``: from the workload listening to ``wait_ready`` returning: the readiness
  polling's lag plus the check itself;
- ``overhead`` = ``spawn`` + ``detect``: what podwarden adds. Goal: median < 50 ms.

Both readiness kinds are measured (``tcp``: the port accepts; ``http``: ``GET /health``
answers 200), interleaved. The last line printed is one JSON object with every figure.
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

from backend.events import EventBus  # noqa: E402
from backend.logs import SessionLogs  # noqa: E402
from backend.runtime.base import WorkloadSpec  # noqa: E402
from backend.runtime.local import LocalRuntime  # noqa: E402
from backend.templates import Template  # noqa: E402

WORKLOAD = r"""
import socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print(f"listening-at {time.monotonic()!r}", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
"""


def template(readiness: str) -> Template:
    return Template(
        name=f"bench-{readiness}",
        command=[sys.executable, "-S", "-c", WORKLOAD, "{port}"],
        readiness=readiness,
        readiness_path="/health",
    )


async def one_run(runtime: LocalRuntime, state: Path, readiness: str, n: int) -> dict[str, float]:
    session_id = f"bench-{readiness}-{n}"
    spec = WorkloadSpec(session_id, "bench", template(readiness), state / "sessions" / session_id)
    t0 = time.monotonic()
    handle = await runtime.start(spec, lambda _: None)
    t1 = time.monotonic()
    await runtime.wait_ready(handle, spec, 30, lambda _: None)
    t2 = time.monotonic()
    log = (state / "sessions" / session_id / "workload.log").read_text()
    listening = float(log.split("listening-at ", 1)[1].split()[0])
    report = await runtime.stop(handle, 5)
    if not report.verified:
        raise SystemExit(f"stop left {report.leftovers}")
    ms = 1000.0
    return {
        "spawn_ms": (t1 - t0) * ms,
        "own_ms": (listening - t1) * ms,
        "detect_ms": (t2 - listening) * ms,
        "overhead_ms": ((t1 - t0) + (t2 - listening)) * ms,
        "total_ms": (t2 - t0) * ms,
    }


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="podwarden-bench-") as tmp:
        state = Path(tmp)
        runtime = LocalRuntime(state, SessionLogs(EventBus(), limit=50))
        results: dict[str, list[dict[str, float]]] = {"tcp": [], "http": []}
        started = time.monotonic()
        try:
            for kind in results:  # warm-up, not counted
                await one_run(runtime, state, kind, -1)
            for n in range(runs):
                for kind in results:
                    results[kind].append(await one_run(runtime, state, kind, n))
        finally:
            await runtime.close()
        elapsed = time.monotonic() - started

    print(f"local runtime cold start: {runs} runs per readiness kind, {elapsed:.1f}s\n")
    keys = ["spawn_ms", "own_ms", "detect_ms", "overhead_ms", "total_ms"]
    print(f"{'readiness':<10}" + "".join(f"{k.removesuffix('_ms') + ' p50':>14}" for k in keys))
    figures: dict[str, dict[str, float]] = {}
    for kind, rows in results.items():
        medians = {k: round(statistics.median(r[k] for r in rows), 2) for k in keys}
        medians["overhead_p90_ms"] = round(
            sorted(r["overhead_ms"] for r in rows)[int(0.9 * (len(rows) - 1))], 2
        )
        figures[kind] = medians
        print(f"{kind:<10}" + "".join(f"{medians[k]:>14.1f}" for k in keys))
    worst = max(f["overhead_ms"] for f in figures.values())
    verdict = "ok" if worst < 50 else "MISSED"
    print(f"\noverhead median {worst:.1f} ms (goal < 50 ms) -> {verdict}")
    print(json.dumps({"bench": "cold_start", "runs": runs, "kinds": figures, "ok": worst < 50}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args().runs))
