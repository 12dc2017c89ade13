"""Counters of what the hardening refused, process-wide, for ``/metrics``.

Connections are refused below the pool (by the API's HTTP protocol and by the tunnels'
accept), where no pool object is at hand, so the counts live here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REFUSALS", "Refusals"]


@dataclass
class Refusals:
    """Connections closed by the guards since the process started."""

    api_header_timeouts: int = 0
    """API connections closed for not completing a request's headers in time."""
    api_idle_evicted: int = 0
    """Idle API connections closed to make room for a new one at the cap."""
    api_refused: int = 0
    """API connections refused at the cap with every connection busy."""
    tunnel_refused: int = 0
    """Tunnel connections refused because the peer's user is not allowed."""


REFUSALS = Refusals()
