"""Tunnels: the port allocator's bookkeeping and the TCP relay on real loopback sockets."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from backend.errors import CapacityError
from backend.tunnels import PortAllocator, TcpRelay, open_in_range, tcp_connector

# --------------------------------------------------------------------------- allocator


def test_allocator_hands_out_each_port_once_then_refuses() -> None:
    ports = PortAllocator("127.0.0.1", 43000, 43002)
    got = [ports.allocate() for _ in range(3)]
    assert sorted(got) == [43000, 43001, 43002]
    with pytest.raises(CapacityError, match="no free tunnel port in 43000-43002"):
        ports.allocate()
    ports.release(43001)
    assert ports.allocate() == 43001


def test_allocator_honours_a_free_preferred_port_and_skips_a_taken_one() -> None:
    ports = PortAllocator("127.0.0.1", 43000, 43009)
    assert ports.allocate(preferred=43007) == 43007
    assert ports.allocate(preferred=43007) != 43007  # taken: another one, no error
    assert ports.allocate(preferred=50000) in range(43000, 43010)  # outside the range
    # The stale queue entry of 43007 is skipped, never handed out twice.
    rest = [ports.allocate() for _ in range(7)]
    assert 43007 not in rest
    assert len(set(rest)) == 7


def test_allocator_release_is_fifo_and_idempotent() -> None:
    ports = PortAllocator("127.0.0.1", 43000, 43003)
    a, b, c, d = (ports.allocate() for _ in range(4))
    ports.release(b)
    ports.release(b)  # twice: still one entry
    ports.release(a)
    assert ports.allocate() == b  # released longest ago first
    assert ports.allocate() == a
    with pytest.raises(CapacityError):
        ports.allocate()
    assert ports.in_use == 4 and ports.free == 0
    del c, d


def test_allocator_tries_bad_ports_only_as_a_last_resort() -> None:
    ports = PortAllocator("127.0.0.1", 43000, 43002)
    first = ports.allocate()
    ports.mark_bad(first)
    others = {ports.allocate(), ports.allocate()}
    assert first not in others
    assert ports.allocate() == first  # nothing else left: retried


def test_allocator_memory_stays_bounded_under_preferred_churn() -> None:
    ports = PortAllocator("127.0.0.1", 43000, 43099)
    for _ in range(10_000):
        port = ports.allocate(preferred=43050)
        ports.release(port)
    assert len(ports._queue) <= 2 * ports.size + 1
    assert ports.in_use == 0 and ports.free == 100


async def test_open_in_range_skips_a_port_held_by_another_process() -> None:
    squatter = socket.create_server(("127.0.0.1", 0))
    held = squatter.getsockname()[1]
    ports = PortAllocator("127.0.0.1", held, min(held + 5, 65535))
    try:
        port, relay = await open_in_range(
            ports, lambda p: TcpRelay.open("127.0.0.1", p, "127.0.0.1", 9), preferred=held
        )
        try:
            assert port != held and relay.info.port == port and relay.is_listening()
            assert ports.is_used(port) and not ports.is_used(held)
        finally:
            await relay.close()
    finally:
        squatter.close()


async def test_two_relays_never_share_a_port() -> None:
    first = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", 9)
    try:
        with pytest.raises(OSError) as info:
            await TcpRelay.open("127.0.0.1", first.info.port, "127.0.0.1", 9)
        assert info.value.errno == errno.EADDRINUSE
    finally:
        await first.close()


# --------------------------------------------------------------------------- relay


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _digest_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Hash everything until EOF, then answer with the digest (a half-close round trip)."""
    digest = hashlib.sha256()
    while data := await reader.read(1 << 20):
        digest.update(data)
    writer.write(digest.hexdigest().encode())
    await writer.drain()
    writer.close()


async def _serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def echo_relay() -> AsyncIterator[TcpRelay]:
    server, port = await _serve(_echo)
    relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", port)
    yield relay
    await relay.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 5)  # uvloop waits for its connections


async def test_relay_echoes_and_counts(echo_relay: TcpRelay) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_relay.info.port)
    writer.write(b"hello")
    assert await reader.readexactly(5) == b"hello"
    assert echo_relay.active_connections == 1
    live = echo_relay.stats()  # what idle culling samples: open links count as they go
    assert (live.active, live.bytes_total) == (1, 10)
    writer.write_eof()
    assert await reader.read() == b""  # the echo server's EOF came back through
    writer.close()
    await writer.wait_closed()
    await _until(lambda: echo_relay.active_connections == 0)
    stats = echo_relay.stats()
    assert (stats.total, stats.bytes_up, stats.bytes_down, stats.failed) == (1, 5, 5, 0)


async def test_relay_big_transfer_both_ways_intact(echo_relay: TcpRelay) -> None:
    payload = os.urandom(1 << 20) * 24  # 24 MiB, far beyond every buffer on the way
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_relay.info.port)

    async def send() -> None:
        view = memoryview(payload)
        for i in range(0, len(payload), 1 << 20):
            writer.write(view[i : i + (1 << 20)])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    received = hashlib.sha256()
    total = 0
    while data := await reader.read(1 << 20):
        received.update(data)
        total += len(data)
    await sender
    writer.close()
    assert total == len(payload)
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_relay_passes_half_close_and_the_answer_after_it() -> None:
    server, port = await _serve(_digest_sink)
    relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", port)
    try:
        payload = os.urandom(5 << 20)
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.info.port)
        writer.write(payload)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.decode() == hashlib.sha256(payload).hexdigest()
        writer.close()
    finally:
        await relay.close()
        server.close()


async def test_refused_target_closes_the_client_at_once() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", dead_port)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.info.port)
        try:
            data = await asyncio.wait_for(reader.read(), 2)
        except ConnectionResetError:
            data = b""
        assert data == b""
        writer.close()
        await _until(lambda: relay.active_connections == 0)
        assert relay.stats().failed == 1
        assert relay.is_listening()  # one bad connection does not end the tunnel
    finally:
        await relay.close()


async def test_target_closing_closes_the_client() -> None:
    async def greet_and_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()
        writer.close()

    server, port = await _serve(greet_and_hang_up)
    relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", port)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.info.port)
        assert await asyncio.wait_for(reader.read(), 2) == b"bye"
        writer.close()
        await _until(lambda: relay.active_connections == 0)
    finally:
        await relay.close()
        server.close()


async def test_client_reset_aborts_the_target_side() -> None:
    closed = asyncio.Event()

    async def wait_for_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        except ConnectionError:
            pass
        closed.set()
        writer.close()

    server, port = await _serve(wait_for_eof)
    relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", port)
    try:
        sock = socket.create_connection(("127.0.0.1", relay.info.port))
        sock.sendall(b"x")
        await _until(lambda: relay.stats().bytes_up == 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # linger 0: RST
        await asyncio.wait_for(closed.wait(), 2)
        await _until(lambda: relay.active_connections == 0)
    finally:
        await relay.close()
        server.close()


async def test_close_drops_connections_and_frees_the_port(echo_relay: TcpRelay) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_relay.info.port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    port = echo_relay.info.port
    await echo_relay.close()
    assert not echo_relay.is_listening()
    assert echo_relay.active_connections == 0
    try:
        assert await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        pass
    writer.close()
    # The port is free at once: a new listener binds it (as the next session would).
    again = await TcpRelay.open("127.0.0.1", port, "127.0.0.1", 9)
    await again.close()


async def test_early_data_and_eof_wait_for_a_slow_connector() -> None:
    server, port = await _serve(_digest_sink)
    plain = tcp_connector("127.0.0.1", port)

    async def slow(protocol: asyncio.Protocol) -> asyncio.Transport:
        await asyncio.sleep(0.05)
        return await plain(protocol)

    relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", port, connector=slow)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.info.port)
        writer.write(b"early bytes")
        writer.write_eof()  # before the upstream even exists
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.decode() == hashlib.sha256(b"early bytes").hexdigest()
        writer.close()
    finally:
        await relay.close()
        server.close()


async def test_a_failing_connector_drops_the_client() -> None:
    async def broken(protocol: asyncio.Protocol) -> asyncio.Transport:
        raise OSError("no port-forward today")

    relay = await TcpRelay.open("127.0.0.1", 0, "10.0.0.1", 3000, connector=broken)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.info.port)
        try:
            assert await asyncio.wait_for(reader.read(), 2) == b""
        except ConnectionResetError:
            pass
        writer.close()
        assert relay.info.target_port == 3000
    finally:
        await relay.close()


async def test_relay_leaks_no_file_descriptors() -> None:
    server, port = await _serve(_echo)

    async def one_round() -> None:
        relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", port)
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.info.port)
            writer.write(b"x")
            await reader.readexactly(1)
            writer.close()
            await writer.wait_closed()
        # Leave two connections open: close() must drop them.
        extra = [await asyncio.open_connection("127.0.0.1", relay.info.port) for _ in range(2)]
        await _until(lambda: relay.active_connections == 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await relay.close()
        assert loop.time() - started < 1, "close waited for connections that were gone"
        for _, writer in extra:
            writer.close()
        await asyncio.sleep(0)  # let the closes run their connection_lost callbacks

    await one_round()  # warm-up: the loop creates what it keeps for later
    before = _fd_count()
    await one_round()
    await _until(lambda: _fd_count() == before)
    server.close()
    await asyncio.wait_for(server.wait_closed(), 5)  # uvloop waits for its connections


async def _close_while_connecting() -> None:
    """Clients whose upstream is still being connected when the relay closes."""
    server, port = await _serve(_echo)
    plain = tcp_connector("127.0.0.1", port)
    gate = asyncio.Event()

    async def gated(protocol: asyncio.Protocol) -> asyncio.Transport:
        transport = await plain(protocol)  # connected, but the relay has not heard yet
        await gate.wait()
        return transport

    relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", port, connector=gated)
    clients = [await asyncio.open_connection("127.0.0.1", relay.info.port) for _ in range(3)]
    await _until(lambda: relay.active_connections == 3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await relay.close()
    assert loop.time() - started < 1
    assert relay.active_connections == 0
    for reader, writer in clients:
        try:
            assert await asyncio.wait_for(reader.read(), 2) == b""
        except ConnectionResetError:
            pass
        writer.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 5)  # uvloop waits for its connections


async def test_close_while_upstreams_are_connecting() -> None:
    await _close_while_connecting()


def test_relay_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        server, port = await _serve(_digest_sink)
        relay = await TcpRelay.open("127.0.0.1", 0, "127.0.0.1", port)
        try:
            for size in (0, 1, 3 << 20):
                payload = os.urandom(size)
                reader, writer = await asyncio.open_connection("127.0.0.1", relay.info.port)
                writer.write(payload)
                writer.write_eof()
                answer = await asyncio.wait_for(reader.read(), 10)
                assert answer.decode() == hashlib.sha256(payload).hexdigest()
                writer.close()
        finally:
            await relay.close()
            server.close()
        again = await TcpRelay.open("127.0.0.1", relay.info.port, "127.0.0.1", port)
        await again.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
        runner.run(_close_while_connecting())


# --------------------------------------------------------------------------- helpers


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition that an event loop callback makes true (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.001)
