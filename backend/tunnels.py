"""Tunnels: a local port per session, relaying each connection to the session's workload.

``TcpRelay`` listens on ``host:port`` and relays every accepted connection to a target.
It is built on asyncio *protocols*, not streams: data moves from one transport straight
into the other in the loop's own read callback, with no task switch, no extra copy and
no small reads. Backpressure is the transports' own: when one side's write buffer is over
its high-water mark, its protocol gets ``pause_writing`` and stops reading on the other
side until ``resume_writing``. This is what lets it match ``socat -b65536`` on throughput
and added latency (see ``tests/bench/bench_tunnel.py``).

Which port a session gets is ``backend.ports``' business (``PortAllocator``,
``open_in_range``); they are re-exported here, where callers look for tunnels.

The upstream side of each connection is opened by a *connector*: by default a TCP
connection to the target; the Kubernetes runtime passes one that opens a port-forward
stream instead and reuses the listener, the accounting and the close semantics.

Close semantics: an EOF (half-close) on one side is passed on with ``write_eof`` and the
connection ends once both directions have ended; a reset or close on one side closes
the other (a reset aborts it, a clean close flushes what is buffered first); a target
that refuses the connection makes the relay drop the accepted client at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from backend.models import TunnelInfo
from backend.ports import PortAllocator, open_in_range, wait_port_free
from backend.security_metrics import REFUSALS

__all__ = [
    "Admission",
    "Connector",
    "PortAllocator",
    "RelayStats",
    "TcpRelay",
    "open_in_range",
    "tcp_connector",
    "wait_port_free",
]

log = logging.getLogger(__name__)

Admission = Callable[[asyncio.BaseTransport], bool]
"""Whether an accepted connection may pass (``PeerPolicy.admits``)."""

Connector = Callable[[asyncio.Protocol], Awaitable[asyncio.Transport]]
"""Opens the upstream side of one relayed connection.

It is given the protocol that must receive the upstream's data and events
(``connection_made``, ``data_received``, ``eof_received``, ``pause_writing``,
``resume_writing``, ``connection_lost``) and returns the upstream transport once it is
connected; the relay writes the client's data to that transport and pauses and resumes
its reading for backpressure. An exception (``OSError`` for a refused connection) makes
the relay drop the accepted client at once.
"""

_READ_SIZE = 256 * 1024
"""Bytes read at once (the stdlib loop's own read size)."""
_WRITE_COPIES = sys.version_info < (3, 12)
"""Whether a selector transport copies the part of a write it cannot send at once."""
_HIGH_WATER = 1024 * 1024
"""Bytes buffered for one side before reading from the other side pauses."""
_LOW_WATER = 256 * 1024


# --------------------------------------------------------------------------- relay


@dataclass(frozen=True)
class RelayStats:
    """Counters of one relay: for the TUI, and for idle culling, which samples
    ``active`` and ``bytes_total`` now and then (``backend.culling``). The counters are
    one integer addition per chunk relayed; nothing else runs per packet."""

    active: int
    """Connections relayed right now."""
    total: int
    """Connections accepted since the relay opened."""
    bytes_up: int
    """Bytes relayed from clients to the target."""
    bytes_down: int
    """Bytes relayed from the target to clients."""
    failed: int
    """Connections dropped because the target could not be reached."""

    @property
    def bytes_total(self) -> int:
        """Bytes relayed in both directions since the relay opened."""
        return self.bytes_up + self.bytes_down


def _tune(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a test double, a unix socket): nothing to tune
            pass
    set_limits = getattr(transport, "set_write_buffer_limits", None)
    if set_limits is not None:
        set_limits(high=_HIGH_WATER, low=_LOW_WATER)


def tcp_connector(host: str, port: int, timeout: float = 10.0) -> Connector:
    """The default connector: a TCP connection to ``host:port`` (``timeout`` seconds)."""

    async def connect(protocol: asyncio.Protocol) -> asyncio.Transport:
        loop = asyncio.get_running_loop()
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: protocol, host, port), timeout
        )
        return transport

    return connect


class _Link:
    """One relayed connection: the accepted client and its upstream."""

    __slots__ = (
        "relay",
        "client",
        "upstream",
        "client_eof",
        "upstream_eof",
        "client_lost",
        "upstream_lost",
        "task",
        "bytes_up",
        "bytes_down",
        "pending",
    )

    def __init__(self, relay: TcpRelay) -> None:
        self.relay = relay
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.client_eof = False
        self.upstream_eof = False
        self.client_lost = False
        self.upstream_lost = False
        self.task: asyncio.Task[None] | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.pending: list[bytes] | None = None
        """Client data that arrived before the upstream was connected (uvloop may start
        reading an accepted connection although ``connection_made`` paused it)."""

    async def connect(self, connector: Connector, protocol: _UpstreamSide) -> None:
        try:
            transport = await connector(protocol)
        except asyncio.CancelledError:
            self._drop_client()
            if self.upstream is not None and not self.upstream_lost:
                # Connected just before the cancel: uvloop then closes the transport
                # without calling connection_lost, so account for it here.
                self.upstream.abort()
                self.lost(from_client=False, exc=None)
            raise
        except Exception as e:  # refused, unreachable, timed out: drop the client now
            log.debug("relay %s: upstream connect failed: %r", self.relay.info.address, e)
            self.relay._failed += 1
            self._drop_client()
            return
        if self.upstream is None:  # a connector that did not call connection_made
            protocol.connection_made(transport)
        if self.client_lost:
            transport.abort()

    def upstream_made(self, upstream: asyncio.Transport) -> None:
        """The upstream is connected: send what the client sent meanwhile, then relay."""
        self.upstream = upstream
        _tune(upstream)
        client = self.client
        if client is None or self.client_lost:
            return
        if self.pending:
            for data in self.pending:
                upstream.write(data)
                self.bytes_up += len(data)
        self.pending = None
        if self.client_eof:
            if upstream.can_write_eof():
                upstream.write_eof()
            else:
                upstream.close()
        else:
            client.resume_reading()

    def early_data(self, data: bytes | memoryview) -> None:
        """Client data before the upstream exists: keep it and stop reading."""
        if self.pending is None:
            self.pending = []
        self.pending.append(bytes(data))
        if self.client is not None:
            self.client.pause_reading()

    def _drop_client(self) -> None:
        if self.client is not None and not self.client_lost:
            self.client.abort()

    def eof(self, from_client: bool) -> bool:
        """One side half-closed: pass it on; end the connection once both have."""
        if from_client:
            if self.client_eof:
                return True
            self.client_eof = True
            other = self.upstream
            if other is None:
                return True  # passed on once the upstream is connected
        else:
            if self.upstream_eof:
                return True
            self.upstream_eof = True
            other = self.client
        if other is None or other.is_closing():
            return False
        if self.client_eof and self.upstream_eof:
            self.close_both()
            return True
        if other.can_write_eof():
            other.write_eof()
            return True
        return False  # the other side cannot half-close: let both close

    def lost(self, from_client: bool, exc: Exception | None) -> None:
        if from_client:
            if self.client_lost:
                return
            self.client_lost = True
            other = self.upstream
            if self.task is not None and not self.task.done():
                self.task.cancel()
        else:
            if self.upstream_lost:
                return
            self.upstream_lost = True
            other = self.client
        if other is not None and not other.is_closing():
            if exc is None:
                other.close()  # flushes what is buffered, then FIN
            else:
                other.abort()
        elif other is not None and exc is not None:
            other.abort()  # closing but still flushing to a peer that is gone
        if self.client_lost and (self.upstream_lost or self.upstream is None):
            self.relay._link_done(self)

    def close_both(self) -> None:
        for transport in (self.client, self.upstream):
            if transport is not None and not transport.is_closing():
                transport.close()

    def abort_both(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.abort()


class _Side(asyncio.Protocol):
    """One end of a relayed connection; what it reads is written to the other end.

    ``get_buffer``/``buffer_updated`` serve the ``_Buffered*`` variants used on the
    stdlib selector loop: they read into one reused buffer instead of a new 256 KiB
    ``bytes`` per read. What the peer transport cannot send at once it copies (Python
    < 3.12) or keeps a view of (3.12+: the buffer is then handed over and a new one made).
    uvloop copies reads out of its own buffer anyway, so there the plain variants run.
    """

    __slots__ = ("link", "buf")

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.buf: memoryview | None = None

    def peer(self) -> asyncio.Transport | None:
        raise NotImplementedError

    def data_received(self, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def get_buffer(self, sizehint: int) -> memoryview:
        buf = self.buf
        if buf is None:
            buf = self.buf = memoryview(bytearray(_READ_SIZE))
        return buf

    def buffer_updated(self, nbytes: int) -> None:
        buf = self.buf
        assert buf is not None
        self.data_received(buf[:nbytes])
        if not _WRITE_COPIES:
            peer = self.peer()
            if peer is not None and peer.get_write_buffer_size():
                self.buf = None


class _ClientSide(_Side):
    """The accepted connection: its data goes upstream."""

    __slots__ = ()

    def peer(self) -> asyncio.Transport | None:
        return self.link.upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        link = self.link
        link.client = transport
        _tune(transport)
        transport.pause_reading()  # until the upstream side is connected
        link.relay._link_started(link)

    def data_received(self, data: bytes | memoryview) -> None:
        link = self.link
        upstream = link.upstream
        if upstream is not None:
            upstream.write(data)
            link.bytes_up += len(data)
        else:
            link.early_data(data)

    def eof_received(self) -> bool:
        return self.link.eof(from_client=True)

    def pause_writing(self) -> None:
        upstream = self.link.upstream
        if upstream is not None and not self.link.upstream_eof:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.link.upstream
        if upstream is not None and not self.link.upstream_eof and not upstream.is_closing():
            upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost(from_client=True, exc=exc)


class _UpstreamSide(_Side):
    """The connection to the target: its data goes back to the client."""

    __slots__ = ()

    def peer(self) -> asyncio.Transport | None:
        return self.link.client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.link.upstream_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes | memoryview) -> None:
        link = self.link
        client = link.client
        if client is not None:
            client.write(data)
            link.bytes_down += len(data)

    def eof_received(self) -> bool:
        return self.link.eof(from_client=False)

    def pause_writing(self) -> None:
        client = self.link.client
        if client is not None and not self.link.client_eof:
            client.pause_reading()

    def resume_writing(self) -> None:
        client = self.link.client
        if client is not None and not self.link.client_eof and not client.is_closing():
            client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost(from_client=False, exc=exc)


class _BufferedClientSide(_ClientSide, asyncio.BufferedProtocol):
    __slots__ = ()


class _BufferedUpstreamSide(_UpstreamSide, asyncio.BufferedProtocol):
    __slots__ = ()


class TcpRelay:
    """A listener on ``host:port`` relaying each connection to ``target``; a ``Tunnel``.

    Open with ``await TcpRelay.open(...)``; ``close()`` returns once the port can be
    bound again. ``connector`` replaces the default TCP connection to the target (the
    target is then only what ``info`` shows).
    """

    def __init__(
        self, info: TunnelInfo, connector: Connector, admit: Admission | None = None
    ) -> None:
        self._info = info
        self._connector = connector
        self._admit = admit
        self._server: asyncio.AbstractServer | None = None
        self._links: set[_Link] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._total = 0
        self._failed = 0
        self._refused = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._upstream_side: type[_UpstreamSide] = _UpstreamSide

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        target_host: str,
        target_port: int,
        *,
        connector: Connector | None = None,
        connect_timeout: float = 10.0,
        admit: Admission | None = None,
    ) -> TcpRelay:
        """Listen on ``host:port`` (``port`` 0: any free port) and start relaying.

        ``admit`` decides for each accepted connection whether it may pass (the peer's
        user, see ``backend.peers``); one it refuses is aborted before anything is
        relayed. Raises ``OSError`` (``EADDRINUSE``) when the port is taken.
        """
        loop = asyncio.get_running_loop()
        if connector is None:
            connector = tcp_connector(target_host, target_port, connect_timeout)
        relay = cls(TunnelInfo(host, port, target_host, target_port), connector, admit)
        client_side: type[_ClientSide] = _ClientSide
        if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
            client_side, relay._upstream_side = _BufferedClientSide, _BufferedUpstreamSide
        server = await loop.create_server(
            lambda: client_side(_Link(relay)), host, port, reuse_address=True, backlog=256
        )
        if port == 0:
            bound = server.sockets[0].getsockname()[1]
            relay._info = TunnelInfo(host, int(bound), target_host, target_port)
        relay._server = server
        return relay

    @property
    def info(self) -> TunnelInfo:
        return self._info

    def is_listening(self) -> bool:
        return self._server is not None and not self._closed and self._server.is_serving()

    @property
    def active_connections(self) -> int:
        return len(self._links)

    def stats(self) -> RelayStats:
        up = self._bytes_up + sum(link.bytes_up for link in self._links)
        down = self._bytes_down + sum(link.bytes_down for link in self._links)
        return RelayStats(len(self._links), self._total, up, down, self._failed)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop listening, abort every relayed connection, and return once the port is
        free (bindable again) or ``timeout`` passed (then a warning is logged)."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort_both()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("relay %s: connections did not close in time", self._info.address)
        if not await wait_port_free(self._info.host, self._info.port, timeout):
            log.warning("relay %s: port still not free after close", self._info.address)

    def __repr__(self) -> str:
        info = self._info
        state = "listening" if self.is_listening() else "closed"
        return (
            f"<TcpRelay {info.address} -> {info.target_host}:{info.target_port} {state} "
            f"active={len(self._links)}>"
        )

    # -- called by the links

    def _link_started(self, link: _Link) -> None:
        assert link.client is not None
        if self._closed:
            link.client.abort()
            return
        if self._admit is not None and not self._admit(link.client):
            REFUSALS.tunnel_refused += 1
            self._refused += 1
            log.warning(
                "tunnel %s: refused a connection from %s (not an allowed local user)",
                self._info.address,
                link.client.get_extra_info("peername"),
            )
            link.client.abort()
            return
        self._links.add(link)
        self._idle.clear()
        self._total += 1
        upstream = self._upstream_side(link)
        link.task = asyncio.get_running_loop().create_task(
            link.connect(self._connector, upstream), name=f"relay-connect-{self._info.port}"
        )

    def _link_done(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self._bytes_up += link.bytes_up
            self._bytes_down += link.bytes_down
            if not self._links:
                self._idle.set()
