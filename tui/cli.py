"""The ``podwarden`` console script: ``backend.cli`` with the terminal UI plugged in.

``backend.cli`` parses and dispatches without ever importing the TUI; this module hands
it ``_run_tui``, which imports Textual (and the backend's heavier parts) only when a UI
is really started, so ``podwarden --help`` and ``podwarden health`` stay fast.

Main job (no subcommand, or ``tui`` without ``--connect``): the API port is bound before
the screen is taken over (a taken port is one line on stderr, not a broken screen), then
the app starts backend and API inside its own event loop and stops both on the way out;
sessions keep running for re-adoption at the next start. Remote (``tui --connect URL``):
the same app over ``HttpClient``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.config import Settings

__all__ = ["main"]


def main() -> int:
    """Entry point of the ``podwarden`` console script."""
    from backend.cli import main as backend_main

    return backend_main(sys.argv[1:], run_tui=_run_tui)


def _tui_settings(args: argparse.Namespace) -> Any:
    from tui.settings import TuiSettings

    return TuiSettings(
        read_only=bool(getattr(args, "read_only", False)),
        mouse=not bool(getattr(args, "no_mouse", False)),
    )


def _run_tui(args: argparse.Namespace, settings: Settings | None) -> int:
    if getattr(args, "connect", None):
        return _run_remote(args)
    assert settings is not None
    return _run_embedded(args, settings)


def _remote_token(args: argparse.Namespace) -> str | None:
    from backend.api.token import TOKEN_ENV, read_token_file

    if args.token_file:
        return read_token_file(args.token_file)
    return os.environ.get(TOKEN_ENV, "").strip() or None


def _run_remote(args: argparse.Namespace) -> int:
    from backend.http_client import HttpClient
    from tui.app import make_app

    client = HttpClient(str(args.connect), _remote_token(args))
    tui = _tui_settings(args)
    app = make_app(client, tui)
    _run_app(app, tui.mouse)
    return int(app.return_code or 0)


def _run_embedded(args: argparse.Namespace, settings: Settings) -> int:
    from backend.api.token import load_or_create_token
    from tui.embedded import EmbeddedBackend, bind_socket

    host, port = settings.api.host, settings.api.port
    token = load_or_create_token(settings.state_dir)
    try:
        sock = bind_socket(host, port)
    except OSError as e:
        print(
            f"podwarden: cannot listen on {host}:{port}: {e.strerror or e} "
            "(another podwarden running? try --port 0)",
            file=sys.stderr,
        )
        return 1
    embedded = EmbeddedBackend(settings, token.value, sock)
    from tui.app import make_app

    tui = _tui_settings(args)
    app = make_app(embedded.client, tui, embedded)
    _run_app(app, tui.mouse)
    return int(app.return_code or 0)


def _run_app(app: Any, mouse: bool) -> None:
    """Run the app on uvloop where installed: the embedded tunnels relay with
    socat's latency there, about a quarter more on the stdlib loop (bench_tunnel)."""
    import asyncio

    from backend.cli import loop_factory

    factory = loop_factory()
    if factory is None:
        app.run(mouse=mouse)
        return
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        app.run(mouse=mouse, loop=loop)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
