"""``GET /metrics``: the pool's counters and gauges in the Prometheus text format.

Rendered by hand from ``PoolMetrics`` and the health snapshot: the format is a few lines
of text, and a client library would add a second registry to keep in step with the pool.
Counter names end in ``_total``; the start latency is a histogram in seconds.
"""

from __future__ import annotations

from backend.models import SessionState
from backend.service import Backend

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value)


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render_metrics(backend: Backend) -> str:
    """The whole exposition, ending with a newline."""
    pool = backend.pool
    metrics = pool.metrics
    health = backend.health()
    w = _Writer()

    counts = {state: 0 for state in SessionState}
    for session in pool.list():
        counts[session.state] += 1
    w.family("podwarden_sessions", "gauge", "Sessions known to the pool, by state.")
    for state, count in counts.items():
        w.sample("podwarden_sessions", count, state=state.value)

    w.one("podwarden_active_sessions", "gauge", "Sessions holding capacity.", pool.active_count)
    w.one("podwarden_max_sessions", "gauge", "Capacity of the pool.", health.max_sessions)
    w.one(
        "podwarden_max_sessions_per_user",
        "gauge",
        "Sessions one user may hold (the pool's capacity when there is no limit of its own).",
        health.max_sessions_per_user or health.max_sessions,
    )
    w.one(
        "podwarden_capacity_ratio",
        "gauge",
        "Active sessions divided by capacity.",
        pool.active_count / health.max_sessions if health.max_sessions else 0.0,
    )
    w.one(
        "podwarden_queued_acquires", "gauge", "Acquires waiting for room.", health.queued_acquires
    )
    w.one("podwarden_users", "gauge", "Users holding an active session.", health.users)

    w.family("podwarden_acquires_total", "counter", "Acquires by outcome.")
    for outcome, count in metrics.acquires.items():
        w.sample("podwarden_acquires_total", count, outcome=outcome)

    w.family("podwarden_start_seconds", "histogram", "Seconds from workload start to ready.")
    for le, count in metrics.start_seconds.cumulative():
        w.sample("podwarden_start_seconds_bucket", count, le=le)
    w.sample("podwarden_start_seconds_sum", metrics.start_seconds.total)
    w.sample("podwarden_start_seconds_count", metrics.start_seconds.count)

    w.one(
        "podwarden_start_failures_total",
        "counter",
        "Starts that ended failed after all retries.",
        metrics.start_failures,
    )
    w.one(
        "podwarden_start_retries_total", "counter", "Start attempts retried.", metrics.start_retries
    )
    w.one("podwarden_evictions_total", "counter", "Sessions evicted (LRU).", metrics.evictions)
    w.family("podwarden_refreshes_total", "counter", "Refresh probes by outcome.")
    for outcome, count in metrics.refreshes.items():
        w.sample("podwarden_refreshes_total", count, outcome=outcome)
    w.one(
        "podwarden_recycles_total",
        "counter",
        "Dead workloads replaced under the same id.",
        metrics.recycles,
    )
    w.one(
        "podwarden_terminations_total",
        "counter",
        "Sessions whose cleanup finished.",
        metrics.terminations,
    )
    w.one(
        "podwarden_cleanup_leftovers_total",
        "counter",
        "Cleanups that left something behind.",
        metrics.cleanup_leftovers,
    )

    w.one("podwarden_healthy", "gauge", "1 when /health says healthy.", health.status == "healthy")
    w.one("podwarden_runtime_ok", "gauge", "1 when the runtime answers.", health.runtime_ok)
    w.one("podwarden_store_ok", "gauge", "1 when the state store writes.", health.store_ok)
    w.one("podwarden_orphans", "gauge", "Workloads the pool does not know.", len(health.orphans))
    w.one("podwarden_ghosts", "gauge", "Sessions whose workload is gone.", len(health.ghosts))
    w.one(
        "podwarden_event_subscribers",
        "gauge",
        "Open event subscriptions (TUI, SSE, log).",
        backend.bus.subscriber_count,
    )
    w.one(
        "podwarden_uptime_seconds", "gauge", "Seconds since the backend started.", health.uptime_s
    )
    return "\n".join(w.lines) + "\n"
