"""Benchmark: warm reuse over HTTP with keep-alive, against a bare FastAPI route.

Run as ``python tests/bench/bench_api.py``. It starts the servers itself, each in its own
process on loopback with uvloop and httptools, exactly as ``podwarden serve`` runs:

1. ``podwarden serve`` on the in-memory runtime (``tests/bench/memory_server.py``) with
   1,000 live sessions (1,000 users); warm reuse (``POST /sessions`` for a random one of
   them) at concurrency 1 (p50, p99) and at concurrency 50 (requests per second);
2. a bare FastAPI route on the same uvicorn settings, measured the same way: the floor;
3. ``podwarden serve`` on the local runtime with the shipped ``demo`` template: the cold
   start (a new user: process, simulated login, readiness) against the warm reuse.

The client is a minimal HTTP/1.1 keep-alive client (blocking socket at concurrency 1,
asyncio protocols at 50) so its own cost stays far below the server's. Counts and times
are bounded; the last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import json
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import (  # noqa: E402
    BlockingClient,
    latency_c1,
    request_bytes,
    running,
    throughput,
)

SESSIONS = 1000
C1_REQUESTS = 5000
C50_SECONDS = 3.0
CONCURRENCY = 50
COLD_USERS = 3

BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.post("/bare")
async def bare() -> dict[str, bool]:
    return {"ok": True}
config = uvicorn.Config(app, host="127.0.0.1", port=0, loop="uvloop", http="httptools",
                        access_log=False, log_level="warning")
sock = config.bind_socket()
class Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        print("serving http://127.0.0.1:%d" % sock.getsockname()[1], file=sys.stderr, flush=True)
Server(config).run(sockets=[sock])
"""


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def bench_pool(tmp: Path) -> dict[str, float]:
    state = tmp / "memory"
    config = write_config(
        tmp / "memory.toml",
        "[pool]\nmax_sessions_per_user = 1\nrefresh_interval = 3600\n"
        "[tunnels]\nport_min = 20000\nport_max = 29999\n",
    )
    argv = [sys.executable, str(ROOT / "tests/bench/memory_server.py"), "serve", "--port", "0"]
    argv += ["--state-dir", str(state), "--config", str(config)]
    argv += ["--max-sessions", str(SESSIONS), "--stop-sessions-on-exit", "--log-level", "warning"]
    with running(argv) as server:
        port = server.port
        token = (state / "token").read_text().strip()
        users = [f"user{i:04d}" for i in range(SESSIONS)]
        requests = [
            request_bytes("/sessions", token, json.dumps({"user": u}).encode()) for u in users
        ]
        client = BlockingClient(port)
        created = time.perf_counter()
        for request in requests:
            status, body = client.call(request)
            assert status == 200 and json.loads(body)["is_new_session"], body[:200]
        created = time.perf_counter() - created
        status, body = client.call(requests[7])
        assert json.loads(body)["is_new_session"] is False
        client.close()
        random.shuffle(requests)
        c1 = latency_c1(port, requests, C1_REQUESTS)
        load = throughput(server, requests, CONCURRENCY, C50_SECONDS)
    return {
        "create_1000_s": created,
        "c1_p50_ms": c1["p50_ms"],
        "c1_p99_ms": c1["p99_ms"],
        "c1_rps": c1["rps"],
        "c50_rps": load.rps,
        "cpu_us": load.cpu_us,
    }


def bench_bare() -> dict[str, float]:
    with running([sys.executable, "-c", BARE_APP]) as server:
        requests = [request_bytes("/bare", None)]
        c1 = latency_c1(server.port, requests, C1_REQUESTS)
        load = throughput(server, requests, CONCURRENCY, C50_SECONDS)
    return {
        "c1_p50_ms": c1["p50_ms"],
        "c1_p99_ms": c1["p99_ms"],
        "c1_rps": c1["rps"],
        "c50_rps": load.rps,
        "cpu_us": load.cpu_us,
    }


def bench_cold_warm(tmp: Path) -> dict[str, float] | str:
    try:
        import backend.runtime.local  # noqa: F401
    except ImportError:
        return "skipped: the local runtime (backend.runtime.local) is not available"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1] % 20000 + 30000
    state = tmp / "local"
    config = write_config(
        tmp / "local.toml",
        f"[pool]\nrefresh_interval = 3600\n[tunnels]\nport_min = {base}\nport_max = {base + 50}\n",
    )
    argv = [sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--log-level", "warning"]
    argv += ["--state-dir", str(state), "--config", str(config), "--stop-sessions-on-exit"]
    with running(argv) as server:
        port = server.port
        token = (state / "token").read_text().strip()
        client = BlockingClient(port)
        colds = []
        requests = []
        for i in range(COLD_USERS):
            request = request_bytes("/sessions", token, json.dumps({"user": f"cold{i}"}).encode())
            t0 = time.perf_counter()
            status, body = client.call(request)
            colds.append(time.perf_counter() - t0)
            assert status == 200 and json.loads(body)["is_new_session"], body[:300]
            requests.append(request)
        client.close()
        warm = latency_c1(port, requests, 2000)
    cold = statistics.median(colds)
    return {
        "cold_s": cold,
        "warm_p50_ms": warm["p50_ms"],
        "ratio": cold / (warm["p50_ms"] / 1000),
    }


# ----------------------------------------------------------------------------- report


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="podwarden-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bare = bench_bare()
        pool = bench_pool(tmp)
        local = bench_cold_warm(tmp)
    rows = [
        ("bare FastAPI route, c=1 p50", f"{bare['c1_p50_ms']:.3f} ms", ""),
        ("bare FastAPI route, c=1 p99", f"{bare['c1_p99_ms']:.3f} ms", ""),
        ("bare FastAPI route, c=50", f"{bare['c50_rps']:,.0f} req/s", ""),
        ("bare FastAPI route, server CPU per request", f"{bare['cpu_us']:.0f} us", ""),
        ("warm reuse, 1,000 sessions, c=1 p50", f"{pool['c1_p50_ms']:.3f} ms", "< 1 ms"),
        ("warm reuse, 1,000 sessions, c=1 p99", f"{pool['c1_p99_ms']:.3f} ms", "< 5 ms"),
        ("warm reuse, 1,000 sessions, c=50", f"{pool['c50_rps']:,.0f} req/s", ">= 4,000"),
        ("warm reuse, server CPU per request", f"{pool['cpu_us']:.0f} us", ""),
        ("create 1,000 sessions (memory runtime)", f"{pool['create_1000_s']:.2f} s", ""),
    ]
    ok = pool["c1_p50_ms"] < 1 and pool["c1_p99_ms"] < 5 and pool["c50_rps"] >= 4000
    if isinstance(local, dict):
        rows += [
            ("demo cold start (local runtime)", f"{local['cold_s'] * 1000:.0f} ms", ""),
            ("demo warm reuse p50 (local runtime)", f"{local['warm_p50_ms']:.3f} ms", ""),
            ("cold / warm", f"{local['ratio']:,.0f}x", ">= 1,000x"),
        ]
        ok = ok and local["ratio"] >= 1000
    else:
        rows.append(("demo cold / warm", local, ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>14}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>14}  {target}")
    summary = {
        "bench": "api",
        "sessions": SESSIONS,
        "bare_c1_p50_ms": round(bare["c1_p50_ms"], 4),
        "bare_c1_p99_ms": round(bare["c1_p99_ms"], 4),
        "bare_c50_rps": round(bare["c50_rps"]),
        "bare_cpu_us": round(bare["cpu_us"], 1),
        "reuse_c1_p50_ms": round(pool["c1_p50_ms"], 4),
        "reuse_c1_p99_ms": round(pool["c1_p99_ms"], 4),
        "reuse_c50_rps": round(pool["c50_rps"]),
        "reuse_cpu_us": round(pool["cpu_us"], 1),
        "cold_s": round(local["cold_s"], 3) if isinstance(local, dict) else None,
        "warm_local_p50_ms": round(local["warm_p50_ms"], 4) if isinstance(local, dict) else None,
        "cold_warm_ratio": round(local["ratio"]) if isinstance(local, dict) else None,
        "targets_met": ok,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
