"""Resource samples of a multi-target pool: each target's, merged into one report."""

from __future__ import annotations

from collections.abc import Sequence

from backend.runtime.base import ResourceReport, ResourceTotals

__all__ = ["merge_reports"]


def _sum(values: Sequence[float | int | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(v or 0 for v in values))


def merge_reports(reports: Sequence[ResourceReport]) -> ResourceReport:
    """Every target's sessions; the totals of clusters added up, of local targets the
    host's once (they all run on this one host), and none when local and cluster
    targets mix: a host's used memory and a cluster's requests are not one figure."""
    sessions = {sid: usage for report in reports for sid, usage in report.sessions.items()}
    totals = [r.totals for r in reports if r.totals is not None]
    kinds = {(t.scope, t.source) for t in totals}
    if totals and len(kinds) == 1 and totals[0].scope == "host":
        return ResourceReport(sessions=sessions, totals=totals[0])
    if totals and len(kinds) == 1:
        ((scope, source),) = kinds
        memory = _sum([t.memory_bytes for t in totals])
        memory_used = _sum([t.memory_used_bytes for t in totals])
        summed = ResourceTotals(
            scope=scope,
            source=source,
            cpu_cores=_sum([t.cpu_cores for t in totals]),
            cpu_used_cores=_sum([t.cpu_used_cores for t in totals]),
            memory_bytes=int(memory) if memory is not None else None,
            memory_used_bytes=int(memory_used) if memory_used is not None else None,
            detail="; ".join(t.detail for t in totals if t.detail),
        )
        return ResourceReport(sessions=sessions, totals=summed)
    return ResourceReport(sessions=sessions)
