"""One port-forward stream to a pod, spoken on the event loop: WebSocket ``v4.channel.k8s.io``.

The official client's ``kubernetes.stream.portforward`` runs every stream through a thread
of its own: our socket -> a socket pair -> that thread's ``select`` loop -> a blocking TLS
socket, and back the same way. Each direction pays two thread wake-ups and the GIL
hand-over, and each chunk is copied into a growing ``bytes`` buffer. Here the TLS connection
to the API server is an asyncio transport of the loop the relay runs on, and this module's
``ForwardTransport`` is what the relay writes to and reads from: a client's bytes become
one masked frame and one TLS write in the relay's own read callback; a TLS read's frames
go to the client in one write. No thread, no socket pair.

The protocol (as the kubelet speaks it, through the API server's upgrade proxy): after the
HTTP 101, every WebSocket message starts with a channel byte; for one port, channel 0
carries data and channel 1 errors, and the first message on each is the port number
(2 bytes, little-endian). An error message ends the stream (the kubelet could not reach
the pod's port, or the pod went away). v4 has no half-close: ``can_write_eof`` is False,
so the relay ends the stream when the client half-closes, as the official client does.

``ForwardEndpoint`` holds what every stream of one ``Configuration`` shares (URL, TLS
context, whether the token needs a refresh hook); ``open_stream`` dials one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlsplit

__all__ = ["ForwardEndpoint", "ForwardRefused", "ForwardTransport", "open_stream"]

log = logging.getLogger(__name__)

PROTOCOL = "v4.channel.k8s.io"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HANDSHAKE_TIMEOUT = 10.0
"""Seconds for TCP, TLS and the upgrade answer together."""
_MAX_HEAD = 64 * 1024
"""Bytes of an answer's head (and of a refusal's body) read before giving up on it."""

_BINARY, _TEXT, _CLOSE, _PING, _PONG, _CONTINUATION = 0x2, 0x1, 0x8, 0x9, 0xA, 0x0
_DATA = b"\x00"


class ForwardRefused(ConnectionRefusedError):
    """The API server refused a port-forward handshake, with its HTTP ``status``."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


_XOR = [bytes(b ^ k for b in range(256)) for k in range(256)]
"""``_XOR[k]`` XORs every byte with ``k``, as a ``bytes.translate`` table."""


def client_frame(
    opcode: int, payload: bytes | bytearray | memoryview, prefix: bytes = b""
) -> bytearray:
    """One final client frame of ``prefix + payload``, masked (RFC 6455 5.3) with a random
    key: each of the key's four bytes XORs every fourth byte, by ``translate`` on strided
    slices, so the work is C loops (about 2x the speed of one big-integer XOR)."""
    n = len(prefix) + len(payload)
    if n < 126:
        frame = bytearray(struct.pack("!BB", 0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        frame = bytearray(struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n))
    else:
        frame = bytearray(struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n))
    key = os.urandom(4)
    frame += key
    start = len(frame)
    frame += prefix
    frame += payload
    for i in range(4):
        frame[start + i :: 4] = frame[start + i :: 4].translate(_XOR[key[i]])
    return frame


@dataclass(frozen=True)
class ForwardEndpoint:
    """How to reach the API server's port-forward, from a client ``Configuration``."""

    host: str
    port: int
    prefix: str
    """The server URL's path (a proxy in front of the API server may have one)."""
    ssl: ssl.SSLContext | None
    server_hostname: str | None
    headers: Callable[[], dict[str, str]]
    """The auth headers of a request (may run the token refresh hook)."""
    headers_block: bool
    """Whether ``headers`` may block (a refresh hook is set: run it in a thread)."""

    @classmethod
    def from_configuration(cls, configuration: Any) -> ForwardEndpoint:
        """Blocking (reads certificate files): the endpoint of ``configuration``."""
        url = urlsplit(str(configuration.host))
        secure = url.scheme == "https"
        context: ssl.SSLContext | None = None
        if secure:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if configuration.verify_ssl:
                # As the official client's websocket: the configured CA, else certifi's.
                import certifi

                context.load_verify_locations(cafile=configuration.ssl_ca_cert or certifi.where())
                if configuration.assert_hostname is False:
                    context.check_hostname = False
            else:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if configuration.cert_file:
                context.load_cert_chain(configuration.cert_file, configuration.key_file)
        host = url.hostname or "localhost"
        checked = configuration.tls_server_name or host
        if isinstance(configuration.assert_hostname, str) and configuration.assert_hostname:
            checked = configuration.assert_hostname  # the name the certificate must have

        def headers() -> dict[str, str]:
            found: dict[str, str] = {}
            for setting in configuration.auth_settings().values():
                if setting.get("in") == "header" and setting.get("value"):
                    found[str(setting["key"])] = str(setting["value"])
            return found

        return cls(
            host=host,
            port=url.port or (443 if secure else 80),
            prefix=url.path.rstrip("/"),
            ssl=context,
            server_hostname=checked if secure else None,
            headers=headers,
            headers_block=configuration.refresh_api_key_hook is not None,
        )

    def request(self, namespace: str, pod: str, port: int, auth: dict[str, str]) -> bytes:
        path = (
            f"{self.prefix}/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}"
            f"/portforward?ports={port}"
        )
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {f'[{self.host}]' if ':' in self.host else self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Protocol: {PROTOCOL}",
            "User-Agent: podwarden",
        ]
        lines += [f"{name}: {value}" for name, value in auth.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _accept_key(request: bytes) -> str:
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
            return base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
    raise ValueError("no Sec-WebSocket-Key")


def _refusal(status: int, reason: str, body: bytes) -> str:
    """What a refused handshake said: the Status ``message`` when the body is one."""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    text = message or body.decode("utf-8", errors="replace").strip()[:300]
    return f"{status} {reason}" + (f": {text}" if text else "")


class ForwardTransport(asyncio.Transport):
    """The relay's view of one stream: bytes in and out of the pod's port."""

    def __init__(self, stream: _StreamProtocol) -> None:
        super().__init__()
        self._stream = stream

    # -- writing
    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._stream.send(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("a v4 port-forward stream cannot half-close")

    def get_write_buffer_size(self) -> int:
        return self._stream.tls.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._stream.tls.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        limits: tuple[int, int] = self._stream.tls.get_write_buffer_limits()
        return limits

    # -- reading
    def pause_reading(self) -> None:
        self._stream.tls.pause_reading()

    def resume_reading(self) -> None:
        self._stream.tls.resume_reading()

    def is_reading(self) -> bool:
        return self._stream.tls.is_reading()

    # -- life
    def is_closing(self) -> bool:
        return self._stream.tls.is_closing()

    def close(self) -> None:
        """End the stream after what is buffered (a close frame, then the TLS close)."""
        self._stream.close(1000)

    def abort(self) -> None:
        self._stream.tls.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._stream.tls.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._stream.app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._stream.app


class _StreamProtocol(asyncio.Protocol):
    """The TLS connection's protocol: the upgrade, then frames to and from ``app``."""

    def __init__(self, app: asyncio.Protocol, request: bytes, what: str) -> None:
        self.app = app
        self.what = what
        self.tls: asyncio.Transport = None  # type: ignore[assignment]
        self.transport = ForwardTransport(self)
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._request = request
        self._head = b""
        self._pending = b""
        """The start of a frame whose rest has not arrived yet."""
        self._fragments: list[bytes] | None = None
        self._seen = [False, False]
        """Whether the port-number message of the data and error channel came."""
        self._error = ""
        self._refused: ForwardRefused | None = None
        """A refusal whose body is still coming."""
        self._ended = False
        """The server ended the stream (a close frame or an error message): what fails
        after that (our close frame to a socket already gone) is no reset of the stream."""
        self._closing = False
        self._live = False
        """Upgraded and handed to ``app``: its events are ``app``'s now."""

    # -- handshake
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tls = transport  # type: ignore[assignment]
        self.tls.write(self._request)

    def _answer(self, data: bytes) -> None:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HEAD:
                self._fail(OSError(f"{self.what}: no end to the answer's headers"))
            return
        head, rest = self._head[:end].decode("latin-1"), self._head[end + 4 :]
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self._fail(OSError(f"{self.what}: not an HTTP answer: {status_line[:100]!r}"))
            return
        fields = {}
        for line in lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if status != 101:
            reason = parts[2] if len(parts) > 2 else ""
            self._refused = ForwardRefused(f"{self.what}: {_refusal(status, reason, rest)}", status)
            length = fields.get("content-length", "")
            if length.isdigit() and len(rest) < min(int(length), _MAX_HEAD):
                return  # the body is still coming (or the connection closes: then as is)
            self._fail(self._refused)
            return
        if fields.get("sec-websocket-accept") != _accept_key(self._request):
            self._fail(OSError(f"{self.what}: the upgrade answer has a wrong accept key"))
            return
        self._head = b""
        self._live = True
        self.upgraded.set_result(None)
        self.app.connection_made(self.transport)
        if rest:
            self._frames(rest)

    def _fail(self, error: OSError) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(error)
        self.tls.abort()

    # -- frames
    def data_received(self, data: bytes) -> None:
        if not self._live:
            self._answer(data)
        else:
            self._frames(data)

    def _frames(self, data: bytes) -> None:
        """Hand the data messages of every complete frame to ``app``, in one call."""
        if self._pending:
            data = self._pending + data
        view = memoryview(data)
        size = len(data)
        at = 0
        out: list[memoryview] = []
        while size - at >= 2:
            b0, b1 = view[at], view[at + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - at < 4:
                    break
                n = (view[at + 2] << 8) | view[at + 3]
                head = 4
            elif n == 127:
                if size - at < 10:
                    break
                n = int.from_bytes(view[at + 2 : at + 10], "big")
                head = 10
            if b1 & 0x80:  # a masked server frame: not what a server sends
                self._protocol_error("a masked frame from the server")
                return
            end = at + head + n
            if end > size:
                break
            payload = view[at + head : end]
            at = end
            opcode = b0 & 0x0F
            if not b0 & 0x80 or opcode == _CONTINUATION:
                whole = self._fragment(opcode, bool(b0 & 0x80), payload)
                if whole is None:
                    continue
                payload, opcode = memoryview(whole), _BINARY
            if opcode == _BINARY:
                if not self._message(payload, out):
                    break
            elif opcode == _CLOSE:
                self._deliver(out)
                out = []
                self._ended = True
                self.close(1000)
                return
            elif opcode == _PING:
                if not self._closing:
                    self.tls.write(client_frame(_PONG, payload))
            elif opcode != _PONG:
                self._protocol_error(f"unexpected opcode {opcode}")
                return
        self._pending = bytes(view[at:]) if at < size else b""
        self._deliver(out)

    def _fragment(self, opcode: int, fin: bool, payload: memoryview) -> bytes | None:
        if opcode != _CONTINUATION:
            self._fragments = [bytes(payload)]
        elif self._fragments is not None:
            self._fragments.append(bytes(payload))
        if not fin or self._fragments is None:
            return None
        whole, self._fragments = b"".join(self._fragments), None
        return whole

    def _message(self, payload: memoryview, out: list[memoryview]) -> bool:
        """One binary message; False once the stream ends (an error message came)."""
        if not payload:
            return True
        channel = payload[0]
        if channel > 1:
            self._protocol_error(f"a message on channel {channel}")
            return False
        if not self._seen[channel]:
            self._seen[channel] = True  # the port number
            return True
        if channel == 0:
            if len(payload) > 1:
                out.append(payload[1:])
            return True
        self._error += bytes(payload[1:]).decode("utf-8", errors="replace")
        log.info("%s: %s", self.what, self._error)
        self._ended = True
        self._deliver(out)
        out.clear()
        self.close(1000)
        return False

    def _deliver(self, out: list[memoryview]) -> None:
        """One ``data_received`` for all of a read's data messages: a view of the read when
        there is one message (views of immutable ``bytes``, safe to keep), else joined."""
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        self.app.data_received(cast(bytes, data))

    def _protocol_error(self, what: str) -> None:
        log.warning("%s: %s; ending the stream", self.what, what)
        self.close(1002)

    # -- sending and ending
    def send(self, data: bytes | bytearray | memoryview) -> None:
        """``data`` to the pod, as one message on the data channel."""
        if not self._closing:
            self.tls.write(client_frame(_BINARY, data, _DATA))

    def close(self, code: int) -> None:
        if self._closing:
            return
        self._closing = True
        if not self.tls.is_closing():
            self.tls.write(client_frame(_CLOSE, struct.pack("!H", code)))
            self.tls.close()

    # -- the TLS connection's events, passed on once upgraded
    def eof_received(self) -> bool:
        if not self._live:
            closed = OSError(f"{self.what}: the API server closed during the handshake")
            self._fail(self._refused or closed)
        return False  # close our side too: v4 has no half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._live:
            if not self.upgraded.done():
                why = f"{self.what}: connection lost during the handshake"
                self.upgraded.set_exception(exc if isinstance(exc, OSError) else OSError(why))
            return
        # A clean end lets the relay flush to the client what it still buffers; a reset
        # would abort the client and drop it.
        self.app.connection_lost(None if self._ended else exc)

    def pause_writing(self) -> None:
        if self._live:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self._live:
            self.app.resume_writing()


async def open_stream(
    endpoint: ForwardEndpoint, namespace: str, pod: str, port: int, protocol: asyncio.Protocol
) -> ForwardTransport:
    """Open one port-forward stream to ``pod:port``; ``protocol`` gets its events (its
    ``connection_made`` comes once the API server has upgraded the connection, and its
    ``data_received`` may be given a ``memoryview``, as ``TcpRelay``'s protocols accept).

    Raises ``ForwardRefused`` (with the HTTP status) when the API server answers with
    anything but 101, ``OSError`` when it cannot be reached or the handshake times out.
    """
    loop = asyncio.get_running_loop()
    what = f"port-forward to pod {namespace}/{pod}:{port}"
    if endpoint.headers_block:
        auth = await loop.run_in_executor(None, endpoint.headers)
    else:
        auth = endpoint.headers()
    stream = _StreamProtocol(protocol, endpoint.request(namespace, pod, port, auth), what)

    async def dial() -> None:
        await loop.create_connection(
            lambda: stream,
            endpoint.host,
            endpoint.port,
            ssl=endpoint.ssl,
            server_hostname=endpoint.server_hostname,
        )
        await stream.upgraded

    try:
        await asyncio.wait_for(dial(), HANDSHAKE_TIMEOUT)
    except asyncio.TimeoutError:
        if stream.tls is not None:
            stream.tls.abort()
        raise OSError(f"{what}: no answer in {HANDSHAKE_TIMEOUT:.0f} s") from None
    except BaseException:
        if stream.tls is not None:
            stream.tls.abort()
        raise
    return stream.transport
