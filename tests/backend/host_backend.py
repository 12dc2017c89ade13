"""A process that hosts a backend, for crash tests: ``python host_backend.py STATE_DIR PORTS``.

It starts the embedded backend on the local runtime, acquires sessions for the users given
on stdin's first line (``ready`` users with a fast template, ``starting`` users with one
that never finishes logging in), prints one JSON line describing them, and then waits
forever, so the test can ``kill -9`` it at a known moment.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.config import Settings  # noqa: E402
from backend.service import Backend  # noqa: E402
from backend.templates import builtin_templates  # noqa: E402


def crash_settings(state_dir: Path, port_min: int, port_max: int) -> Settings:
    """Settings shared by the host and the test that restarts after the crash."""
    settings = Settings(state_dir=state_dir)
    settings.tunnels.port_min, settings.tunnels.port_max = port_min, port_max
    settings.pool.refresh_interval = 3600
    demo = builtin_templates()["demo"]
    demo.login_delay = 0.1
    slow = builtin_templates()["demo"]
    slow.name = "slow"
    slow.login_delay = 3.0
    settings.templates = {"demo": demo, "slow": slow}
    return settings


async def main() -> None:
    state_dir, port_min, port_max = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    plan = json.loads(sys.stdin.readline())
    backend = Backend(crash_settings(state_dir, port_min, port_max))
    await backend.start()
    ready = [await backend.pool.acquire(user) for user in plan["ready"]]
    starting = [await backend.pool.acquire(user, "slow", wait=False) for user in plan["starting"]]
    # wait until the slow workloads exist as processes, but not until they are ready
    for result in starting:
        while result.session.handle is None:
            await asyncio.sleep(0.01)
    assert backend.store is not None
    await backend.store.flush()
    print(
        json.dumps(
            {
                "ready": [r.to_dict() for r in ready],
                "starting": [r.session.to_dict() for r in starting],
            }
        ),
        flush=True,
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
