"""``podwarden serve`` on the in-memory runtime, for benchmarks and tests.

The real command line has no way to pick the memory runtime (it runs nothing, so it
must never be chosen by accident); this runner parses the same flags, then calls the
same ``run_serve`` with a ``MemoryRuntime``. Usage::

    python tests/bench/memory_server.py serve --port 0 --state-dir DIR --max-sessions 1000
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.api.daemon import run_serve  # noqa: E402
from backend.cli import build_parser, load_from_args, loop_factory  # noqa: E402
from backend.runtime.memory import MemoryRuntime  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        print("usage: memory_server.py serve [options]", file=sys.stderr)
        return 2
    settings = load_from_args(args)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

    async def run() -> int:
        return await run_serve(
            settings, stop_sessions=args.stop_sessions_on_exit, runtime=MemoryRuntime()
        )

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(run())


if __name__ == "__main__":
    sys.exit(main())
