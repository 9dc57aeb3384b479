# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules share from the stack: ID parsing, matching, attachment lookup."""

from __future__ import annotations

import pytest
from fake_usb import standard_tree

from usbip import attachments
from usbip.errors import InvalidArgument
from usbip.matching import Match, port_path, usb_id
from usbip.sysfs.usb import UsbBus


@pytest.mark.parametrize("value, expected", [("1209", 0x1209), ("0x1D6B", 0x1D6B), (" 0403 ", 0x0403), (0, 0),
                                             (0xFFFF, 0xFFFF), (4617, 0x1209)])
def test_usb_ids(value, expected):
    assert usb_id(value, "vendor ID") == expected


@pytest.mark.parametrize("value", ["", "123", "12345", "0x", "g000", -1, 0x10000, True, 1.0, None, ["1209"]])
def test_bad_usb_ids(value):
    with pytest.raises(InvalidArgument):
        usb_id(value, "vendor ID")


@pytest.mark.parametrize("path", ["1", "1.4", "0000:00:14.0-1.4", "dummy_hcd.0-1", "xhci-hcd.0.auto-2.1"])
def test_port_paths(path):
    assert Match.checked(port_path=path).port_path == path


@pytest.mark.parametrize("path", ["0", "1..4", "-1", "a/b-1", "../1", "1.4-", "x y-1"])
def test_bad_port_paths(path):
    with pytest.raises(InvalidArgument):
        Match.checked(port_path=path)


def test_port_path_of_local_devices(tmp_path):
    bus = UsbBus(standard_tree(tmp_path).sysfs())
    assert {d.busid: port_path(d) for d in bus.devices()} == {
        "1-1": "vhci_hcd.0-1", "1-2": "vhci_hcd.0-2", "17-1": "dummy_hcd.0-1", "18-1": "0000:00:03.0-1",
        "18-1.2": "0000:00:03.0-1.2", "18-1.3": "0000:00:03.0-1.3", "18-2": "0000:00:03.0-2", "18-3": "0000:00:03.0-3"}


def test_match_str_and_remote_limits():
    match = Match.checked(vendor="1209", serial="S")
    assert str(match) == "vendor=1209 serial=S" and not match.answerable_remotely
    assert Match.checked(product=1).answerable_remotely


def test_same_host():
    assert attachments.same_host("Server", "server")
    assert attachments.same_host("localhost", "127.0.0.1")
    assert not attachments.same_host("127.0.0.2", "127.0.0.1")
    assert not attachments.same_host(None, "127.0.0.1")
