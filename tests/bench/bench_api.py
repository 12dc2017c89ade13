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

import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

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


# ----------------------------------------------------------------------------- client


def request_bytes(path: str, token: str | None, body: bytes = b"") -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: bench", "Content-Type: application/json"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _parse(buffer: bytearray) -> tuple[int, bytes] | None:
    """(status, body) of the first complete response in ``buffer`` (removed), or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    total = end + 4 + length
    if len(buffer) < total:
        return None
    body = bytes(buffer[end + 4 : total])
    del buffer[:total]
    return int(head[0].split(" ", 2)[1]), body


class BlockingClient:
    """One keep-alive connection; ``call`` sends a request and reads the response."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def call(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        while True:
            parsed = _parse(self.buffer)
            if parsed is not None:
                return parsed
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def latency_c1(port: int, requests: list[bytes], count: int) -> dict[str, float]:
    client = BlockingClient(port)
    try:
        for request in requests[:200]:  # warm up
            client.call(request)
        samples = []
        started = time.perf_counter()
        for i in range(count):
            request = requests[i % len(requests)]
            t0 = time.perf_counter_ns()
            status, _ = client.call(request)
            samples.append(time.perf_counter_ns() - t0)
            if status != 200:
                raise RuntimeError(f"status {status}")
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    samples.sort()
    return {
        "p50_ms": samples[len(samples) // 2] / 1e6,
        "p99_ms": samples[int(len(samples) * 0.99)] / 1e6,
        "mean_ms": statistics.fmean(samples) / 1e6,
        "rps": count / elapsed,
    }


class _Conn(asyncio.Protocol):
    def __init__(self, requests: list[bytes], stats: dict[str, int], done: asyncio.Event) -> None:
        self.requests = requests
        self.stats = stats
        self.done = done
        self.buffer = bytearray()
        self.i = random.randrange(len(requests))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.i = (self.i + 1) % len(self.requests)
        self.transport.write(self.requests[self.i])  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (parsed := _parse(self.buffer)) is not None:
            self.stats["ok" if parsed[0] == 200 else "bad"] += 1
            if self.done.is_set():
                self.transport.close()
                return
            self._send()


async def _throughput(
    port: int, requests: list[bytes], concurrency: int, seconds: float
) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    stats = {"ok": 0, "bad": 0}
    done = asyncio.Event()
    conns = [
        await loop.create_connection(lambda: _Conn(requests, stats, done), "127.0.0.1", port)
        for _ in range(concurrency)
    ]
    await asyncio.sleep(0.3)  # warm up
    first = stats["ok"]
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    ok = stats["ok"] - first
    elapsed = time.perf_counter() - t0
    done.set()
    for transport, _ in conns:
        transport.close()
    if stats["bad"]:
        raise RuntimeError(f"{stats['bad']} requests failed")
    return ok / elapsed, stats["ok"]


def throughput(server: Server, requests: list[bytes], concurrency: int, seconds: float) -> Load:
    """Requests per second at ``concurrency``, and the server's CPU time per request."""
    cpu = cpu_seconds(server.pid)
    run: Callable[..., tuple[float, int]] = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    rps, count = run(_throughput(server.port, requests, concurrency, seconds))
    return Load(rps, (cpu_seconds(server.pid) - cpu) / count * 1e6)


@dataclass
class Load:
    rps: float
    cpu_us: float
    """Server CPU microseconds per request (robust against a busy machine)."""


# ----------------------------------------------------------------------------- servers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    port: int
    pid: int


@contextmanager
def running(argv: list[str], env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start a server process; yield its port and pid; SIGTERM it at the end."""
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        port = None
        seen = []
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "serving http://" in line:
                port = int(line.split("serving http://", 1)[1].split()[0].rsplit(":", 1)[1])
        if port is None:
            raise RuntimeError("server did not start:\n" + "".join(seen[-20:]))
        # keep draining stderr so the server never blocks on a full pipe
        import threading

        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield Server(port, proc.pid)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
