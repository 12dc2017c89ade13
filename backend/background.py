"""One named background task of the daemon: started once, stopped by cancelling it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["BackgroundTask"]


class BackgroundTask:
    """Owns at most one running asyncio task (the refresher's loop, the culler's, ...)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``run()`` in the background unless it already runs."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(run(), name=self.name)

    @property
    def running(self) -> bool:
        """False before the start and once the task has ended (stopped, or a bug)."""
        return self._task is not None and not self._task.done()

    async def wait_stopped(self) -> None:
        """Wait until the task has ended."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the task and wait for it; it can be started again afterwards."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
