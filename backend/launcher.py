"""Starting and stopping one session's workload and tunnel through the runtime.

The pool decides *which* session starts or stops and when; the launcher does the work:
it starts with retries and backoff (each failed try's leftovers removed before the next),
stops and reports what was left behind, and opens the session's tunnel on its local port,
skipping ports a foreign process holds. Credentials live here, in memory only, for as
long as the session may need them again (a recycle restarts the workload with them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from backend.config import Settings
from backend.errors import PodwardenError, RuntimeUnavailable, StartError
from backend.events import EventBus, EventKind
from backend.metrics import PoolMetrics
from backend.models import Session
from backend.runtime.base import Runtime, Tunnel, WorkloadSpec
from backend.templates import Template
from backend.tunnels import PortAllocator

__all__ = ["Launcher"]


class Launcher:
    """A session's workload, tunnel, local port and credentials, through the runtime."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        bus: EventBus,
        ports: PortAllocator,
        metrics: PoolMetrics,
        save: Callable[[Session], None],
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.bus = bus
        self.ports = ports
        self.metrics = metrics
        self._save = save
        self.credentials: dict[str, dict[str, str]] = {}
        """Credentials by session id; never persisted."""
        self.ports_of: dict[str, int] = {}
        """The local tunnel port each session holds, from creation to its end."""
        self.tunnels: dict[str, Tunnel] = {}
        """Open tunnels by session id."""

    def spec(self, session: Session, template: Template) -> WorkloadSpec:
        return WorkloadSpec(
            session_id=session.session_id,
            user=session.user,
            template=template,
            workdir=Path(self.settings.state_dir) / "sessions" / session.session_id,
            env=self.credential_env(session.session_id),
        )

    def credential_env(self, session_id: str) -> dict[str, str]:
        """The credentials as environment variables, plus ``PODWARDEN_CREDENTIALS`` naming
        them (names only) so a workload knows which variables hold secrets."""
        credentials = self.credentials.get(session_id)
        if not credentials:
            return {}
        return {**credentials, "PODWARDEN_CREDENTIALS": ",".join(sorted(credentials))}

    async def start(self, session: Session, template: Template) -> None:
        """Start the workload, retrying with backoff; raise the last error when out of tries."""
        pool = self.settings.pool
        spec = self.spec(session, template)

        def on_phase(phase: str) -> None:
            session.phase = phase

        last: PodwardenError | None = None
        for attempt in range(1, pool.start_attempts + 1):
            handle = None
            try:
                handle = await self.runtime.start(spec, on_phase)
                session.handle = handle
                self._save(session)
                session.handle = await self.runtime.wait_ready(
                    handle, spec, template.ready_timeout, on_phase
                )
                return
            except (StartError, RuntimeUnavailable) as e:
                last = e
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a runtime bug must not leave a half-made workload
                last = StartError(f"unexpected runtime error: {e!r}")
            if session.handle is not None:
                await self.stop(session, "cleaning up a failed start")
            retryable = getattr(last, "retryable", True)
            if attempt == pool.start_attempts or not retryable:
                break
            delay = pool.start_backoff * 2 ** (attempt - 1)
            self.metrics.start_retries += 1
            session.phase = f"retrying in {delay:g}s (attempt {attempt + 1})"
            self.bus.publish(
                EventKind.START_RETRY,
                f"{session.session_id} start attempt {attempt} failed: {last.message}; "
                f"retrying in {delay:g}s",
                session_id=session.session_id,
                user=session.user,
                attempt=attempt,
            )
            await asyncio.sleep(delay)
        assert last is not None
        raise last

    async def resume(self, session: Session, template: Template) -> None:
        """Finish a start that began before a restart: wait for the workload it made; if
        that does not get ready, stop it and start afresh (with retries)."""
        assert session.handle is not None
        spec = self.spec(session, template)

        def on_phase(phase: str) -> None:
            session.phase = phase

        try:
            session.handle = await self.runtime.wait_ready(
                session.handle, spec, template.ready_timeout, on_phase
            )
            return
        except (StartError, RuntimeUnavailable):
            await self.stop(session, "restarting an interrupted start")
        await self.start(session, template)

    async def stop(self, session: Session, why: str) -> None:
        handle = session.handle
        if handle is None:
            return
        session.handle = None
        try:
            report = await self.runtime.stop(handle, self.settings.pool.stop_grace)
        except PodwardenError as e:
            self.bus.publish(
                EventKind.CLEANUP_LEFTOVER,
                f"{session.session_id}: {why}: stop failed: {e.message}",
                session_id=session.session_id,
                user=session.user,
            )
            return
        if report.leftovers:
            self.bus.publish(
                EventKind.CLEANUP_LEFTOVER,
                f"{session.session_id}: {why}: left behind {', '.join(report.leftovers)}",
                session_id=session.session_id,
                user=session.user,
            )

    async def open_tunnel(self, session: Session) -> None:
        assert session.handle is not None
        host = self.settings.tunnels.host
        port = self.ports_of[session.session_id]
        for _ in range(20):
            try:
                tunnel = await self.runtime.open_tunnel(session.handle, host, port)
                break
            except OSError:
                # Taken by a process we do not know: never hand it out again.
                self.ports.mark_bad(port)
                port = self.ports.allocate()
                self.ports_of[session.session_id] = port
        else:
            raise StartError("no free local port for the tunnel", retryable=False)
        self.tunnels[session.session_id] = tunnel
        session.tunnel = tunnel.info
        session.listening = tunnel.is_listening
        self.bus.publish(
            EventKind.TUNNEL_OPENED,
            f"{session.session_id} tunnel {tunnel.info.address} -> "
            f"{tunnel.info.target_host}:{tunnel.info.target_port}",
            session_id=session.session_id,
            user=session.user,
            port=port,
        )

    async def close_tunnel(self, session: Session) -> None:
        tunnel = self.tunnels.pop(session.session_id, None)
        if tunnel is None:
            return
        await tunnel.close()
        self.bus.publish(
            EventKind.TUNNEL_CLOSED,
            f"{session.session_id} tunnel {tunnel.info.address} closed",
            session_id=session.session_id,
            user=session.user,
        )

    def release_port(self, session: Session) -> None:
        port = self.ports_of.pop(session.session_id, None)
        if port is not None:
            self.ports.release(port)
