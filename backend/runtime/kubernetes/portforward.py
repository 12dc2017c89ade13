"""Tunnels to a session's pod through the API server's port-forward.

The local listener is ``backend.tunnels.TcpRelay``, the same one the local runtime uses;
this module only supplies its *connector*: for each accepted local connection, one new
port-forward stream to the pod that serves the session *now*. The pod is looked up by
label at connect time, so when the ReplicaSet has replaced it, the next connection reaches
the new one. One stream per connection keeps connections independent: a reset on one
never takes the others down.

A stream is spoken on the event loop by ``wsforward`` (no thread, no socket pair: see
there why). Only a configuration with an HTTP proxy still goes through the official
client's ``kubernetes.stream.portforward`` (``open_forward_socket``), whose websocket
library speaks to proxies. That one swaps ``call_api`` on the ``ApiClient`` it is given,
so every such stream gets a short-lived ``ApiClient`` of its own; its blocking handshake
runs in the bounded API pool, and its pump is the library's own thread, which ends when
our side of its socket pair closes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from backend.runtime.kubernetes.client import KubeClient
from backend.runtime.kubernetes.wsforward import ForwardEndpoint, ForwardRefused, open_stream
from backend.tunnels import Admission, Connector, TcpRelay

__all__ = [
    "ConnectionTracker",
    "ForwardRefused",
    "adopt_socket",
    "open_forward",
    "open_forward_socket",
    "open_portforward_tunnel",
    "portforward_connector",
]

log = logging.getLogger(__name__)

PodResolver = Callable[[], Awaitable[str]]
"""Returns the name of the pod that serves the session now; raises ``OSError`` if none."""

ConnectionTracker = Callable[[str, asyncio.Transport], None]
"""Told (pod name, upstream transport) of every forwarded connection, so that the
connections to a pod that went away can be ended (``podmoves``)."""


DIAL_WINDOW = 3.0
"""Seconds a connection keeps retrying its port-forward handshake. Right after a pod is
replaced, the kubelet may not yet see the pod the API server already reports Ready and
answers 400 "not running"; a moment later the same dial succeeds."""

NOT_RETRIED = frozenset({401, 403})
"""Answers that another try cannot change: the credentials or the RBAC grant are wrong."""


_ENDPOINTS: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], ForwardEndpoint]] = (
    weakref.WeakKeyDictionary()
)
"""Per client ``Configuration``: its endpoint (TLS context loaded once), and the
modification times of the files it was loaded from, so that rotated certificates are
loaded again."""


def _file_times(configuration: Any) -> tuple[int, ...]:
    times = []
    for path in (configuration.ssl_ca_cert, configuration.cert_file, configuration.key_file):
        try:
            times.append(os.stat(path).st_mtime_ns if path else 0)
        except OSError:
            times.append(-1)
    return tuple(times)


async def _endpoint(client: KubeClient) -> ForwardEndpoint:
    configuration = client.connection.configuration
    times = _file_times(configuration)
    cached = _ENDPOINTS.get(configuration)
    if cached is not None and cached[0] == times:
        return cached[1]
    endpoint: ForwardEndpoint = await client.run_blocking(
        functools.partial(ForwardEndpoint.from_configuration, configuration)
    )
    _ENDPOINTS[configuration] = (times, endpoint)
    return endpoint


async def adopt_socket(sock: socket.socket, protocol: asyncio.Protocol) -> asyncio.Transport:
    """A connected socket as a transport of the running loop, events to ``protocol``."""
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport


async def open_forward(
    client: KubeClient, namespace: str, pod: str, port: int, protocol: asyncio.Protocol
) -> asyncio.Transport:
    """One port-forward stream to ``pod:port`` whose events go to ``protocol``."""
    configuration = client.connection.configuration
    if configuration.proxy:
        sock = await client.run_blocking(
            functools.partial(open_forward_socket, configuration, namespace, pod, port)
        )
        return await adopt_socket(sock, protocol)
    return await open_stream(await _endpoint(client), namespace, pod, port, protocol)


def open_forward_socket(configuration: Any, namespace: str, pod: str, port: int) -> socket.socket:
    """Blocking, through the official client (used with an HTTP proxy): open one
    port-forward stream and return our end of it as a socket."""
    from kubernetes import client as k8s_client
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream import portforward

    api = k8s_client.ApiClient(configuration)
    try:
        core = k8s_client.CoreV1Api(api)
        forward = portforward(
            core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
        )
    except ApiException as e:
        raise ForwardRefused(f"port-forward to pod {pod}:{port}: {e.reason}", e.status) from e
    finally:
        api.close()
    remote = forward.socket(port)
    # A duplicate of the library's socket-pair end, as a plain socket asyncio accepts; the
    # original is closed so the stream ends when the relay closes this one.
    ours = socket.fromfd(remote.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
    remote.close()
    ours.setblocking(False)
    return ours


def portforward_connector(
    client: KubeClient,
    namespace: str,
    resolve_pod: PodResolver,
    port: int,
    track: ConnectionTracker | None = None,
) -> Connector:
    """A ``TcpRelay`` connector opening one port-forward stream per connection."""

    async def connect(protocol: asyncio.Protocol) -> asyncio.Transport:
        """One stream to the serving pod, retried (pod looked up again) for a short while."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DIAL_WINDOW
        pause = 0.05
        while True:
            pod = await resolve_pod()
            try:
                transport = await open_forward(client, namespace, pod, port, protocol)
            except OSError as e:
                final = isinstance(e, ForwardRefused) and e.status in NOT_RETRIED
                if final or loop.time() + pause > deadline:
                    log.warning("tunnel to %s/%s:%d failed: %s", namespace, pod, port, e)
                    raise
                log.debug("tunnel to %s/%s:%d: %s; trying again", namespace, pod, port, e)
            else:
                if track is not None:
                    track(pod, transport)
                return transport
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    return connect


async def open_portforward_tunnel(
    client: KubeClient,
    namespace: str,
    resolve_pod: PodResolver,
    *,
    host: str,
    port: int,
    target: str,
    target_port: int,
    admit: Admission | None = None,
    track: ConnectionTracker | None = None,
) -> TcpRelay:
    """Listen on ``host:port``; each connection is forwarded to the session's pod."""
    connector = portforward_connector(client, namespace, resolve_pod, target_port, track)
    return await TcpRelay.open(host, port, target, target_port, connector=connector, admit=admit)
