"""Several targets: 100 concurrent creates on one cluster against the same on two.

Through the pool (``Backend`` in-process, ``runtime.kind = "multi"``), 100 acquires for
distinct users at once, timed until every session is ready with its tunnel; first on one
target (the east cluster alone, room for 120), then on two (east and west, 60 each), in
the same run, alternating, ``ROUNDS`` times each. Also the heartbeat cost: API calls per
minute per healthy target (``GET /version``), counted by the client.

Needs two control planes (``tests/kubernetes_harness.sh up`` and ``... up 2``):

    . first.env && . second.env && python tests/bench/bench_multi.py

Goal (issue 13): two targets at least 1.6x faster than one. The fake kubelet marks pods
ready the moment they are bound, so this measures podwarden, the API servers, schedulers
and controllers. Prints a table, then one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from backend.config import Settings, TargetSettings  # noqa: E402
from backend.runtime.kubernetes.kinds import NAMESPACES  # noqa: E402
from backend.runtime.kubernetes.runtime import KubernetesRuntime  # noqa: E402
from backend.runtime.multi import MultiRuntime  # noqa: E402
from backend.service import Backend  # noqa: E402
from backend.templates import Template  # noqa: E402
from tests.backend.conftest import free_port_range  # noqa: E402

SESSIONS = 100
ROUNDS = 2


def context_of(kubeconfig: str) -> str:
    return str(yaml.safe_load(Path(kubeconfig).read_text())["current-context"])


def settings_for(kubeconfigs: dict[str, str], capacity: int, state: Path) -> Settings:
    settings = Settings(state_dir=state)
    settings.runtime.kind = "multi"
    settings.runtime.kubernetes.namespace = f"pw-bench-{secrets.token_hex(4)}"
    settings.runtime.targets = {
        name: TargetSettings(kubeconfig=path, context=context_of(path), max_sessions=capacity)
        for name, path in kubeconfigs.items()
    }
    settings.pool.max_sessions = capacity * len(kubeconfigs)
    settings.pool.refresh_interval = 3600
    settings.tunnels.port_min, settings.tunnels.port_max = free_port_range(300)
    settings.templates["browser"] = Template(
        name="browser", image="example/browser:1", cpu="10m", memory="16Mi"
    )
    settings.default_template = "browser"
    settings.validate()
    return settings


async def one_round(kubeconfigs: dict[str, str], capacity: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="podwarden-bench-") as tmp:
        settings = settings_for(kubeconfigs, capacity, Path(tmp) / "state")
        backend = Backend(settings)
        await backend.start()
        runtime = backend.runtime
        assert isinstance(runtime, MultiRuntime)
        try:
            started = time.perf_counter()
            results = await asyncio.wait_for(
                asyncio.gather(*(backend.pool.acquire(f"u{i}") for i in range(SESSIONS))), 300
            )
            took = time.perf_counter() - started
            assert all(r.session.state.value == "ready" for r in results)
            spread = {n: sum(1 for r in results if r.session.target == n) for n in kubeconfigs}
            beats_started = time.perf_counter()
            calls_before = {n: _version_calls(runtime, n) for n in kubeconfigs}
            await asyncio.sleep(10)  # heartbeats only: nothing else asks the API now
            minutes = (time.perf_counter() - beats_started) / 60
            per_minute = statistics.mean(
                (_version_calls(runtime, n) - calls_before[n]) / minutes for n in kubeconfigs
            )
        finally:
            await backend.stop(stop_sessions=True)
            for target in runtime.targets.values():
                assert isinstance(target.runtime, KubernetesRuntime)
                cleaner = KubernetesRuntime(target.runtime.settings, backend.logs)
                client = await cleaner.connect()
                await client.delete(NAMESPACES, None, settings.runtime.kubernetes.namespace)
                await cleaner.close()
    return {"ready_s": took, "per_minute": per_minute, **{f"on_{k}": v for k, v in spread.items()}}


def _version_calls(runtime: MultiRuntime, name: str) -> int:
    child = runtime.targets[name].runtime
    assert isinstance(child, KubernetesRuntime) and child.client is not None
    return child.client.calls["get version"]


async def run(first: str, second: str) -> dict[str, object]:
    one: list[float] = []
    two: list[float] = []
    beats: list[float] = []
    for _ in range(ROUNDS):
        single = await one_round({"east": first}, 120)
        double = await one_round({"east": first, "west": second}, 60)
        one.append(single["ready_s"])
        two.append(double["ready_s"])
        beats.append(double["per_minute"])
        print(
            f"  round: one target {single['ready_s']:6.2f} s | two targets "
            f"{double['ready_s']:6.2f} s (east {double['on_east']:.0f}, "
            f"west {double['on_west']:.0f})"
        )
    m1, m2 = statistics.median(one), statistics.median(two)
    print()
    print(f"{'setup':<14}{'100 creates ready (median s)':>30}{'sessions/s':>12}")
    print(f"{'one target':<14}{m1:>30.2f}{SESSIONS / m1:>12.1f}")
    print(f"{'two targets':<14}{m2:>30.2f}{SESSIONS / m2:>12.1f}")
    print(
        f"speed-up {m1 / m2:.2f}x (goal >= 1.6x); heartbeat calls/min/target "
        f"{statistics.median(beats):.1f}"
    )
    return {
        "bench": "multi",
        "sessions": SESSIONS,
        "rounds": ROUNDS,
        "one_target_ready_s": round(m1, 3),
        "two_targets_ready_s": round(m2, 3),
        "speedup": round(m1 / m2, 3),
        "heartbeat_calls_per_min_per_target": round(statistics.median(beats), 1),
    }


def main() -> int:
    first = os.environ.get("PODWARDEN_TEST_KUBECONFIG")
    second = os.environ.get("PODWARDEN_TEST_KUBECONFIG_2")
    if not (first and second):
        print(json.dumps({"bench": "multi", "skipped": "needs two harnesses"}))
        return 0
    print(json.dumps(asyncio.run(run(first, second))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
