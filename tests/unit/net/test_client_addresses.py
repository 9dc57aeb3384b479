# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client tries a server's addresses in turn within one deadline, on 127.0.0.1.

A name that resolves to an address that never answers (an IPv6 address
without a route, listed first) and to one that works must still be reached
through the second. The address that never answers is a listening socket
whose accept queue is full: Linux drops further SYNs, so a connect to it
waits like one to a host that is down.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import List, Tuple

import pytest

from tests.unit.net.peers import PeerServer
from usbip.net import client
from usbip.protocol import DevlistReply, DevlistRequest

DEVLIST_REQUEST = len(DevlistRequest().encode())


class Blackhole:
    """A port on 127.0.0.1 where a connect gets no answer: listening, its one-entry accept queue filled."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            with pytest.raises(socket.timeout):  # the premise: no answer
                probe.connect(("127.0.0.1", self.port))
        finally:
            probe.close()

    def close(self) -> None:
        self.filler.close()
        self.sock.close()


def answer_an_empty_list(conn: socket.socket, _stop: threading.Event) -> None:
    """Read one DEVLIST request and answer it with no device."""
    conn.settimeout(5)
    received = b""
    while len(received) < DEVLIST_REQUEST:
        chunk = conn.recv(DEVLIST_REQUEST - len(received))
        if not chunk:
            break
        received += chunk
    conn.sendall(DevlistReply(()).encode())


@pytest.fixture
def resolves_to(monkeypatch):
    """Make the client's name lookup return these (address, port) pairs, in this order."""

    def install(*pairs: Tuple[str, int]) -> List[str]:
        asked: List[str] = []

        def getaddrinfo(name, port, *args, **kwargs):
            asked.append(name)
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", pair) for pair in pairs]

        monkeypatch.setattr(client.socket, "getaddrinfo", getaddrinfo)
        return asked

    return install


@pytest.fixture
def blackhole():
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture
def server():
    running = PeerServer(answer_an_empty_list)
    yield running
    running.close()


def test_an_address_that_never_answers_leaves_time_for_the_next(resolves_to, blackhole, server):
    resolves_to(("127.0.0.1", blackhole.port), ("127.0.0.1", server.port))
    started = time.monotonic()
    assert client.list_devices("server.example", 3240, timeout=2.0) == []
    took = time.monotonic() - started
    assert server.served == 1
    assert 0.9 < took < 1.6  # the first address had half of the deadline, no more


def test_two_addresses_that_never_answer_fail_at_the_deadline_with_one_line(resolves_to, blackhole):
    resolves_to(("127.0.0.1", blackhole.port), ("127.0.0.1", blackhole.port))
    started = time.monotonic()
    with pytest.raises(client.ConnectError) as err:
        client.list_devices("server.example", 3240, timeout=1.0)
    assert 0.9 < time.monotonic() - started < 1.6
    assert str(err.value) == "cannot connect to server.example:3240: no answer in 1 s"


def test_an_address_refused_at_once_leaves_all_that_is_left_to_the_next(resolves_to, server):
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, not listening: refused at once
    try:
        resolves_to(("127.0.0.1", refused.getsockname()[1]), ("127.0.0.1", server.port))
        assert client.list_devices("server.example", 3240, timeout=2.0) == []
    finally:
        refused.close()
    assert server.served == 1


def test_the_last_reason_is_the_error(resolves_to):
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    try:
        resolves_to(("127.0.0.1", refused.getsockname()[1]))
        with pytest.raises(client.ConnectError, match=r"^cannot connect to server\.example:3240: Connection refused$"):
            client.list_devices("server.example", 3240, timeout=2.0)
    finally:
        refused.close()
