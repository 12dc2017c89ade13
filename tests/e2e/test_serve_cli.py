"""``podwarden serve`` and ``podwarden health`` as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import ROOT, Serve

Start = Callable[..., Any]


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m backend.cli ARGS``; (exit code, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PODWARDEN_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.cli",
        *args,
        cwd=ROOT,
        env={**base, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_config_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    code, _, err = await cli("serve", "--state-dir", state, "--max-sessions", "0")
    assert code == 2
    assert err == "podwarden: config error: pool.max_sessions: must be >= 1, got 0\n"
    bad = tmp_path / "bad.toml"
    bad.write_text('[pool]\nmax_sessions = "ten"\n')
    code, _, err = await cli("serve", "--state-dir", state, "--config", str(bad))
    assert code == 2 and err.startswith("podwarden: config error: pool.max_sessions: must be")
    assert err.count("\n") == 1 and "Traceback" not in err
    code, _, err = await cli("serve", "--state-dir", state, env={"PODWARDEN_MAX_SESSIONS": "many"})
    assert code == 2 and "pool.max_sessions" in err and "Traceback" not in err
    code, _, err = await cli("serve", "--state-dir", state, "--config", str(tmp_path / "no"))
    assert code == 2 and "does not exist" in err


async def test_a_taken_port_fails_cleanly(tmp_path: Path, config_file: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await cli(
            "serve",
            "--state-dir",
            str(tmp_path / "state"),
            "--config",
            str(config_file),
            "--port",
            str(port),
        )
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


async def test_health_command_and_public_bind_warning(serve: Start, state_dir: Path) -> None:
    server: Serve = await serve("--host", "0.0.0.0")
    assert "warning: listening on 0.0.0.0" in server.log
    assert (state_dir / "api-url").read_text().startswith("http://127.0.0.1:")
    # no --url: the running server's recorded address
    code, out, _ = await cli("health", "--state-dir", str(state_dir))
    assert code == 0
    health = json.loads(out)
    assert health["status"] == "healthy" and health["session_capacity"] == "0/10"
    code, out, _ = await cli("health", "--url", server.url)
    assert code == 0 and json.loads(out)["max_sessions"] == 10
    assert await server.stop(signal.SIGINT) == 0
    assert not (state_dir / "api-url").exists()
    code, out, err = await cli("health", "--url", server.url, "--timeout", "2")
    assert code == 3 and out == "" and err.startswith("podwarden: unreachable:")


async def test_token_from_the_environment(tmp_path: Path, config_file: Path) -> None:
    state = tmp_path / "state"
    token = "an-operator-chosen-token-0123"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODWARDEN_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.cli",
        "serve",
        "--port",
        "0",
        "--state-dir",
        str(state),
        "--config",
        str(config_file),
        cwd=ROOT,
        env={**env, "PODWARDEN_TOKEN": token},
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    url = ""
    try:
        while not url:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "serve exited early"
            if "serving http://" in line:
                url = line.split("serving ", 1)[1].split()[0]
        assert "token: from PODWARDEN_TOKEN" in (await proc.stderr.readline()).decode()
        async with httpx.AsyncClient(base_url=url) as http:
            ok = await http.get("/sessions", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200
            assert (await http.get("/sessions")).status_code == 401
        assert not (state / "token").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
