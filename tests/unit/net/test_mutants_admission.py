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
