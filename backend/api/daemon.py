"""``podwarden serve``: backend + API in one event loop until SIGINT or SIGTERM.

Start order: bind the port first (a taken port fails before any session is touched), then
start the backend (recovery re-adopts live sessions), then serve. Stop order is the
reverse; sessions keep running for the next start unless ``stop_sessions`` says
otherwise. Events go to the log one line each; warm reuses and workload log lines only at
DEBUG, because at thousands per second they would drown everything else.

The bound URL is written to ``<state-dir>/api-url`` while serving, so ``podwarden health``
finds a server started with ``--port 0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TextIO

from backend.api.listen import ADDRESS_FILE, bind_socket, is_loopback
from backend.api.server import ApiServer, serve_api
from backend.api.token import load_or_create_token
from backend.config import Settings
from backend.errors import PodwardenError
from backend.events import EventBus, EventKind
from backend.runtime.base import Runtime
from backend.service import Backend

__all__ = ["ADDRESS_FILE", "run_serve"]

log = logging.getLogger("podwarden")
event_log = logging.getLogger("podwarden.events")

_QUIET = frozenset({EventKind.REUSED, EventKind.LOG})


async def _log_events(bus: EventBus) -> None:
    kinds = set(EventKind)
    if not event_log.isEnabledFor(logging.DEBUG):
        kinds -= _QUIET
    with bus.subscribe(maxsize=10000, kinds=kinds) as subscription:
        async for event in subscription:
            level = logging.DEBUG if event.kind in _QUIET else logging.INFO
            if event.kind in (EventKind.FAILED, EventKind.CLEANUP_LEFTOVER, EventKind.VANISHED):
                level = logging.WARNING
            event_log.log(level, "%s: %s", event.kind.value, event.message)


def _say(out: TextIO, line: str) -> None:
    print(f"podwarden: {line}", file=out, flush=True)


async def run_serve(
    settings: Settings,
    *,
    stop_sessions: bool = False,
    runtime: Runtime | None = None,
    out: TextIO = sys.stderr,
) -> int:
    """Serve until SIGINT/SIGTERM; the exit code (0 after a clean stop, 1 on failure)."""
    token = load_or_create_token(settings.state_dir)
    host, port = settings.api.host, settings.api.port
    try:
        sock = bind_socket(host, port)
    except OSError as e:
        _say(out, f"cannot listen on {host}:{port}: {e.strerror or e}")
        return 1
    backend = Backend(settings, runtime=runtime)
    try:
        await backend.start()
    except (PodwardenError, OSError) as e:
        sock.close()
        _say(out, f"cannot start the backend: {getattr(e, 'message', None) or e}")
        with contextlib.suppress(Exception):
            await backend.stop()
        return 1
    events = asyncio.get_running_loop().create_task(
        _log_events(backend.bus), name="podwarden: event log"
    )
    server = await serve_api(backend, token=token.value, sock=sock)
    address_file = Path(settings.state_dir) / ADDRESS_FILE
    address_file.write_text(server.local_url + "\n", encoding="utf-8")
    _banner(out, settings, backend, server, token.source)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    crashed = asyncio.ensure_future(server.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({crashed, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    code = 0
    if crashed.done() and not stop.is_set():
        _say(out, "the API server stopped unexpectedly; shutting down")
        code = 1
    stopping.cancel()
    what = "stopping sessions" if stop_sessions else "sessions keep running for the next start"
    _say(out, f"shutting down ({what})")
    await server.stop()
    await backend.stop(stop_sessions=stop_sessions)
    events.cancel()
    await asyncio.gather(events, crashed, return_exceptions=True)
    address_file.unlink(missing_ok=True)
    _say(out, "stopped")
    return code


def _banner(
    out: TextIO, settings: Settings, backend: Backend, server: ApiServer, token_source: str
) -> None:
    """Address, warning if public, then the token line last (scripts wait for it)."""
    recovery = backend.recovery
    adopted = len(recovery.adopted) if recovery else 0
    _say(
        out,
        f"serving {server.url} (runtime {backend.runtime.describe()}, "
        f"capacity {settings.pool.max_sessions}, {adopted} sessions re-adopted)",
    )
    if not is_loopback(server.host):
        _say(
            out,
            f"warning: listening on {server.host}, reachable from other machines; the token "
            "guards every route but /health, but traffic is plain HTTP (use a TLS proxy "
            "or an SSH tunnel)",
        )
    if token_source == "env":
        _say(out, "token: from PODWARDEN_TOKEN")
    else:
        _say(out, f"token: in {token_source} (send 'Authorization: Bearer <token>')")
