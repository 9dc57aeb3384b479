# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Admission on the TLS port: the allow-list and the connection limits apply before any handshake.

A TLS connection costs a handshake (CPU, and a slot of ``max_handshakes``),
so a client outside the allowed networks, or past ``max_connections`` or
``max_per_client``, must be closed as it connects -- without a byte of TLS
from the server and without a TLS session being made -- exactly as on the
plain port. Each case has its control: the same client inside the limits is
served over TLS.
"""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest
from test_server import Harness

from lab import pki
from usbip.errors import UsbipError
from usbip.net import client, tls
from usbip.net.server import ServerOptions


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return pki.make_pki(str(tmp_path_factory.mktemp("pki")))


def endpoint(certs, who: str, server_side: bool) -> tls.TlsEndpoint:
    return tls.TlsEndpoint(tls.TlsConfig(cert=certs[who], key=certs[who + "-key"], ca=certs["ca"]), server_side)


@pytest.fixture
def tls_server(certs):
    started = []

    def start(**limits) -> Harness:
        options = ServerOptions(port=0, addresses=["127.0.0.1"], read_timeout=5.0, plain=False, tls_port=0,
                                tls=endpoint(certs, "server", True), **limits)
        started.append(Harness(options))
        return started[-1]

    yield start
    for harness in started:
        harness.stop()
        harness.server.options.tls.close()


@pytest.fixture
def client_end(certs):
    end = endpoint(certs, "client1", False)
    yield end
    end.close()


def wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def tls_answer(port: int, client_end) -> bytes:
    """What the server sends back to a ClientHello: its flight, or nothing if it closed first."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(client_end.session("127.0.0.1").data_to_send())
            return sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def listed(harness, client_end):
    return [d.busid for d in client.list_devices("127.0.0.1", harness.port, timeout=5, tls=client_end)]


def assert_refused_before_tls(harness, client_end) -> None:
    sessions = harness.server.options.tls.handshakes  # those of the connections admitted before
    assert tls_answer(harness.port, client_end) == b""  # closed without a byte of TLS
    wait_for(lambda: harness.server.stats["refused"] == 1)
    assert harness.server.stats["tls_refused"] == 0  # refused by admission, not by the handshake
    assert harness.server.options.tls.handshakes == sessions  # no TLS session was made for it


@pytest.mark.parametrize("allow, served", [
    (["127.0.0.1/32"], True),
    (["10.0.0.0/8", "::1/128"], False),
])
def test_the_allow_list_is_applied_before_the_handshake(tls_server, client_end, allow, served):
    harness = tls_server(allow=tuple(ipaddress.ip_network(a) for a in allow))
    if served:
        assert listed(harness, client_end) == ["17-1"]
        assert harness.server.stats["refused"] == 0
        return
    assert_refused_before_tls(harness, client_end)
    with pytest.raises(UsbipError):
        listed(harness, client_end)
    assert harness.server.stats["accepted"] == 0


@pytest.mark.parametrize("limits", [
    {"max_connections": 1},
    {"max_per_client": 1, "max_connections": 50},
], ids=["max_connections", "max_per_client"])
def test_the_connection_limits_are_applied_before_the_handshake(tls_server, client_end, limits):
    harness = tls_server(**limits)
    with socket.create_connection(("127.0.0.1", harness.port), timeout=5):
        wait_for(lambda: harness.server.active == 1)  # admitted, holding the one connection allowed
        assert_refused_before_tls(harness, client_end)
        assert harness.server.active == 1
    wait_for(lambda: harness.server.active == 0)
    assert listed(harness, client_end) == ["17-1"]  # the slot is free again: served over TLS
