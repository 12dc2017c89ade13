"""Following a session pod's log into the session's bounded log buffer.

Best effort by design: the log is a convenience for people, never a reason for a session
to fail. Many clusters (and the loopback test harness, which has no kubelet API) refuse
logs; then the session gets exactly one line saying so, and nothing is retried or logged
over and over. A follow is a stream that may stay quiet for hours, so it runs in a daemon
thread of its own instead of holding one of the bounded API workers.
"""

from __future__ import annotations

import asyncio
import logging

from backend.errors import KubernetesError
from backend.logs import SessionLogs
from backend.runtime.kubernetes.apierrors import truncate
from backend.runtime.kubernetes.client import KubeClient, StreamThread, close_stream, iter_lines
from backend.runtime.kubernetes.kinds import PODS
from backend.runtime.kubernetes.manifests import CONTAINER_NAME

__all__ = ["LogFollower", "unavailable_line"]

log = logging.getLogger(__name__)

TAIL_LINES = 200
"""Lines of history fetched when a follow starts."""


def unavailable_line(pod: str, error: BaseException, verb: str = "followed") -> str:
    """The one line a session gets when its pod's log cannot be read."""
    detail = error.message if isinstance(error, KubernetesError) else repr(error)
    return f"[podwarden] the log of pod {pod} cannot be {verb}: {truncate(detail, 240)}"


class LogFollower(StreamThread):
    """Streams one pod's log lines into ``SessionLogs`` until stopped or the pod ends."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        session_id: str,
        pod: str,
        logs: SessionLogs,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__()
        self.client = client
        self.namespace = namespace
        self.session_id = session_id
        self.pod = pod
        self._logs = logs
        self._loop = loop
        self.thread_name = f"podwarden-log-{session_id}"

    def _emit(self, line: str) -> None:
        if self._stop.is_set():
            return
        try:
            self._loop.call_soon_threadsafe(self._logs.append, self.session_id, line)
        except RuntimeError:  # the loop is closed
            self._stop.set()

    def _run(self) -> None:
        query = [
            ("container", CONTAINER_NAME),
            ("follow", "true"),
            ("tailLines", str(TAIL_LINES)),
        ]
        try:
            response = self.client.open_stream(
                PODS.path(self.namespace, self.pod, "log"),
                query,
                "stream log",
                read_timeout=None,  # a quiet workload is fine
            )
        except Exception as e:  # refused, forbidden, no kubelet API: say so once
            if not self._stop.is_set():
                log.info("%s: pod log unavailable: %s", self.session_id, e)
                self._emit(unavailable_line(self.pod, e))
            return
        self._response = response
        try:
            for line in iter_lines(response):
                if self._stop.is_set():
                    break
                self._emit(line)
        except Exception as e:  # the stream broke: the pod went away or the API did
            if not self._stop.is_set():
                log.debug("%s: log stream ended: %s", self.session_id, e)
        finally:
            self._response = None
            close_stream(response)
