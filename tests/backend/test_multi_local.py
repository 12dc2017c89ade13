"""Two local targets, real processes, through the pool: placement, tunnels, restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backend.config import Settings, TargetSettings
from backend.service import Backend
from tests.backend.test_local_pool import http_get, pid_alive


def two_local_targets(settings: Settings) -> Settings:
    settings.runtime.kind = "multi"
    settings.runtime.targets = {
        "east": TargetSettings(kind="local", max_sessions=2, labels={"zone": "east"}),
        "west": TargetSettings(kind="local", max_sessions=2, labels={"zone": "west"}),
    }
    settings.pool.max_sessions = 4
    settings.templates["demo"].login_delay = 0.0
    settings.validate()
    return settings


async def test_two_local_targets_end_to_end(settings: Settings) -> None:
    two_local_targets(settings)
    backend = Backend(settings)
    await backend.start()
    results = await asyncio.gather(*(backend.pool.acquire(f"user{i}") for i in range(3)))
    west = await backend.pool.acquire("zed", requires={"zone": "west"})
    where = {}
    for r in (*results, west):
        session = r.session
        assert session.handle is not None and session.tunnel is not None
        where[session.session_id] = session.handle.extra["target"]
        status, body = await http_get(session.tunnel.port, "/")
        assert status == 200, body
        workdir = Path(settings.state_dir) / "targets" / where[session.session_id] / "sessions"
        assert (workdir / session.session_id).is_dir(), "each target keeps its own directories"
    assert sorted(where.values()) == ["east", "east", "west", "west"]
    assert where[west.session.session_id] == "west"
    pids = {sid: int(backend.pool.get(sid).handle.ref) for sid in where}  # type: ignore[union-attr]
    health = backend.health()
    assert health.max_sessions == 4
    handles = {sid: backend.pool.get(sid).handle for sid in where}
    report = await backend.runtime.resources(handles)  # type: ignore[arg-type]
    assert report is not None and set(report.sessions) == set(where)  # both targets'
    assert all((u.memory_bytes or 0) > 0 for u in report.sessions.values())
    assert report.totals is not None and report.totals.scope == "host"  # the host once
    host = await backend.runtime.targets["east"].runtime.resources({})  # type: ignore[attr-defined]
    assert host is not None and host.totals is not None
    assert report.totals.cpu_cores == host.totals.cpu_cores
    await backend.stop()  # the workloads keep running

    assert all(pid_alive(pid) for pid in pids.values())
    backend = Backend(settings)
    await backend.start()
    try:
        assert backend.recovery is not None
        assert set(backend.recovery.adopted) == set(where)
        for sid, target in where.items():
            session = backend.pool.get(sid)
            assert session.handle is not None and session.handle.extra["target"] == target
            again = await backend.pool.acquire(session.user)
            assert again.session.session_id == sid and not again.is_new_session
            assert session.tunnel is not None
            status, _ = await http_get(session.tunnel.port, "/")
            assert status == 200
        logs = backend.runtime.logs(next(iter(where)))
        assert isinstance(logs, list)
    finally:
        await backend.stop(stop_sessions=True)
    assert not any(pid_alive(pid) for pid in pids.values())
