"""The Kubernetes runtime on a real control plane: create -> ready, delete -> verified gone.

Directly on ``KubernetesRuntime`` (no pool, no HTTP), at 1, 10 and 50 concurrent sessions,
against the loopback v1.20 control plane of ``../shared/k8s-harness``. Its fake kubelet
marks pods ready the moment they are bound, so what is measured is podwarden's own
overhead plus the real API server, scheduler and controllers. Each session carries
credentials (a Secret), the heavier path.

    python tests/bench/bench_kubernetes.py            # starts and stops a harness itself
    PODWARDEN_TEST_KUBECONFIG=... python tests/bench/bench_kubernetes.py   # uses that one

Goals: 50 concurrent creates all ready in under 10 s; delete to verified-gone under 5 s;
no more than 10 API calls per create besides the watch. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from backend.config import KubernetesSettings  # noqa: E402
from backend.events import EventBus  # noqa: E402
from backend.logs import SessionLogs  # noqa: E402
from backend.models import WorkloadHandle  # noqa: E402
from backend.runtime.base import WorkloadSpec  # noqa: E402
from backend.runtime.kubernetes.kinds import NAMESPACES  # noqa: E402
from backend.runtime.kubernetes.runtime import KubernetesRuntime  # noqa: E402
from backend.templates import Template  # noqa: E402

HARNESS = ROOT / "tests" / "kubernetes_harness.sh"
LEVELS = ((1, 5), (10, 2), (50, 1))
"""(concurrent sessions, rounds)."""
LEVEL_TIMEOUT = 180.0
"""Seconds one level may take in all; the benchmark is bounded even on a broken cluster."""


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


async def run(kubeconfig: str, propagation: str) -> list[Level]:
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
        await client.delete(NAMESPACES, None, namespace)
    finally:
        await runtime.close()
    return levels


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


def report(levels: list[Level], propagation: str, host: str) -> None:
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
    fifty = next(level for level in levels if level.concurrent == 50)
    goals = {
        "all_ready_50_under_10s": max(fifty.all_ready_s) < 10,
        "delete_gone_under_5s": all(max(level.gone_s) < 5 for level in levels),
        "calls_per_create_at_most_10": all(level.calls_per_create <= 10 for level in levels),
        "no_failures": not any(level.failures for level in levels),
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")
    print(
        json.dumps(
            {
                "bench": "kubernetes",
                "propagation": propagation,
                "levels": [level.row() for level in levels],
                "goals": goals,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", default=os.environ.get("PODWARDEN_TEST_KUBECONFIG"))
    parser.add_argument(
        "--propagation",
        default="Background",
        choices=("Foreground", "Background"),
        help="how the Deployment is deleted (podwarden's default is Background)",
    )
    args = parser.parse_args()
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
    try:
        levels = asyncio.run(run(kubeconfig, args.propagation))
    finally:
        if started_here:
            subprocess.run(
                [str(HARNESS), "down", started_here], timeout=120, check=False, capture_output=True
            )
    report(levels, args.propagation, kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
