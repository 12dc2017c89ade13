"""Starting one session's workload and opening its tunnel, through the runtime.

The pool decides *which* session starts or stops and when; the launcher does the work:
it starts with retries and backoff (each failed try's leftovers removed before the next,
through the one stop path in ``cleanup``), and opens the session's tunnel on its local
port, skipping ports a foreign process holds. Everything it reads and writes about the
session is on its ``SessionRecord``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from backend.cleanup import WorkloadStopper
from backend.config import Settings
from backend.errors import PodwardenError, RuntimeUnavailable, StartError
from backend.events import EventBus, EventKind
from backend.metrics import PoolMetrics
from backend.models import Session
from backend.record import SessionRecord
from backend.runtime.base import Runtime, WorkloadSpec
from backend.templates import Template
from backend.tunnels import PortAllocator

__all__ = ["Launcher"]


class Launcher:
    """A session's workload and tunnel, through the runtime."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        bus: EventBus,
        ports: PortAllocator,
        metrics: PoolMetrics,
        stopper: WorkloadStopper,
        save: Callable[[SessionRecord], None],
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.bus = bus
        self.ports = ports
        self.metrics = metrics
        self.stopper = stopper
        self._save = save

    def spec(self, record: SessionRecord, template: Template) -> WorkloadSpec:
        session = record.session
        return WorkloadSpec(
            session_id=session.session_id,
            user=session.user,
            template=template,
            workdir=Path(self.settings.state_dir) / "sessions" / session.session_id,
            env=credential_env(record.credentials),
            requires=dict(record.requires),
        )

    async def start(self, record: SessionRecord, template: Template) -> None:
        """Start the workload, retrying with backoff; raise the last error when out of tries."""
        pool = self.settings.pool
        session = record.session
        spec = self.spec(record, template)
        on_phase = self.phase_setter(session)
        last: PodwardenError | None = None
        for attempt in range(1, pool.start_attempts + 1):
            try:
                handle = await self.runtime.start(spec, on_phase)
                session.handle = handle
                self._save(record)
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
            await self.stop_workload(record, "cleaning up a failed start")
            retryable = getattr(last, "retryable", True)
            if attempt == pool.start_attempts or not retryable:
                break
            delay = pool.start_backoff * 2 ** (attempt - 1)
            self.metrics.start_retries += 1
            session.phase = f"retrying in {delay:g}s (attempt {attempt + 1})"
            self.bus.publish_session(
                EventKind.START_RETRY,
                f"{session.session_id} start attempt {attempt} failed: {last.message}; "
                f"retrying in {delay:g}s",
                session,
                attempt=attempt,
            )
            await asyncio.sleep(delay)
        assert last is not None
        raise last

    async def resume(self, record: SessionRecord, template: Template) -> None:
        """Finish a start that began before a restart: wait for the workload it made; if
        that does not get ready, stop it and start afresh (with retries)."""
        session = record.session
        assert session.handle is not None
        spec = self.spec(record, template)
        try:
            session.handle = await self.runtime.wait_ready(
                session.handle, spec, template.ready_timeout, self.phase_setter(session)
            )
            return
        except (StartError, RuntimeUnavailable):
            await self.stop_workload(record, "restarting an interrupted start")
        await self.start(record, template)

    async def await_replacement(self, record: SessionRecord, template: Template) -> None:
        """A ready session lost the pod that served it: wait (``wait_ready``) for the one
        its ReplicaSet makes; the tunnel stays open on its port meanwhile. When none gets
        ready, close the tunnel, stop the workload and raise the reason."""
        session = record.session
        assert session.handle is not None
        spec = self.spec(record, template)
        try:
            session.handle = await self.runtime.wait_ready(
                session.handle, spec, template.ready_timeout, self.phase_setter(session)
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a runtime bug too: never leave the workload behind
            await self.close_tunnel(record)
            await self.stop_workload(record, "its replacement did not get ready")
            why = e.message if isinstance(e, PodwardenError) else f"unexpected error: {e!r}"
            raise StartError(
                f"its pod was replaced and the new one did not get ready: {why}",
                retryable=False,
            ) from e

    async def stop_workload(self, record: SessionRecord, why: str) -> None:
        """Stop the session's current workload as one step of a start (no event when
        verified; leftovers are reported)."""
        session = record.session
        handle, session.handle = session.handle, None
        await self.stopper.stop(
            handle, session_id=session.session_id, user=session.user, why=why, verified_kind=None
        )

    async def open_tunnel(self, record: SessionRecord, previous_port: int | None = None) -> None:
        """Open the tunnel on the record's port; a port a foreign process took is never
        handed out again, and a session that comes back on another port than
        ``previous_port`` (the one it had before a restart) says so (``tunnel_moved``)."""
        session = record.session
        assert session.handle is not None
        host = self.settings.tunnels.host
        if record.port is None:
            record.port = self.ports.allocate()
        wanted = record.port if previous_port is None else previous_port
        for _ in range(20):
            try:
                tunnel = await self.runtime.open_tunnel(session.handle, host, record.port)
                break
            except OSError:
                # Taken by a process we do not know: never hand it out again.
                self.ports.mark_bad(record.port)
                record.port = self.ports.allocate()
        else:
            raise StartError("no free local port for the tunnel", retryable=False)
        record.tunnel = tunnel
        session.tunnel = tunnel.info
        session.listening = tunnel.is_listening
        self.bus.publish_session(
            EventKind.TUNNEL_OPENED,
            f"{session.session_id} tunnel {tunnel.info.address} -> "
            f"{tunnel.info.target_host}:{tunnel.info.target_port}",
            session,
            port=record.port,
        )
        if record.port != wanted:
            self.bus.publish_session(
                EventKind.TUNNEL_MOVED,
                f"{session.session_id} tunnel moved from port {wanted} to {record.port} "
                f"(port {wanted} is taken by another process): clients must use the new port",
                session,
                old_port=wanted,
                new_port=record.port,
            )

    async def close_tunnel(self, record: SessionRecord) -> None:
        tunnel, record.tunnel = record.tunnel, None
        if tunnel is None:
            return
        await tunnel.close()
        self.bus.publish_session(
            EventKind.TUNNEL_CLOSED,
            f"{record.session_id} tunnel {tunnel.info.address} closed",
            record.session,
        )

    def set_phase(self, session: Session, phase: str) -> None:
        """Say what a starting session does now; a change is a ``phase`` event."""
        if phase == session.phase:
            return
        session.phase = phase
        self.bus.publish_session(
            EventKind.PHASE, f"{session.session_id}: {phase}", session, phase=phase
        )

    def phase_setter(self, session: Session) -> Callable[[str], None]:
        """The ``on_phase`` callback a runtime reports the session's start through."""

        def on_phase(phase: str) -> None:
            self.set_phase(session, phase)

        return on_phase

    def release_port(self, record: SessionRecord) -> None:
        port, record.port = record.port, None
        if port is not None:
            self.ports.release(port)


def credential_env(credentials: dict[str, str]) -> dict[str, str]:
    """The credentials as environment variables, plus ``PODWARDEN_CREDENTIALS`` naming
    them (names only) so a workload knows which variables hold secrets."""
    if not credentials:
        return {}
    return {**credentials, "PODWARDEN_CREDENTIALS": ",".join(sorted(credentials))}
