"""The detail pane: everything about the selected session that does not fit in a row.

Timestamps as wall time plus "ago", the last error with its reason in full, the cleanup
result after an eviction (the proof nothing was left behind), and the session's own
recent events, so an operator can tell why a session is where it is without the logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from tui.format import (
    DEAD_STATES,
    LIVE_STATES,
    PIN_SYMBOL,
    STATE_STYLE,
    STATE_SYMBOL,
    UNKNOWN,
    clock_time,
    duration,
    idle_since,
    ref_text,
    size,
    state_word,
)

EVICT_NEXT_SYMBOL = "⏏"
"""Marks the session a new one would evict if the pool were full now."""

__all__ = ["EVICT_NEXT_SYMBOL", "DetailPane"]


class DetailPane(VerticalScroll):
    """The selected session in full; scrolls when it is longer than the pane."""

    DEFAULT_CSS = """
    DetailPane {
        height: 1fr;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    DetailPane > Static {
        width: 1fr;
    }
    """

    session_id: reactive[str | None] = reactive(None)
    """The session shown, or None."""

    def __init__(
        self, localtime: Callable[[float], time.struct_time] = time.localtime, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._localtime = localtime
        self._body = Static(Text("No session selected", style="dim"))
        self._last: Text | None = None
        self._height = -1

    def compose(self) -> ComposeResult:
        yield self._body

    def show(
        self, session: dict[str, Any] | None, events: Iterable[dict[str, Any]], now: float
    ) -> None:
        """Render ``session`` (or the empty note) with its recent ``events``."""
        self.session_id = session["session_id"] if session else None
        text = self._describe(session, list(events), now) if session else None
        if text is None:
            text = Text("No session selected: ↑/↓ picks one, n starts one.", style="dim")
        if self._last is None or text.plain != self._last.plain:
            self._last = text
            # A layout pass redraws the whole screen (~25 ms with a big table): only ask
            # for one when the text's height changes, not on every cursor move.
            width = self._body.size.width
            height = len(text.wrap(self.app.console, width)) if width > 0 else -1
            self._body.update(text, layout=height != self._height or height < 0)
            self._height = height

    def _when(self, ts: float | None, now: float) -> str:
        if ts is None:
            return "-"
        return f"{clock_time(ts, self._localtime)} ({duration(now - ts)} ago)"

    def _policy(self, t: Text, s: dict[str, Any], now: float) -> None:
        """The idle time the culler uses, and when a policy stops the session."""
        since = idle_since(s)
        if since is not None:
            t.append(f"idle    {duration(now - since)}\n")
        t.append("culls   ")
        cull_at = s.get("cull_at")
        if s.get("pinned"):
            t.append(f"never: {PIN_SYMBOL} pinned\n")
        elif cull_at is None:
            t.append("never (no idle/age policy)\n", style="dim")
        elif cull_at <= now:
            t.append("now (due)\n", style="bold yellow")
        else:
            t.append(f"in {duration(cull_at - now)} ({clock_time(cull_at, self._localtime)})\n")

    def _describe(self, s: dict[str, Any], events: list[dict[str, Any]], now: float) -> Text:
        state = str(s.get("state"))
        t = Text(no_wrap=False)
        t.append(f"{s['session_id']}\n", style="bold")
        if s.get("standby") and not s.get("user"):
            t.append("standby", style="italic")
            t.append(f" (unclaimed) · template {s['template']}\n")
        else:
            t.append(f"user {s['user']} · template {s['template']}\n")
        t.append("state ")
        if s.get("stale") and state not in DEAD_STATES:
            # The link is down: what the console last heard may no longer be true.
            t.append(f"{UNKNOWN} (last heard: {state_word(state)})", style="dim")
        else:
            t.append(
                f"{STATE_SYMBOL.get(state, '?')} {state_word(state)}",
                style=STATE_STYLE.get(state, ""),
            )
        if state == "starting":
            since = s.get("starting_since") or s["created_at"]
            t.append(f" · {s.get('phase')} for {duration(now - since)}")
        if s.get("pinned"):
            t.append(f" · {PIN_SYMBOL} pinned", style="bold")
        if s.get("next_eviction"):
            t.append(f" · {EVICT_NEXT_SYMBOL} next to evict", style="bold")
        t.append("\n")
        t.append(f"created {self._when(s.get('created_at'), now)}\n")
        ready_at = s.get("ready_at")
        if ready_at is not None:
            took = duration(ready_at - s["created_at"]) if ready_at >= s["created_at"] else "-"
            t.append(f"ready   {clock_time(ready_at, self._localtime)} (start took {took})\n")
        uses = int(s.get("use_count") or 0)
        t.append(f"used    {self._when(s.get('last_used_at'), now)} · {uses} use")
        t.append("s\n" if uses != 1 else "\n")
        if state in LIVE_STATES:
            self._policy(t, s, now)
        refreshed, recycles = s.get("last_refresh_at"), int(s.get("recycles") or 0)
        if refreshed is not None or recycles:
            t.append(f"refresh {self._when(refreshed, now) if refreshed else 'not yet'}")
            t.append(f" · recycled {recycles}×\n" if recycles else "\n")
        tunnel = s.get("tunnel")
        if tunnel and state in ("starting", "ready", "refreshing"):
            listening = tunnel.get("listening")
            mark = {True: "listening", False: "NOT listening"}.get(listening, "")
            if listening is None:
                mark = "open" if state != "starting" else "opens when ready"
            t.append(
                f"tunnel  {tunnel['host']}:{tunnel['port']} -> "
                f"{tunnel['target_host']}:{tunnel['target_port']} {mark}\n"
            )
        t.append(f"workload {ref_text(s)}")
        if s.get("runtime"):
            t.append(f" ({s['runtime']})")
        t.append("\n")
        source = s.get("resources_source")
        if source and state in LIVE_STATES:
            cpu = s.get("cpu_percent")
            cpu_text = "-" if cpu is None else f"{cpu:.1f}% of a core"
            how = "measured" if source == "measured" else "requested by its pod, not measured"
            t.append(f"cpu/mem {cpu_text} · {size(s.get('memory_bytes'))} ({how})\n")
        if s.get("last_error"):
            t.append("error   ", style="bold red")
            t.append(f"{s['last_error']}\n")
        if s.get("cleanup"):
            ok = str(s["cleanup"]).startswith("verified")
            t.append("cleanup ", style="bold")
            t.append(f"{'✓' if ok else '✗'} {s['cleanup']}\n", style="" if ok else "bold red")
        if events:
            t.append("recent events\n", style="bold")
            for event in events[-8:]:
                t.append(f" {clock_time(event.get('ts'), self._localtime)} ", style="dim")
                t.append(f"{event.get('kind')}: {event.get('message')}\n")
        t.rstrip()
        return t
