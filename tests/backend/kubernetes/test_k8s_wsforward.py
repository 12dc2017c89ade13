"""The event-loop port-forward stream against a stand-in API server on 127.0.0.1.

The stand-in speaks the kubelet's side of ``v4.channel.k8s.io`` over plain HTTP: it checks
the upgrade request, answers 101 (or a refusal), sends the two port-number messages, and
then whatever each test scripts, reading the client's masked frames as a server must.
Through a real API server and kubelet the same stream is tested in
``test_kubernetes_tunnel.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from backend.runtime.kubernetes.wsforward import (
    ForwardEndpoint,
    ForwardRefused,
    open_stream,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN = "s3cret"


def server_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def data(payload: bytes) -> bytes:
    return server_frame(0x2, b"\x00" + payload)


PORT_FRAMES = server_frame(0x2, b"\x00" + struct.pack("<H", 3000)) + server_frame(
    0x2, b"\x01" + struct.pack("<H", 3000)
)


class Peer:
    """The stand-in's side of one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.request: list[str] = []

    async def frame(self) -> tuple[int, bytes]:
        """One client frame, unmasked (a client frame must be masked)."""
        b0, b1 = await self.reader.readexactly(2)
        assert b1 & 0x80, "client frames are masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        key = await self.reader.readexactly(4)
        masked = await self.reader.readexactly(n)
        return b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(masked))

    async def data(self) -> bytes:
        opcode, payload = await self.frame()
        assert opcode == 0x2 and payload[:1] == b"\x00"
        return payload[1:]


Script = Callable[[Peer], Awaitable[None]]


class StandIn:
    def __init__(self) -> None:
        self.script: Script | None = None
        self.refuse: tuple[int, bytes] | None = None
        self.short_body = 0
        """Bytes of the refusal's body announced but never sent (the server hangs up)."""
        self.peers: list[Peer] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        self.peers.append(peer)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        peer.request = head.split("\r\n")
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in peer.request[1:])
        }
        if self.refuse is not None:
            status, body = self.refuse
            writer.write(
                f"HTTP/1.1 {status} Forbidden\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body) + self.short_body}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            writer.close()
            return
        assert fields["upgrade"] == "websocket"
        assert fields["sec-websocket-protocol"] == "v4.channel.k8s.io"
        assert fields["authorization"] == f"Bearer {TOKEN}"
        accept = base64.b64encode(
            hashlib.sha1(fields["sec-websocket-key"].encode() + GUID).digest()
        ).decode()
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n".encode()
            + b"Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
            + PORT_FRAMES
        )
        try:
            if self.script is not None:
                await self.script(peer)
        finally:
            writer.close()


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    stand = StandIn()
    server = await asyncio.start_server(stand.handle, "127.0.0.1", 0)
    stand.port = server.sockets[0].getsockname()[1]
    yield stand
    server.close()
    await server.wait_closed()


def endpoint(port: int) -> ForwardEndpoint:
    from kubernetes import client as k8s_client

    configuration = k8s_client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.api_key = {"BearerToken": TOKEN}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return ForwardEndpoint.from_configuration(configuration)


class App(asyncio.Protocol):
    """What the relay would be: collects data and the end."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.made = 0
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.made += 1

    def data_received(self, data: Any) -> None:
        self.chunks.append(bytes(data))
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)

    async def until(self, size: int) -> bytes:
        while len(self.received) < size:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)
        return self.received


async def test_bytes_go_both_ways_in_masked_client_frames(standin: StandIn) -> None:
    async def echo(peer: Peer) -> None:
        for _ in range(3):
            peer.writer.write(data(await peer.data()))
        big = await peer.data()
        peer.writer.write(data(hashlib.sha256(big).digest()))
        await peer.reader.read()  # until the client closes

    standin.script = echo
    app = App()
    transport = await open_stream(endpoint(standin.port), "ns", "pod-a", 3000, app)
    assert app.made == 1
    assert "/api/v1/namespaces/ns/pods/pod-a/portforward?ports=3000 " in standin.peers[0].request[0]
    transport.write(b"one")
    transport.write(memoryview(b"two"))
    transport.write(bytearray(b"x" * 300))  # a 2-byte length
    assert await app.until(306) == b"onetwo" + b"x" * 300
    big = bytes(range(256)) * 1024  # an 8-byte length, masked as a whole
    transport.write(big)
    assert (await app.until(306 + 32))[306:] == hashlib.sha256(big).digest()
    transport.close()
    assert await asyncio.wait_for(app.lost, 5) is None


async def test_frames_split_anywhere_or_packed_together_arrive_whole(standin: StandIn) -> None:
    payloads = [bytes([i]) * n for i, n in enumerate((1, 125, 126, 127, 65535, 65536, 70000))]
    stream = b"".join(data(p) for p in payloads)

    async def dribble(peer: Peer) -> None:
        # Byte by byte at first (every header split), then in odd-sized pieces.
        for i in range(300):
            peer.writer.write(stream[i : i + 1])
            await peer.writer.drain()
        for at in range(300, len(stream), 7777):
            peer.writer.write(stream[at : at + 7777])
            await peer.writer.drain()
        await peer.reader.read()

    standin.script = dribble
    app = App()
    transport = await open_stream(endpoint(standin.port), "ns", "pod-a", 3000, app)
    assert await app.until(sum(map(len, payloads))) == b"".join(payloads)
    transport.close()
    await asyncio.wait_for(app.lost, 5)


async def test_a_refused_handshake_says_why_with_its_status(standin: StandIn) -> None:
    body = json.dumps({"kind": "Status", "message": 'pods "pod-a" is forbidden: no'}).encode()
    standin.refuse = (403, body)
    app = App()
    with pytest.raises(ForwardRefused) as info:
        await open_stream(endpoint(standin.port), "ns", "pod-a", 3000, app)
    assert info.value.status == 403
    assert 'pods "pod-a" is forbidden: no' in str(info.value)
    assert app.made == 0


async def test_a_refusal_cut_short_still_gives_its_status(standin: StandIn) -> None:
    standin.refuse, standin.short_body = (401, b'{"message": "Unauthorized"}'), 100
    with pytest.raises(ForwardRefused) as info:
        await open_stream(endpoint(standin.port), "ns", "pod-a", 3000, App())
    assert info.value.status == 401


async def test_an_error_message_ends_the_stream_after_the_data_before_it(
    standin: StandIn,
) -> None:
    async def fail(peer: Peer) -> None:
        peer.writer.write(
            data(b"last words")
            + server_frame(0x2, b"\x01error forwarding port 3000: connection refused")
        )
        opcode, payload = await peer.frame()
        assert opcode == 0x8 and payload == struct.pack("!H", 1000)

    standin.script = fail
    app = App()
    await open_stream(endpoint(standin.port), "ns", "pod-a", 3000, app)
    assert await asyncio.wait_for(app.lost, 5) is None  # a clean end, not a reset
    assert app.received == b"last words"


async def test_a_ping_is_answered_and_a_close_ends_the_stream(standin: StandIn) -> None:
    pong: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

    async def ping_then_close(peer: Peer) -> None:
        peer.writer.write(server_frame(0x9, b"hi"))
        pong.set_result(await peer.frame())
        peer.writer.write(data(b"bye") + server_frame(0x8, struct.pack("!H", 1000)))
        opcode, _ = await peer.frame()
        assert opcode == 0x8

    standin.script = ping_then_close
    app = App()
    await open_stream(endpoint(standin.port), "ns", "pod-a", 3000, app)
    assert await asyncio.wait_for(pong, 5) == (0xA, b"hi")
    assert await asyncio.wait_for(app.lost, 5) is None
    assert app.received == b"bye"


async def test_a_server_that_never_answers_times_out(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.runtime.kubernetes import wsforward

    monkeypatch.setattr(wsforward, "HANDSHAKE_TIMEOUT", 0.2)
    silent = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await silent.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="no answer"):
            await open_stream(endpoint(server.sockets[0].getsockname()[1]), "ns", "p", 1, App())
    finally:
        silent.set()
        server.close()
        await server.wait_closed()


class GoneSocket(asyncio.Transport):
    """A TLS transport whose peer is gone: writes are kept, closing just marks it."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


async def test_a_failed_close_reply_after_the_servers_close_is_a_clean_end() -> None:
    """The kubelet sends its close frame and hangs up; our close frame back then fails
    (EPIPE). That must reach the relay as a clean end, or it aborts the client and drops
    what it still buffers for it (seen as a short 100 MB download)."""
    from backend.runtime.kubernetes import wsforward

    app = App()
    request = endpoint(1).request("ns", "pod-a", 3000, {})
    stream = wsforward._StreamProtocol(app, request, "test")
    socket_ = GoneSocket()
    stream.connection_made(socket_)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    stream.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    stream.data_received(PORT_FRAMES + data(b"tail") + server_frame(0x8, struct.pack("!H", 1000)))
    assert socket_.closing and app.received == b"tail"
    stream.connection_lost(BrokenPipeError(32, "Broken pipe"))
    assert app.lost.result() is None
