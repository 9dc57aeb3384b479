# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server's admission bookkeeping, word for word and bound by bound (found by mutation testing).

Who may connect is decided from a peer's address before a byte is read: the address as the allow-list
and the per-client count see it (an IPv6 zone dropped), the client network it counts in (computed once
and kept, in a cache that cannot grow without bound), and the one line that says why a server cannot
start with the descriptors it is given.
"""

from __future__ import annotations

import ipaddress

import pytest

from usbip.errors import UsbipError
from usbip.net import limits
from usbip.net import server as server_module
from usbip.net.server import ServerOptions, UsbipServer, parse_networks


def test_a_descriptor_limit_too_low_says_what_to_raise():
    assert limits._too_low(100, 600, None) == \
        "the descriptor limit (100) is below what the server needs (600): raise LimitNOFILE"
    assert limits._too_low(100, 600, 512) == (
        "the descriptor limit (100) is below what max_connections 512 needs (600): raise LimitNOFILE or lower"
        " max_connections")


def test_a_bad_client_network_is_quoted():
    with pytest.raises(UsbipError) as caught:
        parse_networks(["10.0.0.0/8", "10.0.0.300/8"])
    assert str(caught.value).startswith("invalid client network '10.0.0.300/8': ")
    assert parse_networks(["10.0.0.1/8"]) == (ipaddress.ip_network("10.0.0.0/8"),)  # host bits allowed


def test_a_zone_is_not_part_of_the_client_address():
    server_module._ADDRESSES.clear()
    address = server_module._client_address(("fe80::1%eth0", 3240, 0, 2))
    assert address == ipaddress.ip_address("fe80::1") and str(address) == "fe80::1"


def server(**options) -> UsbipServer:
    return UsbipServer(object(), ServerOptions(**options))


def test_the_network_of_an_address_is_computed_once():
    usbipd = server(client_prefix_ipv6=48)
    address = ipaddress.ip_address("2001:db8:1:2::7")
    network = usbipd.client_network(address)
    assert network == ipaddress.ip_network("2001:db8:1::/48")
    assert usbipd.client_network(address) is network
    assert usbipd._networks == {address: network}


def test_the_cache_of_client_networks_holds_at_most_4096():
    usbipd = server()
    first = ipaddress.ip_address("10.0.0.0")
    for offset in range(4096):
        usbipd.client_network(first + offset)
    assert len(usbipd._networks) == 4096
    usbipd.client_network(first + 4096)
    assert len(usbipd._networks) == 1


def test_the_cache_of_client_addresses_holds_at_most_4096():
    server_module._ADDRESSES.clear()
    first = ipaddress.ip_address("10.1.0.0")
    for offset in range(4096):
        server_module._client_address((str(first + offset), 1))
    assert len(server_module._ADDRESSES) == 4096
    server_module._client_address(("10.2.0.0", 1))
    assert len(server_module._ADDRESSES) == 1


def test_only_the_first_percent_sign_starts_a_zone():
    server_module._ADDRESSES.clear()
    assert server_module._client_address(("fe80::1%a%b", 1)) == ipaddress.ip_address("fe80::1")


def test_a_refusal_says_which_limit_was_reached():
    usbipd = server(max_connections=3, max_per_client=2)
    peer = ("192.0.2.7", 40000)
    assert usbipd.admit(peer) is None
    usbipd.connections[usbipd.client_network(ipaddress.ip_address("192.0.2.7"))] = 2
    assert usbipd.admit(peer) == "too many connections from this client (2)"
    usbipd.active = 3
    assert usbipd.admit(peer) == "too many connections (3)"


class Rlimits:
    """``resource`` as ``ensure_descriptors`` uses it, with limits set by the test and calls recorded."""

    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft, hard, refuse=None):
        self.limits = (soft, hard)
        self.refuse = refuse
        self.set = []

    def getrlimit(self, which):
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which, limits):
        self.set.append((which, limits))
        if self.refuse:
            raise self.refuse


@pytest.fixture
def rlimits(monkeypatch):
    def install(soft, hard, refuse=None):
        fake = Rlimits(soft, hard, refuse)
        monkeypatch.setattr(limits, "resource", fake)
        return fake
    return install


def test_a_soft_limit_that_suffices_is_left_alone(rlimits):
    fake = rlimits(600, 4096)
    assert limits.ensure_descriptors(600) == 600 and fake.set == []


def test_a_soft_limit_below_is_raised_up_to_a_hard_limit_just_enough(rlimits):
    fake = rlimits(100, 600)
    assert limits.ensure_descriptors(600) == 600
    assert fake.set == [(Rlimits.RLIMIT_NOFILE, (600, 600))]


def test_a_hard_limit_below_is_an_error_naming_max_connections(rlimits):
    fake = rlimits(100, 599)
    with pytest.raises(UsbipError) as caught:
        limits.ensure_descriptors(600, 512)
    assert str(caught.value) == limits._too_low(599, 600, 512) and fake.set == []


def test_a_refused_raise_says_why(rlimits):
    rlimits(100, Rlimits.RLIM_INFINITY, OSError(1, "Operation not permitted"))
    with pytest.raises(UsbipError) as caught:
        limits.ensure_descriptors(600, 512)
    assert str(caught.value) == limits._too_low(100, 600, 512) + " ([Errno 1] Operation not permitted)"
