"""Security hardening, each defect attacked on a real ``podwarden serve``.

The API token lets a caller start the templates an operator configured, nothing more:
credentials are limited to the names a template declares (and never the loader's,
interpreters' or shells'), user names cannot read as options or disguise themselves, and
a config with numbers podwarden cannot use stops start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import resource
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.events import EventBus
from backend.logs import SessionLogs
from backend.runtime.base import WorkloadSpec
from backend.runtime.local import LocalRuntime
from backend.templates import builtin_templates
from tests.e2e.conftest import ROOT, Events, Serve, sweep, write_config
from tests.e2e.test_serve_cli import cli

Start = Callable[..., Any]


def _auth(server: Serve) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


async def _acquire(server: Serve, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/sessions", json=body, headers=_auth(server))


async def _end(server: Serve, session_id: str) -> None:
    """Delete a session and wait until its cleanup is verified."""
    events = await Events(server).open()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            response = await http.delete(f"/sessions/{session_id}", headers=_auth(server))
            assert response.status_code == 202
        await events.wait_for("cleanup_verified", session_id)
    finally:
        await events.close()


async def test_credentials_that_run_code_are_refused_and_nothing_starts(
    serve: Start, tmp_path: Path
) -> None:
    server: Serve = await serve()
    proof = tmp_path / "ran"
    attack = {
        "PYTHONWARNINGS": "all:0:antigravity.x:0:0",
        "BROWSER": f"/bin/sh -c 'id > {proof}' #%s",
    }
    response = await _acquire(server, {"user": "mallory", "credentials": attack})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] in ("credentials.PYTHONWARNINGS", "credentials.BROWSER")
    for name in ("PATH", "LD_PRELOAD", "PYTHONPATH", "NODE_OPTIONS", "BASH_ENV", "HOME"):
        response = await _acquire(server, {"user": "mallory", "credentials": {name: "/x"}})
        assert response.status_code == 422, name
        assert response.json()["error"]["field"] == f"credentials.{name}"
        assert "never accepted" in response.json()["error"]["message"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        sessions = (await http.get("/sessions", headers=_auth(server))).json()
    assert sessions == [] or sessions.get("sessions") == []
    assert not proof.exists()


async def test_only_the_templates_declared_credentials_are_accepted(serve: Start) -> None:
    server: Serve = await serve()
    response = await _acquire(server, {"user": "ana", "credentials": {"GREETING": "hi"}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "credentials.GREETING"
    assert "PASSWORD" in error["message"]  # says which names the template does accept
    response = await _acquire(server, {"user": "ana", "credentials": {"PASSWORD": "s3cret"}})
    assert response.status_code == 200, response.text
    await _end(server, response.json()["session_id"])


async def test_a_denied_name_in_a_template_stops_start_up(tmp_path: Path) -> None:
    config = write_config(tmp_path / "podwarden.toml")
    with config.open("a") as f:
        f.write('credentials = ["API_KEY", "LD_PRELOAD"]\n')
    code, _, err = await cli("serve", "--state-dir", str(tmp_path / "s"), "--config", str(config))
    assert code == 2
    assert err.startswith("podwarden: config error: templates.demo.credentials[1]:")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "user",
    ["--remote-debugging-address=0.0.0.0", "-", "bob\u202egnp.exe", "a\u2066b", "x\x85y"],
)
async def test_users_that_read_as_options_or_disguise_themselves_get_422(
    serve: Start, user: str
) -> None:
    server: Serve = await serve()
    response = await _acquire(server, {"user": user})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "user"


async def test_user_slug_and_session_id_placeholders_reach_argv(
    tmp_path: Path, state_dir: Path
) -> None:
    config = write_config(tmp_path / "slug.toml")
    with config.open("a") as f:
        f.write(
            (
                'command = ["sh", "-c", "echo argv: $0 $1; exec python3 -m backend.workloads.demo'
                ' --port $2 --login-delay 0", "{user_slug}", "{session_id}", "{port}"]\n'
            ).replace("python3", sys.executable)  # the interpreter podwarden is installed in
        )
    server = await Serve(state_dir, config, []).start()
    try:
        response = await _acquire(server, {"user": "/"})
        assert response.status_code == 200, response.text
        sid = response.json()["session_id"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            logs = await http.get(f"/sessions/{sid}/logs", headers=_auth(server))
        lines = [line for line in logs.json()["lines"] if "argv:" in str(line)]
        assert lines, logs.text
        slug = sid.rsplit("-", 2)[0]
        assert f"argv: {slug} {sid}" in str(lines[0])
        assert "/" not in slug
        await _end(server, sid)
    finally:
        await server.stop()
        assert not await sweep(state_dir)


async def test_raw_user_placeholder_in_a_command_stops_start_up(tmp_path: Path) -> None:
    config = write_config(tmp_path / "podwarden.toml")
    with config.open("a") as f:
        f.write('command = ["python3", "-m", "http.server", "--directory", "/srv/{user}"]\n')
    code, _, err = await cli("serve", "--state-dir", str(tmp_path / "s"), "--config", str(config))
    assert code == 2
    assert err.startswith("podwarden: config error: templates.demo.command[4]:")
    assert "{user_slug}" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("pool", "queue_timeout", "nan"),
        ("pool", "refresh_interval", "inf"),
        ("pool", "stop_grace", "-1"),
        ("pool", "start_backoff", "-inf"),
        ("templates.demo", "login_delay", "-1"),
        ("templates.demo", "ready_timeout", "0"),
        ("runtime.kubernetes", "delete_timeout", "nan"),
    ],
)
async def test_numbers_podwarden_cannot_use_stop_start_up(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    config = tmp_path / "podwarden.toml"
    config.write_text(f"[{section}]\n{key} = {value}\n")
    code, _, err = await cli("serve", "--state-dir", str(tmp_path / "s"), "--config", str(config))
    assert code == 2
    assert err.startswith(f"podwarden: config error: {section}.{key}: must be")
    assert err.count("\n") == 1 and "Traceback" not in err


async def _podwarden(*args: str) -> tuple[int, str]:
    """Run the ``podwarden`` console script (the embedded console without a command)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODWARDEN_")}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("podwarden")),
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_a_second_daemon_on_the_state_directory_exits_2_naming_the_first(
    serve: Start, state_dir: Path, config_file: Path
) -> None:
    server: Serve = await serve()
    assert server.proc is not None
    url_before = (state_dir / "api-url").read_text()
    code, _, err = await cli("serve", "--state-dir", str(state_dir), "--config", str(config_file))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"pid {server.proc.pid}" in err and server.url in err
    code, err = await _podwarden("--state-dir", str(state_dir), "--config", str(config_file))
    assert code == 2 and err.count("\n") == 1
    assert f"pid {server.proc.pid}" in err and server.url in err
    # the first one is untouched: its address file is still there and it still answers
    assert (state_dir / "api-url").read_text() == url_before
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/health")).status_code == 200


async def test_a_killed_daemons_lock_never_blocks_a_restart(serve: Start, state_dir: Path) -> None:
    first: Serve = await serve()
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert (state_dir / "daemon.lock").exists()
    second: Serve = await serve()
    async with httpx.AsyncClient(base_url=second.url) as http:
        assert (await http.get("/health")).status_code == 200
    assert (state_dir / "daemon.lock").read_text().strip() == str(second.proc and second.proc.pid)


async def _health(server: Serve, *, token: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/health", headers=_auth(server) if token else {})
        assert response.status_code == 200
        return dict(response.json())


async def _poll_health(
    server: Serve, done: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """The token-holder's health once ``done`` says so (for states no event announces)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        health = await _health(server, token=True)
        if done(health):
            return health
        assert asyncio.get_running_loop().time() < deadline, health
        await asyncio.sleep(0.05)


async def test_store_health_recovers_once_writes_succeed_again(serve: Start) -> None:
    server: Serve = await serve()
    assert server.proc is not None
    pid = server.proc.pid
    first = await _acquire(server, {"user": "disk"})
    assert first.status_code == 200
    events = await Events(server).open()
    limit = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    try:
        # "the disk is full": every write of the daemon to a regular file fails (EFBIG;
        # Python ignores SIGXFSZ), while the workload already running is untouched
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, limit[1]))
        sid = first.json()["session_id"]
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await http.delete(f"/sessions/{sid}", headers=_auth(server))).status_code == 202
        await events.wait_for("cleanup_verified", sid)
        # the writer thread commits (and fails) after the event is out
        health = await _poll_health(server, lambda h: not h["store_ok"])
        assert health["status"] == "degraded" and health["degraded_reasons"], health
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, limit)
        await events.close()
    again = await _acquire(server, {"user": "disk"})
    assert again.status_code == 200
    await _end(server, again.json()["session_id"])
    health = await _health(server)
    assert health["store_ok"] and health["status"] == "healthy", health


async def test_health_names_sessions_only_to_token_holders_and_files_are_private(
    tmp_path: Path, state_dir: Path
) -> None:
    state_dir.mkdir(mode=0o755)
    config = write_config(tmp_path / "drift.toml")
    with config.open("a") as f:
        f.write("[runtime.kubernetes]\nreconcile_interval = 0.1\n")
    server = await Serve(state_dir, config, []).start()
    # a workload of this state directory the daemon does not know: an orphan with a name
    runtime = LocalRuntime(state_dir, SessionLogs(EventBus()))
    sid = "orphan-owner-demo-0badc0de"
    spec = WorkloadSpec(sid, "Orphan.Owner", builtin_templates()["demo"], state_dir / "w")
    handle = await runtime.start(spec, lambda phase: None)
    try:
        # the drift check runs every 0.1 s and publishes no event for an orphan: poll
        full = await _poll_health(server, lambda h: sid in h["orphans"])
        public = await _health(server)
        assert "orphans" not in public and "ghosts" not in public
        assert public["orphan_count"] == full["orphan_count"] == 1
        assert "Orphan" not in json.dumps(public) and sid not in json.dumps(public)
    finally:
        await runtime.stop(handle, 2.0)
        await runtime.close()
        await server.stop()
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "podwarden.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / "sessions").stat().st_mode) == 0o700


async def _sessions(server: Serve) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return list((await http.get("/sessions", headers=_auth(server))).json())


def _limit_files(count: int) -> Callable[[], None]:
    def limit() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))

    return limit


def _idle_connections(url: str, count: int) -> list[socket.socket]:
    """``count`` TCP connections to ``url`` that never send a byte."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]


async def test_idle_connections_do_not_starve_the_api(tmp_path: Path, state_dir: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2400:
        pytest.skip("this test needs 2,400 open files of its own")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2400), hard))
    config = write_config(tmp_path / "podwarden.toml")
    server = await Serve(state_dir, config, [], preexec=_limit_files(1024)).start()
    idle: list[socket.socket] = []
    try:
        idle = await asyncio.to_thread(_idle_connections, server.url, 1100)
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            for path, headers in (("/health", {}), ("/sessions", _auth(server))):
                started = time.perf_counter()
                response = await http.get(path, headers=headers)
                took = time.perf_counter() - started
                assert response.status_code == 200 and took < 1.0, (path, took)
    finally:
        for conn in idle:
            conn.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        await server.stop()
    assert "Traceback" not in server.log


async def test_a_connection_that_sends_no_headers_is_closed_after_the_header_timeout(
    tmp_path: Path, state_dir: Path
) -> None:
    config = write_config(tmp_path / "podwarden.toml")
    with config.open("a") as f:
        f.write("[api]\nheader_timeout = 0.5\n")
    server = await Serve(state_dir, config, []).start()
    try:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        started = time.perf_counter()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
        assert time.perf_counter() - started >= 0.4
        writer.close()
        async with httpx.AsyncClient(base_url=server.url) as http:
            metrics = (await http.get("/metrics", headers=_auth(server))).text
        assert 'podwarden_refused_connections_total{reason="api_header_timeouts"} 1.0' in metrics
    finally:
        await server.stop()


async def test_the_open_file_limit_is_raised_to_the_hard_limit(
    tmp_path: Path, state_dir: Path
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("needs a hard open-file limit of 2,048 or more")
    target = 2048 if hard == resource.RLIM_INFINITY else hard

    def low_soft_limit() -> None:  # in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, target))

    config = write_config(tmp_path / "podwarden.toml")
    server = await Serve(state_dir, config, [], preexec=low_soft_limit).start()
    try:
        assert server.proc is not None
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert line.split()[3:5] == [str(target), str(target)], line
    finally:
        await server.stop()


async def test_at_the_cap_with_every_connection_busy_new_ones_are_refused_at_once(
    tmp_path: Path, state_dir: Path
) -> None:
    config = write_config(tmp_path / "podwarden.toml")
    with config.open("a") as f:
        f.write("[api]\nmax_connections = 3\n")
    server = await Serve(state_dir, config, []).start()
    streams = [await Events(server).open() for _ in range(3)]  # busy: responses never end
    try:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:  # refused by an abort: a reset, or end of stream if it came first
            answer = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            answer = b""
        assert answer == b"", "refused without parsing or answering"
        writer.close()
    finally:
        for stream in streams:
            await stream.close()
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        assert (await http.get("/health")).status_code == 200  # room again once they close
    await server.stop()


_SYSTEM_PYTHON = "/usr/bin/python3"
_PROBE = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
try:
    s.sendall(b"GET /whoami HTTP/1.0\\r\\n\\r\\n")
    print("answered" if s.recv(64).startswith(b"HTTP/") else "closed")
except ConnectionResetError:
    print("closed")
"""


async def _probe_tunnel_as(uid: int, port: int) -> str:
    def become() -> None:  # in the child between fork and exec
        os.setgid(uid)
        os.setuid(uid)

    proc = await asyncio.create_subprocess_exec(
        _SYSTEM_PYTHON,  # another user cannot run the virtualenv's, under a private home
        "-c",
        _PROBE,
        str(port),
        cwd="/",
        stdout=asyncio.subprocess.PIPE,
        preexec_fn=become if uid != os.geteuid() else None,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    return out.decode().strip()


@pytest.mark.parametrize("allowed", [False, True], ids=["default", "allow_users"])
async def test_a_tunnel_admits_only_allowed_local_users(
    tmp_path: Path, state_dir: Path, allowed: bool
) -> None:
    if os.geteuid() != 0 or not os.access(_SYSTEM_PYTHON, os.X_OK):
        pytest.skip("connecting as another local user needs root and /usr/bin/python3")
    nobody = pwd.getpwnam("nobody").pw_uid
    config = write_config(tmp_path / "podwarden.toml", login_delay=0)
    if allowed:
        text = config.read_text().replace("[tunnels]\n", '[tunnels]\nallow_users = ["nobody"]\n')
        config.write_text(text)
    server = await Serve(state_dir, config, ["--stop-sessions-on-exit"]).start()
    try:
        async with server.client() as client:
            port = (await client.acquire("alice"))["tunnel"]["port"]
        assert await _probe_tunnel_as(os.geteuid(), port) == "answered"
        assert await _probe_tunnel_as(nobody, port) == ("answered" if allowed else "closed")
        async with httpx.AsyncClient(base_url=server.url) as http:
            metrics = (await http.get("/metrics", headers=_auth(server))).text
        refused = 0 if allowed else 1
        line = f'podwarden_refused_connections_total{{reason="tunnel_refused"}} {refused}.0'
        assert line in metrics
    finally:
        await server.stop()
    if not allowed:
        assert "refused a connection" in server.log


async def test_an_unknown_user_in_allow_users_stops_start_up(tmp_path: Path) -> None:
    config = write_config(tmp_path / "podwarden.toml")
    text = config.read_text().replace(
        "[tunnels]\n", '[tunnels]\nallow_users = ["no-such-user-x"]\n'
    )
    config.write_text(text)
    code, _, err = await cli("serve", "--config", str(config), "--state-dir", str(tmp_path / "s"))
    assert code == 2
    assert "tunnels.allow_users[0]" in err and "no-such-user-x" in err
    assert "Traceback" not in err
