"""A minimal HTTP/1.1 keep-alive load client and a server-process runner, for benchmarks.

The client is deliberately small (pre-built request bytes, a blocking socket at
concurrency 1, asyncio protocols at higher concurrency) so that its own cost stays far
below the server's on a two-core machine. The runner starts a server process, reads the
port from its ``serving http://...`` line, and measures the server's CPU time, which
stays meaningful when the machine is busy and wall-clock figures are not.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BlockingClient",
    "Load",
    "Server",
    "cpu_seconds",
    "latency_c1",
    "request_bytes",
    "running",
    "throughput",
]

ROOT = Path(__file__).resolve().parents[2]


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
