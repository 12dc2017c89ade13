"""Capacity gauges: how full the pool is, in total, per user and (several targets) per
target, as number *and* bar.

``7/10 70%`` is what operators read; the bar is for the glance. Per-user gauges show the
busiest users first and say how many more there are, because with hundreds of users a
line cannot hold them all and the full ones are the ones that matter.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui.format import clip, gauge_bar

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
    per_user_max: reactive[int] = reactive(0)
    """The per-user limit."""
    users: reactive[tuple[tuple[str, int], ...]] = reactive(())
    """(user, live sessions), busiest first."""
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
        bar_width = 30 if width >= 110 else 20
        text.append("Pool  ", style="bold")
        if not total:
            text.append("no data yet", style="dim")
            return text
        text.append(gauge_bar(self.active, total, bar_width), style="red" if full else "green")
        text.append(f" {self.active}/{total} {pct}%", style="bold")
        if full:
            text.append(" FULL", style="bold reverse red")
        text.append(f"  ◌ {self.starting} starting  ✗ {self.failed} failed")
        if self.queued:
            text.append(f"  ⧗ {self.queued} queued", style="bold yellow")
        text.append("\n")
        text.append("Users ", style="bold")
        limit = self.per_user_max
        used = 6
        shown = 0
        for user, count in self.users:
            rest = len(self.users) - shown
            piece = f"{clip(user, 12)} {gauge_bar(count, limit, min(limit, 5))} {count}/{limit}  "
            more = f"+{rest - 1} more" if rest > 1 else ""
            if used + len(piece) + len(more) > width - 2:
                text.append(f"+{rest} more", style="dim")
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
