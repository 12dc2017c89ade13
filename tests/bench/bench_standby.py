"""First acquire of a new user with a warm standby available, against a cold start.

Run: ``python tests/bench/bench_standby.py [--runs 8] [--login-delay 2] [--kubernetes]``

The local runtime runs the demo template (a real process with its simulated login,
2 s by default) as two templates: ``warm`` keeps one standby workload, ``cold`` none.
Each run acquires for a new user on ``warm`` (a claim of the standby), then for another
new user on ``cold`` (a start behind the login), then waits until the standby is refilled;
so the two are measured interleaved in one run. ``took_ms`` is the pool's own figure for
the acquire, as the API reports it. Goal: median < 5 ms with a standby. The last line
printed is one JSON object with every figure.

``--kubernetes`` runs the same on the Kubernetes runtime against the control plane of
``PODWARDEN_TEST_KUBECONFIG`` (``K8S_FAKE_START_DELAY=3 tests/kubernetes_harness.sh up``:
its fake kubelet then takes 3 s to make a pod ready). Goal there: < 300 ms with a standby.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.config import Settings  # noqa: E402
from backend.models import SessionState  # noqa: E402
from backend.service import Backend  # noqa: E402
from backend.templates import Template  # noqa: E402


def free_port_range(size: int = 200) -> tuple[int, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        start = int(s.getsockname()[1])
    return (start, start + size) if start + size < 65000 else (20000, 20000 + size)


async def standby_ready(backend: Backend, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(s.state is SessionState.READY for s in backend.pool.standby_sessions("warm")):
        if time.monotonic() > deadline:
            raise SystemExit("the standby was not refilled in time")
        await asyncio.sleep(0.01)


def templates(settings: Settings, login_delay: float, kubernetes: bool) -> None:
    if kubernetes:
        base = Template(name="demo", image="example/demo:1", port=3000)
        kube = settings.runtime.kubernetes
        settings.runtime.kind = "kubernetes"
        kube.kubeconfig = os.environ["PODWARDEN_TEST_KUBECONFIG"]
        kube.namespace = f"pw-bench-standby-{secrets.token_hex(4)}"
        kube.delete_propagation = "Background"
    else:
        base = settings.templates["demo"]
        base.login_delay = login_delay
    settings.templates = {
        "demo": base,
        "warm": dataclasses.replace(base, name="warm", standby=1),
        "cold": dataclasses.replace(base, name="cold", standby=0),
    }
    settings.validate()


async def run(runs: int, login_delay: float, kubernetes: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-standby-") as tmp:
        settings = Settings(state_dir=Path(tmp) / "state")
        settings.pool.max_sessions = 2 * runs + 2
        settings.pool.refresh_interval = 3600
        settings.tunnels.port_min, settings.tunnels.port_max = free_port_range()
        templates(settings, login_delay, kubernetes)
        backend = Backend(settings)
        await backend.start()
        warm: list[float] = []
        cold: list[float] = []
        try:
            for n in range(runs):
                await standby_ready(backend)
                claimed = await backend.pool.acquire(f"warm-user-{n}", "warm")
                assert claimed.is_new_session
                warm.append(claimed.took_ms)
                started = await backend.pool.acquire(f"cold-user-{n}", "cold")
                assert started.is_new_session
                cold.append(started.took_ms)
            claims = backend.pool.metrics.standby["claimed"]
            if claims != runs:
                raise SystemExit(f"only {claims} of {runs} warm acquires claimed a standby")
        finally:
            await backend.stop(stop_sessions=True)
            if kubernetes:
                from backend.runtime.kubernetes.kinds import NAMESPACES

                cleaner = Backend(settings, persist=False)
                client = await cleaner.runtime.connect()  # type: ignore[attr-defined]
                await client.delete(NAMESPACES, None, settings.runtime.kubernetes.namespace)
                await cleaner.runtime.close()
    return {"warm": warm, "cold": cold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--login-delay", type=float, default=2.0)
    parser.add_argument("--kubernetes", action="store_true", help="the Kubernetes runtime")
    args = parser.parse_args()
    if args.kubernetes and not os.environ.get("PODWARDEN_TEST_KUBECONFIG"):
        raise SystemExit("--kubernetes needs PODWARDEN_TEST_KUBECONFIG (kubernetes_harness.sh up)")
    times = asyncio.run(run(args.runs, args.login_delay, args.kubernetes))
    warm, cold = times["warm"], times["cold"]
    assert isinstance(warm, list) and isinstance(cold, list)
    figures = {
        name: {
            "p50_ms": round(statistics.median(values), 3),
            "min_ms": round(min(values), 3),
            "max_ms": round(max(values), 3),
        }
        for name, values in (("standby", warm), ("cold", cold))
    }
    ratio = figures["cold"]["p50_ms"] / max(figures["standby"]["p50_ms"], 0.001)
    goal = 300 if args.kubernetes else 5
    ok = figures["standby"]["p50_ms"] < goal
    where = (
        "Kubernetes runtime (harness)"
        if args.kubernetes
        else f"local runtime, demo login {args.login_delay:g}s"
    )
    print(f"first acquire of a new user, {where}, {args.runs} runs each, interleaved\n")
    print(f"{'path':<10}{'p50 ms':>10}{'min ms':>10}{'max ms':>10}")
    for name, row in figures.items():
        print(f"{name:<10}{row['p50_ms']:>10.3f}{row['min_ms']:>10.3f}{row['max_ms']:>10.3f}")
    verdict = "ok" if ok else "MISSED"
    print(f"\nwith a standby: {ratio:.0f}x faster; goal p50 < {goal} ms -> {verdict}")
    print(
        json.dumps(
            {
                "bench": "standby",
                "runtime": "kubernetes" if args.kubernetes else "local",
                "runs": args.runs,
                "login_delay_s": None if args.kubernetes else args.login_delay,
                "paths": figures,
                "ratio": round(ratio, 1),
                "ok": ok,
            }
        )
    )


if __name__ == "__main__":
    main()
