"""Readiness, liveness and keepalive checks: a TCP connect or a tiny HTTP GET.

Written on raw non-blocking sockets and ``loop.sock_*`` rather than an HTTP client: a
check runs every few tens of milliseconds while a workload starts, so it must cost
microseconds, not an import of httpx and a connection pool. Every socket is closed on
every path (the runtime's tests count file descriptors). The GET says HTTP/1.1 with
``Connection: close`` because some servers (Chromium's DevTools) refuse HTTP/1.0.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

__all__ = ["CheckResult", "check", "http_get_status"]

_MAX_RESPONSE = 256 * 1024


@dataclass(frozen=True)
class CheckResult:
    """What one check saw.

    ``ok``: the workload is ready (TCP accepted, or HTTP answered 2xx). ``listening``: the
    port accepted the connection (so a failed HTTP check means "up, but not ready yet").
    ``status``: the HTTP status, when one came back.
    """

    ok: bool
    listening: bool
    detail: str
    status: int | None = None


async def http_get_status(host: str, port: int, path: str, timeout: float) -> int:
    """GET ``path`` and return the status code.

    Raises ``OSError`` (refused, reset), ``TimeoutError`` or ``ValueError`` (not HTTP).
    The response is read to its end (``Content-Length``, the last chunk, or EOF) before
    the socket is closed, so the server never sees a reset.
    """
    result = await _run(host, port, path, timeout)
    assert result is not None
    return result


async def check(host: str, port: int, kind: str, path: str, timeout: float) -> CheckResult:
    """One readiness check of kind ``tcp`` or ``http``; never raises for a failed check."""
    try:
        status = await _run(host, port, path if kind == "http" else None, timeout)
    except ConnectionRefusedError:
        return CheckResult(False, False, f"port {port} refuses connections")
    except TimeoutError:
        return CheckResult(False, False, f"no answer on port {port} within {timeout:g}s")
    except _Connected as e:
        return CheckResult(False, True, f"port {port} is open but HTTP {path} failed: {e}")
    except OSError as e:
        return CheckResult(False, False, f"port {port}: {e.strerror or e}")
    if status is None:
        return CheckResult(True, True, f"port {port} accepts connections")
    if 200 <= status < 300:
        return CheckResult(True, True, f"{path} answered {status}", status)
    return CheckResult(False, True, f"{path} answered {status}", status)


class _Connected(Exception):
    """The connection was made but the HTTP exchange failed."""


async def _run(host: str, port: int, path: str | None, timeout: float) -> int | None:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            if path is None:
                return None
            try:
                return await _exchange(loop, sock, host, port, path)
            except (OSError, ValueError) as e:
                raise _Connected(str(e) or type(e).__name__) from e
    finally:
        sock.close()


async def _exchange(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, host: str, port: int, path: str
) -> int:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "User-Agent: podwarden\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    await loop.sock_sendall(sock, request)
    data = b""
    body_end: int | None = None
    chunked = False
    while True:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            break
        data += chunk
        if body_end is None and not chunked:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                body_end, chunked = _body_end(data[:head_end], head_end + 4)
        if (body_end is not None and len(data) >= body_end) or len(data) > _MAX_RESPONSE:
            break
        if chunked and data.endswith(b"0\r\n\r\n"):
            break
    line = data.split(b"\r\n", 1)[0].split()
    if len(line) < 2 or not line[0].startswith(b"HTTP/") or not line[1].isdigit():
        raise ValueError(f"not an HTTP response: {data[:40]!r}")
    return int(line[1])


def _body_end(head: bytes, body_start: int) -> tuple[int | None, bool]:
    """Where the body ends (from ``Content-Length``), and whether it is chunked."""
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                return body_start + int(value.strip()), False
            except ValueError:
                return None, False
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return None, True
    return None, False
