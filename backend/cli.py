"""The command line: ``podwarden [serve | health | drain | undrain | tui]``.

The parser and the dispatch live here; the TUI's console script (``tui.cli:main``) calls
``main(argv, run_tui=...)`` so this module never imports the TUI. Heavy imports (FastAPI,
uvicorn, httpx, kubernetes) happen inside the commands that need them, so ``--help`` and
a config error answer at once.

Settings come from, strongest first: flags, ``PODWARDEN_*`` environment variables, the
TOML file (``--config`` / ``PODWARDEN_CONFIG``), defaults. Common flags are accepted
before or after the subcommand.

Exit codes: 0 fine; 1 the command failed (``health``: degraded); 2 usage or configuration
error; 3 ``health``: backend unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from backend.config import Settings, apply_overrides, load_settings
from backend.errors import ConfigError
from backend.state_lock import StateDirInUse, hold_state_dir

__all__ = ["EXIT_UNREACHABLE", "build_parser", "load_from_args", "main"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

RunTui = Callable[[argparse.Namespace, Settings | None], int]

# dest -> (environment variable, dotted settings key or None)
_COMMON: dict[str, tuple[str, str | None]] = {
    "config": ("PODWARDEN_CONFIG", None),
    "state_dir": ("PODWARDEN_STATE_DIR", "state_dir"),
    "runtime": ("PODWARDEN_RUNTIME", "runtime.kind"),
    "max_sessions": ("PODWARDEN_MAX_SESSIONS", "pool.max_sessions"),
    "host": ("PODWARDEN_HOST", "api.host"),
    "port": ("PODWARDEN_PORT", "api.port"),
}


def _add_common(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    """The common flags; on subparsers they default to SUPPRESS so that a flag given
    before the subcommand is not reset by the subparser's default."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if sub else value

    group = parser.add_argument_group("common options")
    group.add_argument("--config", metavar="FILE", default=default(None), help="TOML settings file")
    group.add_argument(
        "--state-dir", metavar="DIR", default=default(None), help="store, token and workdirs"
    )
    group.add_argument(
        "--runtime",
        choices=("local", "kubernetes", "multi"),
        default=default(None),
        help="what runs sessions",
    )
    group.add_argument(
        "--max-sessions", metavar="N", type=int, default=default(None), help="pool capacity"
    )
    group.add_argument("--host", default=default(None), help="API address (default 127.0.0.1)")
    group.add_argument("--port", type=int, default=default(None), help="API port (0: any free)")


def _add_tui_flags(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    default: Any = argparse.SUPPRESS if sub else False
    parser.add_argument(
        "--read-only", action="store_true", default=default, help="no keys that change the pool"
    )
    parser.add_argument("--no-mouse", action="store_true", default=default, help="ignore the mouse")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podwarden",
        description="A terminal control room for pools of per-user persistent sessions. "
        "Without a command: backend, HTTP API and terminal UI in one process.",
        epilog="Environment: PODWARDEN_CONFIG, PODWARDEN_STATE_DIR, PODWARDEN_RUNTIME, "
        "PODWARDEN_MAX_SESSIONS, PODWARDEN_HOST, PODWARDEN_PORT, PODWARDEN_TOKEN.",
    )
    _add_common(parser, sub=False)
    _add_tui_flags(parser, sub=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="backend and HTTP API without a UI (logs to stderr)",
        description="Run the backend and the HTTP API until SIGINT or SIGTERM. Sessions keep "
        "running across restarts and are re-adopted at the next start.",
    )
    _add_common(serve, sub=True)
    serve.add_argument(
        "--stop-sessions-on-exit", action="store_true", help="stop every session when stopping"
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=os.environ.get("PODWARDEN_LOG_LEVEL", "info").lower(),
        help="debug also logs every reuse and workload log line",
    )

    health = commands.add_parser(
        "health",
        help="print the health JSON (exit 1 degraded, 3 unreachable)",
        description="Print GET /health. Exit code 0 healthy, 1 degraded, 3 unreachable.",
    )
    _add_common(health, sub=True)
    health.add_argument("--url", help="backend URL (default: the running server's address)")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")

    for name, text in (
        ("drain", "stop admitting new sessions (reuse still served); survives a restart"),
        ("undrain", "admit new sessions again"),
    ):
        command = commands.add_parser(name, help=text, description=text[0].upper() + text[1:])
        _add_common(command, sub=True)
        command.add_argument("--url", help="backend URL (default: the running server's address)")
        command.add_argument("--token-file", metavar="F", help="file holding the API token")
        command.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
        if name == "drain":
            command.add_argument(
                "--evict-idle", action="store_true", help="also stop sessions as they go idle"
            )

    tui = commands.add_parser("tui", help="the terminal UI, embedded or against a remote backend")
    _add_common(tui, sub=True)
    _add_tui_flags(tui, sub=True)
    tui.add_argument("--connect", metavar="URL", help="use the backend at URL instead of embedding")
    tui.add_argument("--token-file", metavar="F", help="file holding the remote API token")
    return parser


def _given(args: argparse.Namespace, environ: Mapping[str, str], dest: str) -> Any:
    """The flag's value if given, else its environment variable's, else None."""
    value = getattr(args, dest, None)
    if value is not None:
        return value
    env = environ.get(_COMMON[dest][0], "").strip()
    return env or None


def load_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults < TOML file < environment < flags. Raises ``ConfigError``."""
    environ = os.environ if environ is None else environ
    settings = load_settings(_given(args, environ, "config"))
    overrides = {
        key: _given(args, environ, dest) for dest, (_, key) in _COMMON.items() if key is not None
    }
    return apply_overrides(settings, overrides)


def main(argv: list[str] | None = None, run_tui: RunTui | None = None) -> int:
    """Parse, load settings and run the command; the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "health":
            return _health(args)
        if args.command in ("drain", "undrain"):
            return _drain(args)
        if args.command == "tui" and args.connect:
            settings = None
        else:
            settings = load_from_args(args)
        if args.command == "serve":
            assert settings is not None
            with hold_state_dir(settings.state_dir):
                return _serve(args, settings)
        if run_tui is None:
            print(
                "podwarden: the terminal UI is not available from here; "
                "use 'podwarden serve' for the backend and API alone",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if settings is None:
            return run_tui(args, settings)
        with hold_state_dir(settings.state_dir):
            return run_tui(args, settings)
    except ConfigError as e:
        print(f"podwarden: config error: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except StateDirInUse as e:
        print(f"podwarden: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def loop_factory() -> Callable[[], Any] | None:
    """uvloop's loop factory when uvloop is installed, else None (the stdlib loop)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import logging

    from backend.api.daemon import run_serve

    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(run_serve(settings, stop_sessions=args.stop_sessions_on_exit))


def _health_url(args: argparse.Namespace) -> str:
    """--url; else explicit --host/--port (or env); else the running server's recorded
    address; else the configured one."""
    if args.url:
        return str(args.url)
    from backend.api.listen import ADDRESS_FILE

    settings = load_from_args(args)
    explicit = _given(args, os.environ, "host") or _given(args, os.environ, "port")
    recorded = Path(settings.state_dir) / ADDRESS_FILE
    if not explicit and recorded.is_file():
        text = recorded.read_text(encoding="utf-8").strip()
        if text:
            return text
    host = settings.api.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api.port}"


def _health(args: argparse.Namespace) -> int:

    from backend.http_client import HttpClient

    url = _health_url(args)

    async def fetch() -> dict[str, Any]:
        async with HttpClient(url, timeout=args.timeout) as client:
            return await client.health()

    document = _ask_server(fetch, "health check")
    if isinstance(document, int):
        return document
    print(json.dumps(document, indent=2))
    if document.get("status") == "draining" and not document.get("degraded_reasons"):
        print("podwarden: draining: no new sessions are admitted", file=sys.stderr)
        return 0
    if document.get("status") != "healthy":
        reasons = "; ".join(document.get("degraded_reasons") or []) or "no reason given"
        print(f"podwarden: degraded: {reasons}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _drain(args: argparse.Namespace) -> int:
    """``podwarden drain`` / ``undrain`` against the running server."""

    from backend.api.token import TOKEN_ENV, read_token_file, token_path
    from backend.errors import PodwardenError
    from backend.http_client import HttpClient

    url = _health_url(args)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if args.token_file or not token:
        path = args.token_file or token_path(load_from_args(args).state_dir)
        try:
            token = read_token_file(path)
        except (OSError, PodwardenError) as e:
            print(f"podwarden: cannot read the API token from {path}: {e}", file=sys.stderr)
            return EXIT_USAGE

    async def call() -> dict[str, Any]:
        async with HttpClient(url, token, timeout=args.timeout) as client:
            if args.command == "drain":
                return await client.drain(evict_idle=args.evict_idle)
            return await client.undrain()

    document = _ask_server(call, args.command)
    if isinstance(document, int):
        return document
    print(json.dumps(document, indent=2))
    return 0


def _ask_server(
    request: Callable[[], Coroutine[Any, Any, dict[str, Any]]], what: str
) -> dict[str, Any] | int:
    """Run one request against the server: its answer, or the exit code after saying why."""
    import asyncio

    from backend.errors import BackendUnreachable, PodwardenError

    try:
        return asyncio.run(request())
    except BackendUnreachable as e:
        print(f"podwarden: unreachable: {e.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except PodwardenError as e:
        print(f"podwarden: {what} failed: {e.message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
