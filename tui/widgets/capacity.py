"""Capacity gauges: how full the pool is, in total, per user and (several targets) per
target, as number *and* bar.

``7/10 70%`` is what operators read (``7/10 70% · 2 standby`` when warm, unclaimed
workloads hold some of the slots); the bar is for the glance. Per-user gauges show the
busiest users first and say how many more there are, because with hundreds of users a
line cannot hold them all and the full ones are the ones that matter.

At the right of the pool line, as room allows, the host's CPU and memory (local runtime:
measured) or the cluster's (Kubernetes: the nodes' allocatable against what podwarden's
pods request, said as "requests"), from ``/health``'s ``resources``.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.events import Click
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from tui.format import clip, gauge_bar, percent, size

__all__ = ["CapacityGauges"]


class CapacityGauges(Widget):
    """Two lines: the pool gauge with counts by state, then the per-user gauges."""

    DEFAULT_CSS = """
    CapacityGauges {
        height: 2;
        width: 1fr;
        padding: 0 1;
    }
    """

    active: reactive[int] = reactive(0)
    """Sessions holding capacity (starting, ready, refreshing)."""
    max_sessions: reactive[int] = reactive(0)
    """The pool's capacity; 0 before the first health read."""
    starting: reactive[int] = reactive(0)
    """Sessions starting now."""
    failed: reactive[int] = reactive(0)
    """Failed sessions kept for reading."""
    queued: reactive[int] = reactive(0)
    """Acquires waiting for room."""
    standby: reactive[int] = reactive(0)
    """Warm, unclaimed standby workloads (counted in ``active``)."""
    per_user_max: reactive[int] = reactive(0)
    """The per-user limit."""
    users: reactive[tuple[tuple[str, int], ...]] = reactive(())
    """(user, live sessions), busiest first."""
    resources: reactive[dict[str, Any] | None] = reactive(None)
    """``/health``'s ``resources`` (host or cluster CPU and memory); None: not reported."""

    class UsersClicked(Message):
        """The Users line was clicked: the screen shows the whole list."""

    def on_click(self, event: Click) -> None:
        if event.y == 1:
            event.stop()
            self.post_message(self.UsersClicked())

    targets: reactive[tuple[tuple[str, str, int, int], ...]] = reactive(())
    """(target, state, sessions, capacity) of a multi-target pool; empty: one runtime."""

    def watch_targets(self, targets: tuple[tuple[str, str, int, int], ...]) -> None:
        self.styles.height = 3 if targets else 2

    def render(self) -> Text:
        width = max(20, (self.size.width or 80))
        text = Text(no_wrap=True, overflow="ellipsis")
        total = self.max_sessions
        pct = round(100 * self.active / total) if total else 0
        full = total > 0 and self.active >= total
        text.append("Pool  ", style="bold")
        if not total:
            text.append("no data yet", style="dim")
            return text
        tail = Text(no_wrap=True)
        tail.append(f" {self.active}/{total} {pct}%", style="bold")
        if self.standby:
            tail.append(f" · {self.standby} standby", style="bold")
        if full:
            tail.append(" FULL", style="bold reverse red")
        tail.append(f"  ◌ {self.starting} starting  ✗ {self.failed} failed")
        if self.queued:
            tail.append(f"  ⧗ {self.queued} queued", style="bold yellow")
        # The bar gives way to the numbers: it shrinks so the line never needs cutting,
        # and down to _BAR_BESIDE_RESOURCES for the host's (or cluster's) figures.
        free = width - 2 - 6 - tail.cell_len
        wanted = 30 if width >= 110 else 20
        bar_width = max(8, min(wanted, free))
        resources = None
        for gauge in resource_gauges(self.resources):
            if free - gauge.cell_len - 2 >= _BAR_BESIDE_RESOURCES:
                resources = gauge
                bar_width = min(wanted, free - gauge.cell_len - 2)
                break
        text.append(gauge_bar(self.active, total, bar_width), style="red" if full else "green")
        text.append_text(tail)
        if resources is not None:
            text.append(" " * (free - bar_width - resources.cell_len))
            text.append_text(resources)
        text.append("\n")
        text.append("Users ", style="bold")
        limit = self.per_user_max
        used = 6
        shown = 0
        for user, count in self.users:
            rest = len(self.users) - shown
            piece = f"{clip(user, 12)} {gauge_bar(count, limit, min(limit, 5))} {count}/{limit}  "
            more = f"+{rest - 1} more (u)" if rest > 1 else ""
            if used + len(piece) + len(more) > width - 2:
                text.append(f"+{rest} more (u)", style="dim")
                break
            style = "bold red" if limit and count >= limit else ""
            text.append(piece, style=style)
            used += len(piece)
            shown += 1
        if not self.users:
            text.append("none", style="dim")
        if self.targets:
            text.append("\n")
            text.append("Sites ", style="bold")
            for name, state, count, capacity in self.targets:
                style = {"lost": "bold red", "degraded": "yellow"}.get(state, "")
                text.append(f"{clip(name, 12)} {gauge_bar(count, capacity, 5)} {count}/{capacity}")
                text.append(f" {state}  " if state != "healthy" else "  ", style=style)
        return text


_BAR_BESIDE_RESOURCES = 12
"""The pool bar's narrowest width when the resource figures share its line."""


def resource_gauges(res: dict[str, Any] | None) -> list[Text]:
    """The host's or cluster's CPU and memory, from the richest form down to the shortest.

    Local: ``Host CPU ██░░ 12%  MEM ███░ 3.1G/7.8G``. Kubernetes, requests against the
    nodes' allocatable: ``Cluster requests CPU █░░░ 1.25/8  MEM ░░░░ 1.5G/32G``.
    """
    if not res:
        return []
    cpu_pct, mem_pct = res.get("cpu_percent"), res.get("memory_percent")
    memory = size(res.get("memory_used_bytes"))
    if res.get("memory_bytes"):
        memory += f"/{size(res.get('memory_bytes'))}"
    if res.get("scope") == "cluster":
        used, cores = res.get("cpu_used_cores"), res.get("cpu_cores")
        cpu = "-" if used is None else f"{used:g}"
        if cores:
            cpu += f"/{cores:g}"
        labels = ("Cluster requests", "Requests", "Req")
    else:
        cpu = percent(cpu_pct)
        labels = ("Host", "Host", "Host")
    forms = [
        (labels[0], cpu, memory, True),
        (labels[1], cpu, memory, False),
        (labels[2], percent(cpu_pct), percent(mem_pct), False),
    ]
    if res.get("scope") == "cluster":
        if cpu_pct is None:
            forms[2] = (labels[2], cpu, size(res.get("memory_used_bytes")), False)
    else:  # the last resort: no label (a cluster's requests must say so)
        forms.append(("", percent(cpu_pct), percent(mem_pct), False))
    out = []
    for label, cpu_text, mem_text, bars in forms:
        t = Text(no_wrap=True)
        if label:
            t.append(f"{label} ", style="bold")
        t.append("CPU ")
        if bars and cpu_pct is not None:
            t.append(f"{_bar(cpu_pct)} ", style=_style(cpu_pct))
        t.append(cpu_text, style="bold")
        t.append("  MEM " if bars else " MEM ")
        if bars and mem_pct is not None:
            t.append(f"{_bar(mem_pct)} ", style=_style(mem_pct))
        t.append(mem_text, style="bold")
        out.append(t)
    return out


def _bar(pct: float) -> str:
    return gauge_bar(round(pct), 100, 5)


def _style(pct: float) -> str:
    return "bold yellow" if pct >= 90 else "cyan"
