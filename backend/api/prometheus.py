"""``GET /metrics``: the pool's figures and the daemon's process figures for Prometheus.

``PoolCollector`` is a ``prometheus_client`` custom collector: it reads ``PoolMetrics``,
the pool and the health snapshot at scrape time, so there is no second set of counters
to keep in step with the pool. The registry also carries the client library's standard
process and platform collectors (CPU seconds, resident memory, open and maximum file
descriptors, start time): the figures an operator alerts on. Counter names end in
``_total``; the start latency is a histogram in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from backend.models import SessionState
from backend.security_metrics import REFUSALS
from backend.service import Backend

__all__ = ["CONTENT_TYPE", "PoolCollector", "metrics_registry", "render_metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=float(value))


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=float(value))


def _counters_by(
    name: str, help_text: str, label: str, counts: Mapping[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


TARGET_STATES = ("healthy", "degraded", "lost")


def _target_metrics(targets: list[dict[str, Any]]) -> Iterator[Metric]:
    """One series per target (and state): what ``/health`` says in ``targets``."""
    state = GaugeMetricFamily(
        "podwarden_target_state",
        "1 for the state each target is in (healthy, degraded, lost), 0 for the others.",
        labels=["target", "state"],
    )
    families = {
        "active_sessions": GaugeMetricFamily(
            "podwarden_target_sessions", "Sessions placed on the target.", labels=["target"]
        ),
        "max_sessions": GaugeMetricFamily(
            "podwarden_target_max_sessions", "The target's capacity.", labels=["target"]
        ),
        "latency_ms": GaugeMetricFamily(
            "podwarden_target_latency_seconds",
            "Round trip of the target's last good heartbeat.",
            labels=["target"],
        ),
        "last_contact": GaugeMetricFamily(
            "podwarden_target_last_contact_timestamp_seconds",
            "Unix time of the target's last good heartbeat.",
            labels=["target"],
        ),
    }
    beats = CounterMetricFamily(
        "podwarden_target_heartbeats",
        "Heartbeats sent to each target, by outcome.",
        labels=["target", "outcome"],
    )
    for target in targets:
        name = str(target["name"])
        for value in TARGET_STATES:
            state.add_metric([name, value], 1.0 if target["state"] == value else 0.0)
        for key, family in families.items():
            figure = target.get(key)
            if figure is None:
                continue
            scale = 0.001 if key == "latency_ms" else 1.0
            family.add_metric([name], float(figure) * scale)
        failures = int(target["heartbeat_failures"])
        beats.add_metric([name, "ok"], int(target["heartbeats"]) - failures)
        beats.add_metric([name, "failed"], failures)
    yield state
    yield from families.values()
    yield beats


class PoolCollector(Collector):
    """The pool's gauges and counters, read from the backend on every scrape."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        backend = self.backend
        pool = backend.pool
        metrics = pool.metrics
        health = backend.health()

        by_state = GaugeMetricFamily(
            "podwarden_sessions", "Sessions known to the pool, by state.", labels=["state"]
        )
        counts = {state: 0 for state in SessionState}
        for session in pool.list():
            counts[session.state] += 1
        for state, count in counts.items():
            by_state.add_metric([state.value], count)
        yield by_state

        yield _gauge("podwarden_active_sessions", "Sessions holding capacity.", pool.active_count)
        yield _gauge("podwarden_max_sessions", "Capacity of the pool.", health.max_sessions)
        yield _gauge(
            "podwarden_max_sessions_per_user",
            "Sessions one user may hold (the pool's capacity when there is no limit of its own).",
            health.max_sessions_per_user or health.max_sessions,
        )
        yield _gauge(
            "podwarden_capacity_ratio",
            "Active sessions divided by capacity.",
            pool.active_count / health.max_sessions if health.max_sessions else 0.0,
        )
        yield _gauge(
            "podwarden_queued_acquires", "Acquires waiting for room.", health.queued_acquires
        )
        yield _gauge("podwarden_users", "Users holding an active session.", health.users)
        if health.targets:
            yield from _target_metrics(health.targets)

        acquires = CounterMetricFamily(
            "podwarden_acquires", "Acquires by outcome.", labels=["outcome"]
        )
        for outcome, count in metrics.acquires.items():
            acquires.add_metric([outcome], count)
        yield acquires

        histogram = metrics.start_seconds
        yield HistogramMetricFamily(
            "podwarden_start_seconds",
            "Seconds from workload start to ready.",
            buckets=[(le, float(count)) for le, count in histogram.cumulative()],
            sum_value=histogram.total,
        )

        yield _counter(
            "podwarden_start_failures",
            "Starts that ended failed after all retries.",
            metrics.start_failures,
        )
        yield _counter("podwarden_start_retries", "Start attempts retried.", metrics.start_retries)
        yield _counter("podwarden_evictions", "Sessions evicted (LRU).", metrics.evictions)
        for family, help_text, outcomes in (
            ("podwarden_refreshes", "Refresh probes by outcome.", metrics.refreshes),
            ("podwarden_liveness_checks", "Liveness checks by outcome.", metrics.liveness),
        ):
            counter = CounterMetricFamily(family, help_text, labels=["outcome"])
            for outcome, count in outcomes.items():
                counter.add_metric([outcome], count)
            yield counter
        yield _counter(
            "podwarden_recycles", "Dead workloads replaced under the same id.", metrics.recycles
        )
        yield _counter(
            "podwarden_terminations", "Sessions whose cleanup finished.", metrics.terminations
        )
        yield _counter(
            "podwarden_cleanup_leftovers",
            "Cleanups that left something behind.",
            metrics.cleanup_leftovers,
        )

        yield from _policy_metrics(backend)
        yield from _resource_metrics(backend)

        yield _gauge(
            "podwarden_healthy", "1 when /health says healthy.", health.status == "healthy"
        )
        yield _gauge("podwarden_runtime_ok", "1 when the runtime answers.", health.runtime_ok)
        yield _gauge("podwarden_store_ok", "1 when the state store writes.", health.store_ok)
        yield _gauge("podwarden_orphans", "Workloads the pool does not know.", len(health.orphans))
        yield _gauge("podwarden_ghosts", "Sessions whose workload is gone.", len(health.ghosts))
        yield _gauge(
            "podwarden_event_subscribers",
            "Open event subscriptions (TUI, SSE, log).",
            backend.bus.subscriber_count,
        )
        yield _gauge(
            "podwarden_uptime_seconds", "Seconds since the backend started.", health.uptime_s
        )
        refused = CounterMetricFamily(
            "podwarden_refused_connections",
            "Connections closed by a guard (API header timeout, API cap, tunnel peer check).",
            labels=["reason"],
        )
        for reason, count in asdict(REFUSALS).items():
            refused.add_metric([reason], count)
        yield refused


def _policy_metrics(backend: Backend) -> Iterator[Metric]:
    """Idle culling, maximum age, pinning, drain and standby: each decision counted, and
    the idle time the culler uses per live session."""
    pool = backend.pool
    metrics = pool.metrics
    now = pool.clock()
    idle = GaugeMetricFamily(
        "podwarden_session_idle_seconds",
        "Seconds since the session's last acquire or tunnel activity (what idle culling uses).",
        labels=["session_id", "user", "template"],
    )
    pinned = standby = 0
    for session in pool.list():
        if not session.state.is_live:
            continue
        pinned += session.pinned
        standby += session.standby
        idle.add_metric(
            [session.session_id, session.user, session.template],
            max(0.0, now - session.idle_since),
        )
    yield idle
    yield _gauge("podwarden_pinned_sessions", "Live sessions that are pinned.", pinned)
    yield _gauge(
        "podwarden_standby_sessions", "Warm unclaimed standby sessions (hold slots).", standby
    )
    yield _gauge(
        "podwarden_draining", "1 while the pool admits no new sessions.", pool.drain.active
    )
    yield _counter("podwarden_culled", "Sessions stopped after their idle timeout.", metrics.culled)
    yield _counters_by(
        "podwarden_aged_out",
        "Sessions stopped at their maximum age: while idle, or busy after the grace.",
        "when",
        metrics.aged_out,
    )
    yield _counter(
        "podwarden_drained_idle", "Idle sessions stopped by a drain.", metrics.drained_idle
    )
    yield _counter(
        "podwarden_refused_draining",
        "New sessions refused while draining.",
        metrics.refused_draining,
    )
    yield _counters_by("podwarden_pin_changes", "Pins and unpins.", "change", metrics.pins)
    yield _counters_by(
        "podwarden_standby",
        "Standby outcomes: claimed, missed (none ready), fallback (dead at claim), refilled.",
        "outcome",
        metrics.standby,
    )
    yield _counter(
        "podwarden_standby_yielded",
        "Standby sessions stopped to give their slot to a user's session.",
        metrics.standby_yielded,
    )


def _resource_metrics(backend: Backend) -> Iterator[Metric]:
    """Each live session's CPU (in cores: 0.5 is half a core) and memory at the last sample,
    labelled measured or requested, their sums, and the host's or the cluster's totals."""
    labels = ["session_id", "user", "template", "source"]
    cpu = GaugeMetricFamily(
        "podwarden_session_cpu_cores",
        "CPU of the session at the last sample, in cores: used (measured) or its pod's "
        "request (requested).",
        labels=labels,
    )
    memory = GaugeMetricFamily(
        "podwarden_session_memory_bytes",
        "Memory of the session at the last sample: RSS of its processes (measured) or its "
        "pod's request (requested).",
        labels=labels,
    )
    cpu_sum: dict[str, float] = {}
    memory_sum: dict[str, float] = {}
    for session in backend.pool.list():
        usage = session.usage
        if usage is None or not session.state.is_live:
            continue
        values = [session.session_id, session.user, session.template, usage.source]
        if usage.cpu_percent is not None:
            cpu.add_metric(values, usage.cpu_percent / 100.0)
            cpu_sum[usage.source] = cpu_sum.get(usage.source, 0.0) + usage.cpu_percent / 100.0
        if usage.memory_bytes is not None:
            memory.add_metric(values, usage.memory_bytes)
            memory_sum[usage.source] = memory_sum.get(usage.source, 0) + usage.memory_bytes
    yield cpu
    yield memory
    for name, help_text, sums in (
        ("podwarden_sessions_cpu_cores", "CPU of all live sessions, in cores.", cpu_sum),
        ("podwarden_sessions_memory_bytes", "Memory of all live sessions.", memory_sum),
    ):
        family = GaugeMetricFamily(name, help_text, labels=["source"])
        for source, value in sorted(sums.items()):
            family.add_metric([source], value)
        yield family
    totals = backend.resources.totals
    rows: list[tuple[str, str, float | None, bool]] = [
        (
            "podwarden_resources_cpu_cores",
            "CPUs of the host, or the cluster's allocatable cores.",
            None if totals is None else totals.cpu_cores,
            False,
        ),
        (
            "podwarden_resources_cpu_used_cores",
            "Cores busy on the host (measured), or requested by podwarden's pods.",
            None if totals is None else totals.cpu_used_cores,
            True,
        ),
        (
            "podwarden_resources_memory_bytes",
            "Memory of the host, or the cluster's allocatable memory.",
            None if totals is None else totals.memory_bytes,
            False,
        ),
        (
            "podwarden_resources_memory_used_bytes",
            "Memory in use on the host (measured), or requested by podwarden's pods.",
            None if totals is None else totals.memory_used_bytes,
            True,
        ),
    ]
    for name, help_text, figure, used in rows:
        family = GaugeMetricFamily(
            name, help_text, labels=["scope", "source"] if used else ["scope"]
        )
        if totals is not None and figure is not None:
            family.add_metric([totals.scope, totals.source] if used else [totals.scope], figure)
        yield family


def metrics_registry(backend: Backend) -> CollectorRegistry:
    """A registry of its own (not the library's global one, which tests and several
    backends in one process would share): the pool's collector plus process figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(backend))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The whole exposition in the text format."""
    return generate_latest(registry)
