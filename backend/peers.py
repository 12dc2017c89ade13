"""Who is on the other end of a loopback connection: the peer's user, for the tunnels.

A tunnel listens on 127.0.0.1, where every local user can connect; for a logged-in
browser that is full control of someone's session. So a tunnel admits a connection only
when the process that opened it runs as an allowed user (by default the daemon's own
user, and root).

The kernel knows each socket's owner. For a connection from 127.0.0.1:5555 to our port,
the peer's socket is the one whose local end is 127.0.0.1:5555 and remote end is our
port; one ``sock_diag`` netlink request (``SOCK_DIAG_BY_FAMILY`` with the exact 4-tuple,
not a dump) returns it with its uid in tens of microseconds. Where netlink is not
available, ``/proc/net/tcp`` and ``tcp6`` are read instead (slower: every socket of the
host). A peer that cannot be found (another network namespace, a socket already gone)
is not admitted.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import pwd
import socket
import struct
from collections.abc import Iterable

__all__ = ["PeerPolicy", "peer_uid", "resolve_users"]

log = logging.getLogger(__name__)

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF
_TCP_STATES_ALL = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")
_REQUEST = struct.Struct("=BBBxI")
_SOCKID = struct.Struct(">HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
_MESSAGE = struct.Struct("=BBBB48sIIIII")

Address = tuple[str, int]


def peer_uid(peer: Address, local: Address) -> int | None:
    """The uid owning the socket connected from ``peer`` to our ``local`` end, or None."""
    try:
        return _uid_by_netlink(peer, local)
    except OSError:
        return _uid_by_proc(peer, local)


def _packed(host: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(host)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return family, ip.packed.ljust(16, b"\0")


def _uid_by_netlink(peer: Address, local: Address) -> int | None:
    family, src = _packed(peer[0])
    _, dst = _packed(local[0])
    body = (
        _REQUEST.pack(family, socket.IPPROTO_TCP, 0, _TCP_STATES_ALL)
        + _SOCKID.pack(peer[1], local[1], src, dst)
        + _SOCKID_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE)
    )
    request = _HEADER.pack(_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.sendto(request + body, (0, 0))
        answer = nl.recv(8192)
    if len(answer) < _HEADER.size:
        raise OSError("short sock_diag answer")
    _, kind, _, _, _ = _HEADER.unpack_from(answer)
    if kind == _NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", answer, _HEADER.size)
        if code == -2:  # ENOENT: no such socket in this network namespace
            return None
        raise OSError(-code, os.strerror(-code))
    if kind != _SOCK_DIAG_BY_FAMILY or len(answer) < _HEADER.size + _MESSAGE.size:
        raise OSError(f"unexpected sock_diag answer type {kind}")
    fields = _MESSAGE.unpack_from(answer, _HEADER.size)
    return int(fields[8])


def _uid_by_proc(peer: Address, local: Address) -> int | None:
    family, _ = _packed(peer[0])
    want_local = _proc_address(peer, family)
    want_remote = _proc_address(local, family)
    files = ("/proc/net/tcp",) if family == socket.AF_INET else ("/proc/net/tcp6",)
    for path in files:
        try:
            with open(path, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 7 and parts[1] == want_local and parts[2] == want_remote:
                        return int(parts[7])
        except OSError:
            continue
    return None


def _proc_address(address: Address, family: int) -> str:
    """``host:port`` as ``/proc/net/tcp*`` prints it (each 32-bit word in host order)."""
    _, packed = _packed(address[0])
    raw = packed[:4] if family == socket.AF_INET else packed
    words = "".join(f"{struct.unpack('=I', raw[i : i + 4])[0]:08X}" for i in range(0, len(raw), 4))
    return f"{words}:{address[1]:04X}"


def resolve_users(names: Iterable[str]) -> frozenset[int] | None:
    """The uids for ``[tunnels] allow_users`` entries (names or numbers); None for ``*``.

    Raises ``KeyError`` naming an entry that is no user of this host.
    """
    uids: set[int] = set()
    for name in names:
        if name == "*":
            return None
        if name.isdigit():
            uids.add(int(name))
            continue
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            raise KeyError(name) from None
    return frozenset(uids)


class PeerPolicy:
    """Which local users a tunnel admits: the daemon's own, root, and the allowed."""

    def __init__(self, allowed: frozenset[int] | None) -> None:
        self.anyone = allowed is None
        self.uids = frozenset({os.geteuid(), 0} | set(allowed or ()))

    def admits(self, transport: object) -> bool:
        """Whether the connection on ``transport`` (an accepted TCP transport) may pass."""
        if self.anyone:
            return True
        get = getattr(transport, "get_extra_info", None)
        peer = get("peername") if get else None
        local = get("sockname") if get else None
        if not peer or not local:
            return False
        uid = peer_uid((peer[0], peer[1]), (local[0], local[1]))
        return uid is not None and uid in self.uids
