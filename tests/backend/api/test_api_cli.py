"""The command line: parsing, settings precedence, dispatch, ``health``, import weight."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.cli import EXIT_UNREACHABLE, build_parser, load_from_args, main
from backend.config import Settings
from tests.backend.api.conftest import ThreadedServer

ROOT = Path(__file__).resolve().parents[3]


def test_common_flags_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--state-dir", "/s", "--max-sessions", "4", "serve"])
    after = parser.parse_args(["serve", "--state-dir", "/s", "--max-sessions", "4"])
    for args in (before, after):
        assert args.command == "serve" and args.state_dir == "/s" and args.max_sessions == 4
        assert args.stop_sessions_on_exit is False
    both = parser.parse_args(["--port", "1", "serve", "--port", "2"])
    assert both.port == 2
    plain = parser.parse_args([])
    assert plain.command is None and plain.read_only is False and plain.no_mouse is False
    tui = parser.parse_args(["tui", "--connect", "http://h:1", "--token-file", "f", "--read-only"])
    assert (tui.connect, tui.token_file, tui.read_only, tui.no_mouse) == (
        "http://h:1",
        "f",
        True,
        False,
    )
    health = parser.parse_args(["health", "--url", "http://x"])
    assert health.url == "http://x" and health.timeout == 5.0
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--runtime", "docker"])


def test_flags_beat_env_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[pool]\nmax_sessions = 7\n[api]\nport = 7000\nhost = "127.0.0.2"\n')
    parser = build_parser()
    env = {"PODWARDEN_CONFIG": str(config), "PODWARDEN_PORT": "8000"}
    settings = load_from_args(parser.parse_args([]), env)
    assert settings.pool.max_sessions == 7  # file
    assert settings.api.port == 8000  # env over file
    assert settings.api.host == "127.0.0.2"  # file
    settings = load_from_args(parser.parse_args(["--port", "9000", "--max-sessions", "3"]), env)
    assert settings.api.port == 9000 and settings.pool.max_sessions == 3  # flags over both
    defaults = load_from_args(parser.parse_args(["--state-dir", str(tmp_path)]), {})
    assert defaults.pool.max_sessions == 10 and defaults.api.port == 5010
    assert defaults.state_dir == tmp_path
    env_dir = load_from_args(parser.parse_args([]), {"PODWARDEN_STATE_DIR": str(tmp_path / "e")})
    assert env_dir.state_dir == tmp_path / "e"


def test_tui_forms_go_to_run_tui(tmp_path: Path) -> None:
    calls: list[tuple[argparse.Namespace, Settings | None]] = []

    def run_tui(args: argparse.Namespace, settings: Settings | None) -> int:
        calls.append((args, settings))
        return 7

    assert main(["--state-dir", str(tmp_path), "--read-only"], run_tui=run_tui) == 7
    assert calls[-1][0].command is None and calls[-1][0].read_only is True
    assert calls[-1][1] is not None and calls[-1][1].state_dir == tmp_path
    assert main(["tui", "--connect", "http://h:1"], run_tui=run_tui) == 7
    assert calls[-1][1] is None  # remote: no local settings
    assert main(["tui", "--state-dir", str(tmp_path)], run_tui=run_tui) == 7
    assert calls[-1][1] is not None
    assert main(["--state-dir", str(tmp_path)]) == 2  # no TUI given: a clear refusal


def test_config_error_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--state-dir", str(tmp_path), "--max-sessions", "0"]) == 2
    assert capsys.readouterr().err == (
        "podwarden: config error: pool.max_sessions: must be >= 1, got 0\n"
    )


def test_health_exit_codes(threaded: ThreadedServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--url", threaded.url]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "healthy"
    threaded.backend.runtime.unhealthy = True  # type: ignore[attr-defined]
    assert main(["health", "--url", threaded.url]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "degraded"
    assert "degraded: runtime: simulated outage" in captured.err


def test_health_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        assert main(["health", "--url", url, "--timeout", "2"]) == EXIT_UNREACHABLE
    assert capsys.readouterr().err.startswith("podwarden: unreachable:")


def test_help_is_fast_and_loads_nothing_heavy() -> None:
    best = min(_timed([sys.executable, "-m", "backend.cli", "--help"]) for _ in range(3))
    assert best < 0.3, f"podwarden --help took {best:.3f}s"
    probe = (
        "import sys; from backend import cli; cli.build_parser().format_help(); "
        "print([m for m in ('fastapi', 'uvicorn', 'httpx', 'pydantic', 'starlette', "
        "'kubernetes', 'textual', 'tui') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_api_modules_never_import_the_tui() -> None:
    probe = (
        "import sys, backend.api.app, backend.api.daemon, backend.http_client, backend.cli; "
        "print([m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'tui'))])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - started
