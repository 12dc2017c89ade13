"""Where the API listens: binding the socket, the loopback check, the recorded address.

Kept apart from ``server`` on purpose: this module imports only the standard library, so
the command line (``health``) and the TUI can bind the port or find the running server
before, or without, loading FastAPI and uvicorn (~0.4 s of imports).

Binding happens before anything else starts: a taken port fails at once with
``OSError``, before any session is touched or the terminal is taken over.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path

__all__ = ["ADDRESS_FILE", "address_file", "bind_socket", "is_loopback"]

ADDRESS_FILE = "api-url"
"""``<state-dir>/api-url`` holds the running server's URL while it serves (``health``
reads it, so a server started with ``--port 0`` can be found)."""


def address_file(state_dir: str | Path) -> Path:
    return Path(state_dir) / ADDRESS_FILE


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port); ``OSError`` if taken."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(errno.EADDRNOTAVAIL, f"no address for {host}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
