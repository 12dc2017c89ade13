"""The chromium template on the local runtime: a real headless browser per session.

A cookie set through the session's tunnel on a page this test serves is still there when
a client connects again, also after the backend restarted and re-adopted the browser:
reusing a session keeps its login. Skipped only when no Chromium binary is on PATH.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from backend.events import EventBus
from backend.logs import SessionLogs
from backend.runtime.base import WorkloadSpec
from backend.runtime.local import MARKER, LocalRuntime
from backend.runtime.procs import find_marked, group_running
from backend.templates import builtin_templates, find_chromium
from tests.backend import cdp

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(find_chromium() is None, reason="no Chromium binary on PATH"),
]


async def test_cookie_set_through_the_tunnel_survives_reconnect_and_restart(
    tmp_path: Path, page_url: str
) -> None:
    state_dir = tmp_path / "state"
    logs = SessionLogs(EventBus())
    template = builtin_templates()["chromium"]
    spec = WorkloadSpec(
        "alice-chromium-1a2b3c4d",
        "alice",
        template,
        state_dir / "sessions" / "alice-chromium-1a2b3c4d",
    )
    runtime = LocalRuntime(state_dir, logs)
    handle = await runtime.start(spec, lambda _: None)
    pgid = int(handle.ref)
    try:
        handle = await runtime.wait_ready(handle, spec, 60, lambda _: None)
        tunnel = await runtime.open_tunnel(handle, "127.0.0.1", 0)
        try:
            assert tunnel.info.port != handle.port
            browser = await cdp.version(tunnel.info.port)
            assert "Chrome" in browser["Browser"]
            await cdp.set_cookie(tunnel.info.port, page_url, "podwarden_login", "alice-42")
            # A new connection and a new tab: the same browser, the same cookie jar.
            cookies = await cdp.get_cookies(tunnel.info.port, page_url)
            assert cookies.get("podwarden_login") == "alice-42"
        finally:
            await tunnel.close()
        assert (spec.workdir / "profile").is_dir()  # the profile lives in the session dir

        # The backend restarts: a fresh runtime adopts the browser, a new tunnel reaches it.
        await runtime.close()
        runtime = LocalRuntime(state_dir, logs)
        (owned,) = await runtime.list_owned()
        assert owned.alive and owned.ready and owned.handle.ref == handle.ref
        tunnel = await runtime.open_tunnel(owned.handle, "127.0.0.1", 0)
        try:
            cookies = await cdp.get_cookies(tunnel.info.port, page_url)
            assert cookies.get("podwarden_login") == "alice-42"
        finally:
            await tunnel.close()

        report = await runtime.stop(owned.handle, 5)
        assert report.verified, report.leftovers
        assert group_running(pgid) == []  # renderers, zygotes, GPU process: all gone
        assert find_marked(MARKER, str(state_dir)) == {}  # nor anything that left the group
        assert not spec.workdir.exists()
    finally:
        for pid in find_marked(MARKER, str(state_dir)):
            os.kill(pid, signal.SIGKILL)
        await runtime.close()
