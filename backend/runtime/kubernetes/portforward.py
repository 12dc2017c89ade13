"""Tunnels to a session's pod through the API server's port-forward.

The local listener is ``backend.tunnels.TcpRelay``, the same one the local runtime uses;
this module only supplies its *connector*: for each accepted local connection, one new
port-forward stream (``kubernetes.stream.portforward``) to the pod that serves the
session *now*. The pod is looked up by label at connect time, so when the ReplicaSet has
replaced it, the next connection reaches the new one. One stream per connection keeps
connections independent: a reset on one never takes the others down.

``kubernetes.stream.portforward`` temporarily swaps ``call_api`` on the ``ApiClient`` it
is given, so it must never share that client with concurrent requests: every stream gets
a short-lived ``ApiClient`` of its own. The websocket handshake is blocking and runs in the
bounded API pool; the stream's pump is the library's own thread, which ends when our side
of its socket pair closes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from backend.runtime.kubernetes.client import KubeClient
from backend.tunnels import Admission, Connector, TcpRelay

__all__ = [
    "ConnectionTracker",
    "ForwardRefused",
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


class ForwardRefused(ConnectionRefusedError):
    """The API server refused a port-forward handshake, with its HTTP ``status``."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def open_forward_socket(configuration: Any, namespace: str, pod: str, port: int) -> socket.socket:
    """Blocking: open one port-forward stream and return our end of it as a socket."""
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

    async def dial() -> tuple[str, socket.socket]:
        """One stream to the serving pod, retried (pod looked up again) for a short while."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DIAL_WINDOW
        pause = 0.05
        while True:
            pod = await resolve_pod()
            try:
                sock = await client.run_blocking(
                    functools.partial(
                        open_forward_socket, client.connection.configuration, namespace, pod, port
                    )
                )
                return pod, sock
            except OSError as e:
                final = isinstance(e, ForwardRefused) and e.status in NOT_RETRIED
                if final or loop.time() + pause > deadline:
                    log.warning("tunnel to %s/%s:%d failed: %s", namespace, pod, port, e)
                    raise
                log.debug("tunnel to %s/%s:%d: %s; trying again", namespace, pod, port, e)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def connect(protocol: asyncio.Protocol) -> asyncio.Transport:
        pod, sock = await dial()
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
        except BaseException:
            sock.close()
            raise
        if track is not None:
            track(pod, transport)
        return transport

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
