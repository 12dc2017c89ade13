"""Tunnel benchmark: our TcpRelay against socat and a direct loopback connection.

Run: ``python tests/bench/bench_tunnel.py [--mib 64] [--rounds 8] [--pings 4000] [--pin 1]
[--baseline REF]``

Every path is measured in the same run, rounds interleaved so drift hits all alike:

- ``direct``: the client talks to the target itself, the ceiling;
- ``socat``: ``socat -b65536 TCP-LISTEN:...,fork TCP:target`` (its own process);
- ``relay``: our ``TcpRelay`` on the default asyncio loop, in its own process;
- ``relay-uvloop``: the same on uvloop (when installed);
- ``relay-checked``: ``relay`` with the peer check every tunnel does by default (the
  connecting process's user looked up with one sock_diag request, ``backend.peers``);
- with ``--baseline REF``: ``relay@REF`` and ``relay-uvloop@REF`` run the ``backend``
  package of git revision ``REF`` (exported to a temporary directory), so a change to the
  relay is measured against the code before it in the same run.

Throughput: the client sends ``--mib`` MiB through the path to a sink that counts what
arrives and answers with the count once the sender half-closes; the time runs from the
first byte to that answer (so data buffered in the relay is not counted as delivered).
Latency: ``--pings`` 1-byte round trips to an echo server; "added" is the path's median
minus the direct median. Connect: ``--connects`` fresh connections, each timed from
``connect`` to the first echoed byte (what the peer check adds shows here). The last line
printed is one JSON object with every figure.

On a machine with other load, latency medians swing by tens of microseconds between
runs; ``--pin CPU`` puts every process of the benchmark on one CPU, which removes
cross-CPU wake-ups and most of that noise (throughput then measures work per byte).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 1024 * 1024


# --------------------------------------------------------------------------- roles


def _serve(port: int, handler: Callable[[socket.socket], None]) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=64)

    def accept_loop() -> None:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()


def _sink(conn: socket.socket) -> None:
    buf = bytearray(CHUNK)
    total = 0
    with conn:
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            total += n
        conn.sendall(struct.pack("!Q", total))


def _echo(conn: socket.socket) -> None:
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def role_target(sink_port: int, echo_port: int) -> None:
    _serve(sink_port, _sink)
    _serve(echo_port, _echo)
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin


def role_relay(listen: int, target: int, loop_kind: str, root: str, check: bool) -> None:
    sys.path.insert(0, root or str(ROOT))
    from backend.tunnels import TcpRelay

    # A baseline revision may predate the peer check, so its relay is opened without it.
    extra: dict[str, Any] = {}
    if check:
        from backend.peers import PeerPolicy

        extra["admit"] = PeerPolicy(frozenset()).admits

    async def main() -> None:
        relay = await TcpRelay.open("127.0.0.1", listen, "127.0.0.1", target, **extra)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), done.set)
        await done.wait()
        await relay.close()

    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


# --------------------------------------------------------------------------- client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(argv: list[str], wait_ready: bool = True) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if wait_ready:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"{argv[:3]} did not start: {line!r}")
    return proc


def wait_listening(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def throughput(port: int, total: int, time_limit: float) -> float:
    """MiB/s from first byte sent to the sink's count received."""
    data = memoryview(bytes(CHUNK))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        start = time.perf_counter()
        deadline = start + time_limit
        while sent < total and time.perf_counter() < deadline:
            conn.sendall(data)
            sent += CHUNK
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) < 8:
            more = conn.recv(8 - len(reply))
            if not more:
                raise RuntimeError("sink closed without a count")
            reply += more
        elapsed = time.perf_counter() - start
    (received,) = struct.unpack("!Q", reply)
    if received != sent:
        raise RuntimeError(f"port {port}: sent {sent} bytes, the sink got {received}")
    return sent / elapsed / (1024 * 1024)


class Pinger:
    """A connection to an echo server, kept open so ping blocks of all paths interleave."""

    def __init__(self, port: int) -> None:
        self.conn = socket.create_connection(("127.0.0.1", port))
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ping(50)  # warm up

    def ping(self, count: int) -> list[float]:
        """Round-trip times in microseconds of ``count`` 1-byte messages."""
        conn, clock, times = self.conn, time.perf_counter_ns, []
        for _ in range(count):
            t0 = clock()
            conn.sendall(b"x")
            if not conn.recv(1):
                raise RuntimeError("echo closed")
            times.append((clock() - t0) / 1000)
        return times

    def close(self) -> None:
        self.conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["client", "target", "relay"], default="client")
    parser.add_argument("--listen", type=int, default=0)
    parser.add_argument("--target", type=int, default=0)
    parser.add_argument("--sink", type=int, default=0)
    parser.add_argument("--echo", type=int, default=0)
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--check", action="store_true", help="relay: check each peer's user")
    parser.add_argument("--connects", type=int, default=300, help="fresh connections per path")
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--baseline",
        metavar="REF",
        default=None,
        help="also run the relay of this git revision (e.g. HEAD~1), in the same run",
    )
    parser.add_argument("--mib", type=int, default=64, help="MiB per throughput transfer")
    parser.add_argument("--rounds", type=int, default=8, help="transfers per path")
    parser.add_argument("--pings", type=int, default=4000, help="round trips per path")
    parser.add_argument("--time-limit", type=float, default=5.0, help="seconds per transfer")
    parser.add_argument(
        "--pin",
        type=int,
        default=None,
        metavar="CPU",
        help="run every process of the benchmark on this one CPU (steadier figures on a "
        "busy or shared machine)",
    )
    args = parser.parse_args()
    if args.pin is not None and args.role == "client":
        os.sched_setaffinity(0, {args.pin})  # inherited by every process spawned below
    if args.role == "target":
        role_target(args.sink, args.echo)
        return
    if args.role == "relay":
        role_relay(args.listen, args.target, args.loop, args.root, args.check)
        return
    run_client(args)


def export_backend(ref: str, into: Path) -> Path:
    """The ``backend`` package of git revision ``ref``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "backend"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_client(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-tunnel-") as tmp:
        roots = {"": str(ROOT)}
        if args.baseline:
            roots[f"@{args.baseline}"] = str(export_backend(args.baseline, Path(tmp)))
        measure(args, roots)


def measure(args: argparse.Namespace, roots: dict[str, str]) -> None:
    me = [sys.executable, str(Path(__file__).resolve())]
    sink, echo = free_port(), free_port()
    procs: list[subprocess.Popen[str]] = [
        spawn(me + ["--role", "target", "--sink", str(sink), "--echo", str(echo)])
    ]
    paths: dict[str, tuple[int, int]] = {"direct": (sink, echo)}
    try:
        socat = shutil.which("socat")
        if socat:
            ports = free_port(), free_port()
            for listen, target in zip(ports, (sink, echo), strict=True):
                procs.append(
                    spawn(
                        [
                            socat,
                            "-b65536",
                            f"TCP-LISTEN:{listen},reuseaddr,fork,bind=127.0.0.1",
                            f"TCP:127.0.0.1:{target}",
                        ],
                        wait_ready=False,
                    )
                )
                wait_listening(listen)
            paths["socat"] = ports
        loops = ["asyncio"]
        try:
            import uvloop  # noqa: F401

            loops.append("uvloop")
        except ImportError:
            pass
        for suffix, root in roots.items():
            for loop_kind in loops:
                ports = free_port(), free_port()
                for listen, target in zip(ports, (sink, echo), strict=True):
                    procs.append(
                        spawn(
                            me
                            + ["--role", "relay", "--listen", str(listen)]
                            + ["--target", str(target), "--loop", loop_kind, "--root", root]
                        )
                    )
                name = "relay" if loop_kind == "asyncio" else f"relay-{loop_kind}"
                paths[name + suffix] = ports
        ports = free_port(), free_port()
        for listen, target in zip(ports, (sink, echo), strict=True):
            argv = ["--role", "relay", "--listen", str(listen), "--target", str(target)]
            procs.append(spawn(me + argv + ["--check"]))
        paths["relay-checked"] = ports

        total = args.mib * 1024 * 1024
        mibs: dict[str, list[float]] = {name: [] for name in paths}
        rtts: dict[str, list[float]] = {name: [] for name in paths}
        pingers = {name: Pinger(echo_port) for name, (_, echo_port) in paths.items()}
        started = time.monotonic()
        # Interleave in small blocks so that drift in this machine's speed (other load,
        # frequency changes) is shared by all paths instead of favouring one.
        block = 100
        for _ in range(max(1, args.pings // block)):
            for name, pinger in pingers.items():
                rtts[name].extend(pinger.ping(block))
        connects: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(max(1, args.connects // 50)):
            for name, (_, echo_port) in paths.items():
                connects[name].extend(connect_times(echo_port, 50))
        for _ in range(args.rounds):
            for name, (sink_port, _) in paths.items():
                mibs[name].append(throughput(sink_port, total, args.time_limit))
        elapsed = time.monotonic() - started
        for pinger in pingers.values():
            pinger.close()
    finally:
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()
            proc.terminate()
        for proc in procs:
            proc.wait(10)

    report(paths, mibs, rtts, connects, args, elapsed)


def connect_times(port: int, count: int) -> list[float]:
    """Microseconds from ``connect`` to the first echoed byte, for ``count`` connections."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(b"x")
            if conn.recv(1) != b"x":
                raise RuntimeError(f"no echo through port {port}")
        times.append((time.perf_counter() - started) * 1e6)
    return times


def report(
    paths: dict[str, tuple[int, int]],
    mibs: dict[str, list[float]],
    rtts: dict[str, list[float]],
    connects: dict[str, list[float]],
    args: argparse.Namespace,
    elapsed: float,
) -> None:
    direct_p50 = statistics.median(rtts["direct"])
    figures: dict[str, dict[str, float]] = {}
    where = f"pinned to CPU {args.pin}" if args.pin is not None else f"{os.cpu_count()} CPUs"
    print(
        f"tunnel benchmark: {args.rounds} rounds x {args.mib} MiB and {args.pings} pings, "
        f"{where}, {elapsed:.1f}s\n"
    )
    print(
        f"{'path':<22}{'MiB/s':>10}{'rtt p50 us':>12}{'rtt p99 us':>12}{'added p50 us':>14}"
        f"{'connect p50 us':>16}"
    )
    for name in paths:
        p50 = statistics.median(rtts[name])
        row = {
            "mib_s": round(statistics.median(mibs[name]), 1),
            "rtt_p50_us": round(p50, 1),
            "rtt_p99_us": round(percentile(rtts[name], 0.99), 1),
            "added_p50_us": round(p50 - direct_p50, 1),
            "connect_p50_us": round(statistics.median(connects[name]), 1),
        }
        figures[name] = row
        print(
            f"{name:<22}{row['mib_s']:>10.0f}{row['rtt_p50_us']:>12.1f}"
            f"{row['rtt_p99_us']:>12.1f}{row['added_p50_us']:>14.1f}{row['connect_p50_us']:>16.1f}"
        )
    result: dict[str, object] = {"bench": "tunnel", "pinned_cpu": args.pin, "paths": figures}
    check_cost = figures["relay-checked"]["connect_p50_us"] - figures["relay"]["connect_p50_us"]
    print(f"\npeer check: adds {check_cost:.1f} us to a connection's set-up (p50)")
    result["peer_check_connect_added_us"] = round(check_cost, 1)
    if "socat" in figures:
        socat = figures["socat"]
        print()
        for name in [n for n in figures if n.startswith("relay")]:
            ours = figures[name]
            throughput_ratio = ours["mib_s"] / socat["mib_s"]
            latency_ratio = ours["added_p50_us"] / max(socat["added_p50_us"], 0.1)
            verdict = "ok" if throughput_ratio >= 1 and latency_ratio <= 1 else "MISSED"
            print(
                f"{name}: throughput {throughput_ratio:.2f}x socat, "
                f"added latency {latency_ratio:.2f}x socat -> {verdict}"
            )
            result[f"{name}_vs_socat"] = {
                "throughput_ratio": round(throughput_ratio, 3),
                "added_latency_ratio": round(latency_ratio, 3),
                "ok": verdict == "ok",
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
