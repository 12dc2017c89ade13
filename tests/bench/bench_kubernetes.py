"""The Kubernetes runtime on a real control plane: create -> ready, delete -> verified gone.

Directly on ``KubernetesRuntime`` (no pool, no HTTP), at 1, 10 and 50 concurrent sessions,
against the loopback v1.20 control plane of ``../shared/k8s-harness``. Its fake kubelet
marks pods ready the moment they are bound, so what is measured is podwarden's own
overhead plus the real API server, scheduler and controllers. Each session carries
credentials (a Secret), the heavier path.

    python tests/bench/bench_kubernetes.py            # starts and stops a harness itself
    PODWARDEN_TEST_KUBECONFIG=... python tests/bench/bench_kubernetes.py   # uses that one

Goals: 50 concurrent creates all ready in under 10 s; delete to verified-gone under 5 s;
no more than 10 API calls per create besides the watch. Then pod replacement: a session's
pod is deleted 10 times (as ``kubectl delete pod``); measured is the time from the delete
until a connection through the session's unchanged tunnel port reaches the new pod, and
how much of that comes after the new pod is Ready (the part that is podwarden's; the rest
is the ReplicaSet controller, scheduler and kubelet).

Then the tunnel (``--only tunnel`` runs just this section): one session's tunnel against
``kubectl port-forward`` to the same pod, in the same run, rounds interleaved so that load
from elsewhere hits both alike. The pod's workload (the harness's fake kubelet) answers
``GET /bytes/N`` and echoes anything that does not start like HTTP. Measured, by a client in
a process of its own: the time for a ``--bulk-mb`` MB download (throughput), ``--round-trips``
64-byte echo round trips on one connection (p50/p99), and ``--connects`` fresh connections,
each from ``connect`` to the first echoed byte. The tunnel runs on the loop ``podwarden``
runs on (uvloop when installed). ``--library`` adds a third path: the same relay on the
official client's ``kubernetes.stream.portforward`` (its pump thread and socket pair), as
tunnels ran before ``wsforward``. Goals: throughput >= kubectl's, round trip <= kubectl's,
connection set-up < 100 ms.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from backend.cli import loop_factory  # noqa: E402
from backend.config import KubernetesSettings  # noqa: E402
from backend.events import EventBus  # noqa: E402
from backend.logs import SessionLogs  # noqa: E402
from backend.models import WorkloadHandle  # noqa: E402
from backend.runtime.base import WorkloadSpec  # noqa: E402
from backend.runtime.kubernetes import portforward  # noqa: E402
from backend.runtime.kubernetes.client import KubeClient  # noqa: E402
from backend.runtime.kubernetes.kinds import NAMESPACES, PODS  # noqa: E402
from backend.runtime.kubernetes.podstatus import is_pod_ready  # noqa: E402
from backend.runtime.kubernetes.runtime import KubernetesRuntime  # noqa: E402
from backend.templates import Template  # noqa: E402
from backend.tunnels import TcpRelay  # noqa: E402

HARNESS = ROOT / "tests" / "kubernetes_harness.sh"
LEVELS = ((1, 5), (10, 2), (50, 1))
"""(concurrent sessions, rounds)."""
LEVEL_TIMEOUT = 180.0
"""Seconds one level may take in all; the benchmark is bounded even on a broken cluster."""
REPLACEMENTS = 10
REPLACEMENT_TIMEOUT = 60.0


@dataclass
class Level:
    concurrent: int
    created_s: list[float]
    ready_s: list[float]
    all_ready_s: list[float]
    gone_s: list[float]
    all_gone_s: list[float]
    calls_per_create: float
    calls_per_stop: float
    failures: list[str]
    cpu_s: float = 0.0
    """CPU seconds podwarden's process spent (all threads), per session created and stopped."""

    def row(self) -> dict[str, float | int]:
        return {
            "concurrent": self.concurrent,
            "all_created_s": round(max(self.created_s), 3),
            "ready_p50_s": round(statistics.median(self.ready_s), 3),
            "ready_max_s": round(max(self.ready_s), 3),
            "all_ready_s": round(max(self.all_ready_s), 3),
            "gone_p50_s": round(statistics.median(self.gone_s), 3),
            "gone_max_s": round(max(self.gone_s), 3),
            "all_gone_s": round(max(self.all_gone_s), 3),
            "calls_per_create": round(self.calls_per_create, 2),
            "calls_per_stop": round(self.calls_per_stop, 2),
            "cpu_ms_per_session": round(self.cpu_s * 1000, 1),
        }


def spec(index: int) -> WorkloadSpec:
    template = Template(name="browser", image="example/browser:1", cpu="50m", memory="64Mi")
    return WorkloadSpec(
        session_id=f"bench{index}-browser-{secrets.token_hex(4)}",
        user=f"bench{index}",
        template=template,
        workdir=Path("/"),
        env={"LOGIN_TOKEN": secrets.token_hex(8)},
    )


async def one_round(runtime: KubernetesRuntime, concurrent: int, level: Level) -> None:
    client = await runtime.connect()
    specs = [spec(i) for i in range(concurrent)]
    calls_before = client.requests_sent()
    started = time.monotonic()

    created: list[float] = []

    async def create(s: WorkloadSpec) -> tuple[WorkloadHandle, float]:
        t0 = time.monotonic()
        handle = await runtime.start(s, lambda _: None)
        created.append(time.monotonic() - started)
        handle = await runtime.wait_ready(handle, s, 60, lambda _: None)
        return handle, time.monotonic() - t0

    results = await asyncio.gather(*(create(s) for s in specs), return_exceptions=True)
    level.all_ready_s.append(time.monotonic() - started)
    level.created_s.append(max(created, default=0.0))
    handles = []
    for result in results:
        if isinstance(result, BaseException):
            level.failures.append(f"create: {result}")
            continue
        handle, took = result
        handles.append(handle)
        level.ready_s.append(took)
    level.calls_per_create = (client.requests_sent() - calls_before) / concurrent

    calls_before = client.requests_sent()
    started = time.monotonic()

    async def delete(handle: WorkloadHandle) -> float:
        t0 = time.monotonic()
        report = await runtime.stop(handle, 5)
        if not report.verified:
            level.failures.append(f"stop {handle.ref}: leftovers {report.leftovers}")
        return time.monotonic() - t0

    level.gone_s += await asyncio.gather(*(delete(h) for h in handles))
    level.all_gone_s.append(time.monotonic() - started)
    level.calls_per_stop = (client.requests_sent() - calls_before) / max(1, len(handles))


@dataclass
class Replacements:
    usable_s: list[float]
    """Pod deleted -> a connection through the tunnel reaches the new pod."""
    after_ready_s: list[float]
    """New pod Ready (as the pod watch shows it) -> a connection reaches it."""
    failures: list[str]

    def row(self) -> dict[str, float | int]:
        if not self.usable_s:
            return {"replacements": 0}
        return {
            "replacements": len(self.usable_s),
            "usable_p50_s": round(statistics.median(self.usable_s), 3),
            "usable_max_s": round(max(self.usable_s), 3),
            "after_ready_p50_s": round(statistics.median(self.after_ready_s), 3),
            "after_ready_max_s": round(max(self.after_ready_s), 3),
        }


async def page(port: int) -> bytes:
    """``GET /`` through the tunnel (the harness's page names the pod); b"" if refused."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return b""
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    except (OSError, asyncio.TimeoutError):
        return b""
    finally:
        writer.close()


async def replacements(runtime: KubernetesRuntime) -> Replacements:
    """Delete one session's pod ``REPLACEMENTS`` times; time the tunnel's way back."""
    client = await runtime.connect()
    result = Replacements([], [], [])
    s = spec(0)
    handle = await runtime.wait_ready(await runtime.start(s, lambda _: None), s, 60, lambda _: None)
    tunnel = await runtime.open_tunnel(handle, "127.0.0.1", 0)
    pods = runtime.reflectors["pod"]
    try:
        for _ in range(REPLACEMENTS):
            (old,) = [
                p["metadata"]["name"] for p in pods.session_objects(s.session_id) if is_pod_ready(p)
            ]
            t0 = time.monotonic()
            await client.delete(PODS, client.namespace, old)
            ready_at = 0.0
            while True:
                if time.monotonic() - t0 > REPLACEMENT_TIMEOUT:
                    result.failures.append(f"no new pod of {s.session_id} answered")
                    return result
                new = [
                    p["metadata"]["name"]
                    for p in pods.session_objects(s.session_id)
                    if is_pod_ready(p) and p["metadata"]["name"] != old
                ]
                if not new:
                    await asyncio.sleep(0.005)
                    continue
                ready_at = ready_at or time.monotonic()
                if new[0].encode() in await page(tunnel.info.port):
                    done = time.monotonic()
                    result.usable_s.append(done - t0)
                    result.after_ready_s.append(done - ready_at)
                    break
                await asyncio.sleep(0.005)
    finally:
        await tunnel.close()
        report = await runtime.stop(handle, 5)
        if not report.verified:
            result.failures.append(f"stop: leftovers {report.leftovers}")
    return result


async def run(kubeconfig: str, propagation: str) -> tuple[list[Level], Replacements]:
    namespace = f"pw-bench-{secrets.token_hex(3)}"
    settings = KubernetesSettings(
        kubeconfig=kubeconfig, namespace=namespace, max_concurrent_creates=10
    )
    bus = EventBus()
    runtime = KubernetesRuntime(settings, SessionLogs(bus), bus, propagation=propagation)
    levels = []
    try:
        client = await runtime.connect()
        await asyncio.wait_for(runtime.reflectors["pod"].synced.wait(), 30)
        for concurrent, rounds in LEVELS:
            level = Level(concurrent, [], [], [], [], [], 0.0, 0.0, [])
            cpu = time.process_time()
            for _ in range(rounds):
                await asyncio.wait_for(one_round(runtime, concurrent, level), LEVEL_TIMEOUT)
            level.cpu_s = (time.process_time() - cpu) / (concurrent * rounds)
            levels.append(level)
        replaced = await replacements(runtime)
        await client.delete(NAMESPACES, None, namespace)
    finally:
        await runtime.close()
    return levels, replaced


# --------------------------------------------------------------------------- tunnel

PROBE_TIMEOUT = 120.0
ECHO = b"\x00" + bytes(range(1, 64))
"""64 bytes that do not start like HTTP: the workload echoes them."""


def probe(kind: str, port: int, count: int) -> dict[str, object]:
    """The measuring client (run in a process of its own by ``--probe``): blocking sockets
    on 127.0.0.1:port. ``bulk``: seconds to download ``count`` bytes; ``rtt``: microseconds
    of each of ``count`` echo round trips; ``connect``: microseconds from ``connect`` to the
    first echoed byte, ``count`` times."""
    if kind == "bulk":
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
            buf = bytearray(1 << 20)
            view = memoryview(buf)
            t0 = time.perf_counter()
            sock.sendall(f"GET /bytes/{count} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("closed before the headers")
                head += chunk
            got = len(head) - head.index(b"\r\n\r\n") - 4
            while got < count:
                n = sock.recv_into(view)
                if not n:
                    break
                got += n
            took = time.perf_counter() - t0
        return {"bytes": got, "seconds": took}
    samples = []
    if kind == "rtt":
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(count + 50):  # the first 50 warm up
                t0 = time.perf_counter_ns()
                sock.sendall(ECHO)
                got = 0
                while got < len(ECHO):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise OSError("closed during the round trips")
                    got += len(chunk)
                if i >= 50:
                    samples.append((time.perf_counter_ns() - t0) / 1000)
    elif kind == "connect":
        for _ in range(count):
            t0 = time.perf_counter_ns()
            with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(ECHO[:1])
                if not sock.recv(1):
                    raise OSError("closed before the first byte")
                samples.append((time.perf_counter_ns() - t0) / 1000)
    return {"samples_us": samples}


async def run_probe(kind: str, port: int, count: int) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--probe",
        kind,
        str(port),
        str(count),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"probe {kind} on port {port} failed (exit {proc.returncode})")
    result: dict[str, object] = json.loads(out)
    return result


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class TunnelPath:
    name: str
    port: int
    mb_s: list[float]
    rtt_us: list[float]
    connect_us: list[float]

    def row(self) -> dict[str, float]:
        return {
            "throughput_mb_s": round(statistics.median(self.mb_s), 1),
            "rtt_p50_ms": round(statistics.median(self.rtt_us) / 1000, 3),
            "rtt_p99_ms": round(percentile(self.rtt_us, 0.99) / 1000, 3),
            "connect_p50_ms": round(statistics.median(self.connect_us) / 1000, 2),
            "connect_max_ms": round(max(self.connect_us) / 1000, 2),
        }


@dataclass
class TunnelBench:
    paths: list[TunnelPath]
    loop: str
    bulk_mb: int
    failures: list[str]


async def kubectl_forward(
    kubeconfig: str, namespace: str, pod: str, port: int
) -> tuple[asyncio.subprocess.Process, int]:
    """``kubectl port-forward`` to the pod on a free local port: (process, local port)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is not on PATH")
    proc = await asyncio.create_subprocess_exec(
        kubectl,
        f"--kubeconfig={kubeconfig}",
        "-n",
        namespace,
        "port-forward",
        "--address=127.0.0.1",
        f"pod/{pod}",
        f":{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    match = re.search(rb"127\.0\.0\.1:(\d+)", line)
    if match is None:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"kubectl port-forward said {line!r}")
    return proc, int(match.group(1))


async def measure_tunnel(paths: list[TunnelPath], bulk_mb: int, trips: int, connects: int) -> None:
    """Every measurement on every path, in interleaved rounds (the order flips each round)."""

    def order(i: int) -> list[TunnelPath]:
        return paths if i % 2 == 0 else paths[::-1]

    for path in paths:  # warm up: the first stream, caches, kubectl's connection
        await run_probe("connect", path.port, 3)
    for i in range(5):
        for path in order(i):
            got = await run_probe("bulk", path.port, bulk_mb * 1_000_000)
            if got["bytes"] != bulk_mb * 1_000_000:
                raise RuntimeError(f"{path.name}: {got['bytes']} of {bulk_mb} MB arrived")
            path.mb_s.append(bulk_mb / float(got["seconds"]))  # type: ignore[arg-type]
    blocks = 4
    for i in range(blocks):
        for path in order(i):
            got = await run_probe("rtt", path.port, trips // blocks)
            path.rtt_us += got["samples_us"]  # type: ignore[arg-type]
    for i in range(5):
        for path in order(i):
            got = await run_probe("connect", path.port, connects // 5)
            path.connect_us += got["samples_us"]  # type: ignore[arg-type]


async def library_tunnel(client: KubeClient, namespace: str, pod: str, port: int) -> TcpRelay:
    """The same relay on the official client's ``portforward`` (its thread and socket
    pair: how tunnels ran before ``wsforward``, and still run behind an HTTP proxy)."""

    async def connect(protocol: asyncio.Protocol) -> asyncio.Transport:
        sock = await client.run_blocking(
            functools.partial(
                portforward.open_forward_socket,
                client.connection.configuration,
                namespace,
                pod,
                port,
            )
        )
        return await portforward.adopt_socket(sock, protocol)

    return await TcpRelay.open("127.0.0.1", 0, f"pod/{pod}", port, connector=connect)


async def run_tunnel(
    kubeconfig: str, bulk_mb: int, trips: int, connects: int, with_library: bool
) -> TunnelBench:
    namespace = f"pw-bench-{secrets.token_hex(3)}"
    settings = KubernetesSettings(kubeconfig=kubeconfig, namespace=namespace)
    bus = EventBus()
    runtime = KubernetesRuntime(settings, SessionLogs(bus), bus)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    bench = TunnelBench([], loop_name, bulk_mb, [])
    try:
        client = await runtime.connect()
        s = spec(0)
        handle = await runtime.start(s, lambda _: None)
        handle = await runtime.wait_ready(handle, s, 60, lambda _: None)
        tunnel = await runtime.open_tunnel(handle, "127.0.0.1", 0)
        pods = runtime.reflectors["pod"]
        (pod,) = [
            p["metadata"]["name"] for p in pods.session_objects(s.session_id) if is_pod_ready(p)
        ]
        kubectl = library = None
        try:
            kubectl, kubectl_port = await kubectl_forward(kubeconfig, namespace, pod, handle.port)
            bench.paths = [
                TunnelPath("podwarden", tunnel.info.port, [], [], []),
                TunnelPath("kubectl", kubectl_port, [], [], []),
            ]
            if with_library:
                library = await library_tunnel(client, namespace, pod, handle.port)
                bench.paths.append(TunnelPath("library", library.info.port, [], [], []))
            await measure_tunnel(bench.paths, bulk_mb, trips, connects)
        except (RuntimeError, OSError, asyncio.TimeoutError) as e:
            bench.failures.append(f"tunnel: {e}")
        finally:
            if kubectl is not None:
                kubectl.terminate()
                await kubectl.wait()
            if library is not None:
                await library.close()
            await tunnel.close()
            await runtime.stop(handle, 5)
            await client.delete(NAMESPACES, None, namespace)
    finally:
        await runtime.close()
    return bench


def report_tunnel(bench: TunnelBench) -> dict[str, object]:
    """Print the tunnel table and goals; the section's JSON."""
    print(
        f"tunnel vs kubectl port-forward, same pod, same run ({bench.loop} loop; "
        f"{bench.bulk_mb} MB download, 64-byte echo, connect to first byte)"
    )
    for failure in bench.failures:
        print(f"  FAILURE: {failure}")
    if len(bench.paths) < 2 or not all(p.mb_s and p.rtt_us and p.connect_us for p in bench.paths):
        return {"failures": bench.failures}
    print(
        f"{'path':>10} {'MB/s':>8} {'rtt p50':>9} {'rtt p99':>9} {'connect p50':>12}"
        f" {'connect max':>12}"
    )
    rows = {p.name: p.row() for p in bench.paths}
    for name, r in rows.items():
        print(
            f"{name:>10} {r['throughput_mb_s']:>8.1f} {r['rtt_p50_ms']:>7.3f}ms"
            f" {r['rtt_p99_ms']:>7.3f}ms {r['connect_p50_ms']:>10.2f}ms"
            f" {r['connect_max_ms']:>10.2f}ms"
        )
    ours, theirs = rows["podwarden"], rows["kubectl"]
    ratios = {
        "throughput": round(ours["throughput_mb_s"] / theirs["throughput_mb_s"], 2),
        "rtt_p50": round(ours["rtt_p50_ms"] / theirs["rtt_p50_ms"], 2),
        "rtt_p99": round(ours["rtt_p99_ms"] / theirs["rtt_p99_ms"], 2),
    }
    print(
        f"podwarden / kubectl: throughput {ratios['throughput']:.2f}x, round trip p50"
        f" {ratios['rtt_p50']:.2f}x, p99 {ratios['rtt_p99']:.2f}x"
    )
    if "library" in rows:
        before = rows["library"]
        ratios["throughput_vs_library"] = round(
            ours["throughput_mb_s"] / before["throughput_mb_s"], 2
        )
        ratios["rtt_p50_vs_library"] = round(ours["rtt_p50_ms"] / before["rtt_p50_ms"], 2)
        print(
            f"podwarden / library: throughput {ratios['throughput_vs_library']:.2f}x,"
            f" round trip p50 {ratios['rtt_p50_vs_library']:.2f}x"
        )
    goals = {
        "throughput_at_least_kubectl": ratios["throughput"] >= 1,
        "rtt_p50_at_most_kubectl": ratios["rtt_p50"] <= 1,
        "connect_under_100ms": ours["connect_p50_ms"] < 100,
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")
    return {"loop": bench.loop, "paths": rows, "ratios": ratios, "goals": goals}


def harness_up() -> dict[str, str]:
    """Start a harness through tests/kubernetes_harness.sh; its exported variables."""
    done = subprocess.run(
        [str(HARNESS), "up"], capture_output=True, text=True, timeout=900, check=False
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        return {}
    exported = {}
    for line in done.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            exported[key] = value.strip("'")
    return exported


def report(
    levels: list[Level], replaced: Replacements, propagation: str, host: str
) -> dict[str, object]:
    """Print the creates/deletes and replacement tables and goals; the section's JSON."""
    print(f"kubernetes runtime, {host}, delete propagation {propagation}")
    print("(v1.20 loopback harness: pods are ready when bound; each session has a Secret;")
    print(" 'created' = all objects created, the rest is the cluster's controllers at work)")
    header = (
        f"{'sessions':>8} {'created':>8} {'ready p50':>10} {'ready max':>10} {'all ready':>10} "
        f"{'gone p50':>9} {'gone max':>9} {'all gone':>9} {'calls/create':>13} {'calls/stop':>11}"
        f" {'cpu/session':>12}"
    )
    print(header)
    for level in levels:
        r = level.row()
        print(
            f"{r['concurrent']:>8} {r['all_created_s']:>7.2f}s "
            f"{r['ready_p50_s']:>9.2f}s {r['ready_max_s']:>9.2f}s "
            f"{r['all_ready_s']:>9.2f}s {r['gone_p50_s']:>8.2f}s {r['gone_max_s']:>8.2f}s "
            f"{r['all_gone_s']:>8.2f}s {r['calls_per_create']:>13.1f} {r['calls_per_stop']:>11.1f}"
            f" {r['cpu_ms_per_session']:>10.1f}ms"
        )
    for level in levels:
        for failure in level.failures[:5]:
            print(f"  FAILURE at {level.concurrent}: {failure}")
    r = replaced.row()
    print(f"pod replacement, {r['replacements']} times: delete -> tunnel reaches the new pod")
    if replaced.usable_s:
        print(
            f"  p50 {r['usable_p50_s']:.3f}s, max {r['usable_max_s']:.3f}s; after the new pod"
            f" is Ready: p50 {r['after_ready_p50_s']:.3f}s, max {r['after_ready_max_s']:.3f}s"
        )
    for failure in replaced.failures:
        print(f"  FAILURE in replacement: {failure}")
    fifty = next(level for level in levels if level.concurrent == 50)
    goals = {
        "all_ready_50_under_10s": max(fifty.all_ready_s) < 10,
        "delete_gone_under_5s": all(max(level.gone_s) < 5 for level in levels),
        "calls_per_create_at_most_10": all(level.calls_per_create <= 10 for level in levels),
        "replaced_pod_reached_within_2s_of_ready": bool(replaced.after_ready_s)
        and max(replaced.after_ready_s) < 2,
        "no_failures": not any(level.failures for level in levels) and not replaced.failures,
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")
    return {
        "propagation": propagation,
        "levels": [level.row() for level in levels],
        "pod_replacement": replaced.row(),
        "goals": goals,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", default=os.environ.get("PODWARDEN_TEST_KUBECONFIG"))
    parser.add_argument(
        "--propagation",
        default="Background",
        choices=("Foreground", "Background"),
        help="how the Deployment is deleted (podwarden's default is Background)",
    )
    parser.add_argument(
        "--only",
        choices=("creates", "tunnel"),
        help="run one section: creates/deletes/replacement, or the tunnel against kubectl",
    )
    parser.add_argument("--bulk-mb", type=int, default=100, help="tunnel download size (MB)")
    parser.add_argument("--round-trips", type=int, default=2000, help="64-byte echoes per path")
    parser.add_argument("--connects", type=int, default=50, help="fresh connections per path")
    parser.add_argument(
        "--library",
        action="store_true",
        help="also measure the relay on the official client's portforward (the path before)",
    )
    parser.add_argument(
        "--stdlib-loop", action="store_true", help="run the tunnel on asyncio's own loop"
    )
    parser.add_argument("--probe", nargs=3, metavar=("KIND", "PORT", "COUNT"), help="internal")
    args = parser.parse_args()
    if args.probe:
        kind, port, count = args.probe
        print(json.dumps(probe(kind, int(port), int(count))))
        return 0
    started_here = None
    kubeconfig = args.kubeconfig
    if not kubeconfig:
        exported = harness_up()
        kubeconfig = exported.get("PODWARDEN_TEST_KUBECONFIG")
        started_here = exported.get("PODWARDEN_K8S_STATE")
        if not kubeconfig:
            print("!!! no Kubernetes control plane: benchmark NOT run")
            print(json.dumps({"bench": "kubernetes", "skipped": "harness unavailable"}))
            return 3
    creates = tunnel = None
    try:
        if args.only in (None, "creates"):
            creates = asyncio.run(run(kubeconfig, args.propagation))
        if args.only in (None, "tunnel"):
            factory = None if args.stdlib_loop else loop_factory()
            with asyncio.Runner(loop_factory=factory) as runner:
                tunnel = runner.run(
                    run_tunnel(
                        kubeconfig, args.bulk_mb, args.round_trips, args.connects, args.library
                    )
                )
    finally:
        if started_here:
            subprocess.run(
                [str(HARNESS), "down", started_here], timeout=120, check=False, capture_output=True
            )
    result: dict[str, object] = {"bench": "kubernetes"}
    if creates is not None:
        result.update(report(*creates, args.propagation, kubeconfig))
    if tunnel is not None:
        result["tunnel"] = report_tunnel(tunnel)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
