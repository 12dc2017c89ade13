"""The peer's user of a loopback connection, as the kernel reports it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from backend.peers import PeerPolicy, _uid_by_netlink, _uid_by_proc, peer_uid, resolve_users


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def accepted(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    family = request.param
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family) as server:
        try:
            server.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} here")
        server.listen()
        with socket.create_connection(server.getsockname()[:2]) as client:
            conn, _ = server.accept()
            with conn:
                yield conn
                client.close()


def test_the_owner_of_a_loopback_peer_is_found_both_ways(accepted: socket.socket) -> None:
    peer, local = accepted.getpeername()[:2], accepted.getsockname()[:2]
    assert _uid_by_netlink(peer, local) == os.geteuid()
    assert _uid_by_proc(peer, local) == os.geteuid()
    assert peer_uid(peer, local) == os.geteuid()


def test_a_peer_that_is_not_there_has_no_owner(accepted: socket.socket) -> None:
    local = accepted.getsockname()[:2]
    host = local[0]
    assert peer_uid((host, 1), local) is None
    assert _uid_by_proc((host, 1), local) is None


def test_allow_users_names_and_numbers() -> None:
    assert resolve_users(["root", "12345"]) == frozenset({0, 12345})
    assert resolve_users(["*"]) is None
    with pytest.raises(KeyError):
        resolve_users(["no-such-user-x"])
    policy = PeerPolicy(frozenset({12345}))
    assert policy.uids == {os.geteuid(), 0, 12345} and not policy.anyone
    assert PeerPolicy(None).admits(object()), "anyone: no lookup at all"
    assert not policy.admits(object()), "a transport without addresses is refused"
