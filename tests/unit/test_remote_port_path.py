# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Port paths of a server's devices: the same string as on the server, from the path and busid on the wire.

The captures in ``tests/unit/sysfs/data`` are real kernels' trees (an xHCI
controller with a hub and devices behind it; dummy_hcd and usbip-vudc). Each
is laid out as files under a temporary root, the server's side reads it with
the stack's own ``UsbBus`` and ``VudcDriver``, and the record it would send
(ours) or the one the C usbipd sends (the sysfs path and the busid) must
give :func:`remote_port_path` the port path the server computes locally.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from usbip.device import Speed, UsbDevice
from usbip.errors import InvalidArgument
from usbip.matching import (
    AmbiguousMatch,
    Match,
    NoMatch,
    busid_devpath,
    port_path,
    remote_port_path,
    select_remote,
    select_remote_all,
)
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.usb import UsbBus
from usbip.sysfs.vudc import VudcDriver

DATA = Path(__file__).resolve().parent / "sysfs" / "data"


def materialize(capture: str, root: Path) -> Sysfs:
    """The captured tree as files under ``root``, with the ``/sys/bus/usb/devices`` links the hardware captures
    leave out (each USB device and interface directory, linked by its name as the kernel links it)."""
    entries = json.loads((DATA / capture).read_text())
    for path, entry in sorted(entries.items()):
        real = root / path.lstrip("/")
        if entry["type"] == "dir":
            real.mkdir(parents=True, exist_ok=True)
        elif entry["type"] == "link":
            real.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry["target"], real)
        else:
            real.parent.mkdir(parents=True, exist_ok=True)
            if "hex" in entry:
                real.write_bytes(bytes.fromhex(entry["hex"]))
            else:
                real.write_bytes(entry.get("text", "").encode("latin-1"))  # binary attributes are kept as text
    bus = root / "sys/bus/usb/devices"
    bus.mkdir(parents=True, exist_ok=True)
    for path, entry in entries.items():
        name = path.rsplit("/", 1)[1]
        if entry["type"] == "dir" and path.startswith("/sys/devices/") and name[:1].isdigit() \
                and not (bus / name).exists():
            os.symlink(os.path.relpath(root / path.lstrip("/"), bus), bus / name)
    return Sysfs(str(root))


def c_record(path: str, busid: str, busnum: int, vendor: int = 0x46F4, product: int = 0x0001) -> UsbDevice:
    """A DEVLIST record as the C usbipd fills it: udev's syspath and sysname, the busnum attribute."""
    return UsbDevice(path=path, busid=busid, busnum=busnum, devnum=2, speed=Speed.HIGH, id_vendor=vendor,
                     id_product=product, bcd_device=0x100, device_class=0, device_subclass=0, device_protocol=0,
                     configuration_value=1, num_configurations=1, num_interfaces=1)


XHCI = "/sys/devices/pci0000:00/0000:00:03.0/usb17"


def test_the_hardware_capture_gives_the_same_port_path_on_both_sides(tmp_path):
    """The xHCI bus: a hub (17-1) with a disk (17-1.2) and an adapter (17-1.3) behind it, two devices on root ports."""
    devices = UsbBus(materialize("03-hardware.json", tmp_path)).devices()
    local = {d.busid: port_path(d) for d in devices if not d.under_vhci}
    assert local == {"17-1": "0000:00:03.0-1", "17-1.2": "0000:00:03.0-1.2", "17-1.3": "0000:00:03.0-1.3",
                     "17-2": "0000:00:03.0-2", "17-3": "0000:00:03.0-3"}
    # What our usbipd sends is the record it read; what the C one sends is the syspath and the sysname.
    assert {d.busid: remote_port_path(d.device) for d in devices if not d.under_vhci} == local
    syspaths = {d.busid: d.device.path for d in devices if not d.under_vhci}
    assert syspaths["17-1.3"] == XHCI + "/17-1/17-1.3"
    assert {busid: remote_port_path(c_record(path, busid, 17)) for busid, path in syspaths.items()} == local


def test_dummy_hcd_gives_its_platform_name_and_a_vudc_gadget_no_port_path(tmp_path):
    """01-loaded: an ACM gadget on dummy_udc.0 (17-1 on dummy_hcd.0) and a mass-storage gadget on usbip-vudc.0.

    A usbip-vudc gadget is exported as the UDC itself: its record's path is
    the platform device (/sys/devices/platform/usbip-vudc.0), its busid the
    instance name and its bus number 0. It sits behind no host controller's
    port, so it has no port path, and a port_path criterion never takes it.
    """
    sysfs = materialize("01-loaded.json", tmp_path)
    gadget_on_dummy = next(d for d in UsbBus(sysfs).devices() if d.busid == "17-1")
    assert port_path(gadget_on_dummy) == remote_port_path(gadget_on_dummy.device) == "dummy_hcd.0-1"
    gadget = VudcDriver(sysfs).describe("usbip-vudc.0")  # the record usbipd sends for it
    assert (gadget.busid, gadget.path, gadget.busnum) == ("usbip-vudc.0", "/sys/devices/platform/usbip-vudc.0", 0)
    assert remote_port_path(gadget) is None
    for criterion in ("1", "usbip-vudc.0-1", "dummy_hcd.0-1"):
        assert not Match.checked(port_path=criterion).accepts_remote(gadget), criterion
    assert Match.checked(vendor=gadget.id_vendor).accepts_remote(gadget)


@pytest.mark.parametrize("record, expected", [
    (c_record("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.4", "1-1.4", 1), "0000:00:14.0-1.4"),
    (c_record("/sys/devices/platform/soc/xhci-hcd.0.auto/usb3/3-2", "3-2", 3), "xhci-hcd.0.auto-2"),
    (c_record("/sys/devices/platform/usbip-vudc.3", "usbip-vudc.3", 0), None),
    (c_record("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1", "2-1", 1), None),   # busid of another bus
    (c_record("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1", "1-0.1", 1), None),  # no devpath
    (c_record("", "1-1", 1), "usb1-1"),  # no root hub in the path: named after the bus, as port_path does locally
])
def test_remote_port_paths_of_odd_and_ordinary_records(record, expected):
    assert remote_port_path(record) == expected


def test_busid_devpath():
    assert [busid_devpath(b) for b in ("3-1.4", "17-1", "usbip-vudc.0", "3-", "x-1", "3-1..2")] == [
        "1.4", "1", None, None, None, None]
    assert busid_devpath("3-1.4", 3) == "1.4" and busid_devpath("3-1.4", 4) is None


# -- two identical disks on one server, told apart by port path --------------------------------------------------
DISK1 = c_record(XHCI + "/17-1/17-1.2", "17-1.2", 17)                                       # behind the hub, xHCI
DISK2 = c_record("/sys/devices/pci0000:00/0000:00:04.0/usb1/1-1", "1-1", 1)                 # on EHCI's root port
KEYBOARD = c_record(XHCI + "/17-2", "17-2", 17, 0x0627, 0x0001)
OFFERED = [DISK1, KEYBOARD, DISK2]


def test_identical_devices_are_told_apart_by_port_path():
    ids = {"vendor": "46f4", "product": "0001"}
    with pytest.raises(AmbiguousMatch, match="2 devices on s:3240 match vendor=46f4 product=0001"):
        select_remote(OFFERED, Match.checked(**ids), "on s:3240")
    assert select_remote(OFFERED, Match.checked(port_path="0000:00:03.0-1.2", **ids), "on s:3240") == DISK1
    assert select_remote(OFFERED, Match.checked(port_path="1.2", **ids), "on s:3240") == DISK1
    assert select_remote(OFFERED, Match.checked(port_path="0000:00:04.0-1", **ids), "on s:3240") == DISK2
    assert select_remote(OFFERED, Match.checked(port_path="2"), "on s:3240") == KEYBOARD
    # a bare devpath takes that port on every controller: 1 is the hub's port on xHCI and the disk's on EHCI
    assert select_remote(OFFERED, Match.checked(port_path="1", **ids), "on s:3240") == DISK2


def test_a_port_path_without_a_device_lists_the_candidates_port_paths():
    with pytest.raises(NoMatch) as caught:
        select_remote(OFFERED, Match.checked(port_path="0000:00:03.0-1.4"), "on s:3240")
    assert str(caught.value) == (
        "no device on s:3240 matches port_path=0000:00:03.0-1.4; candidates: 17-1.2 (46f4:0001 "
        "port_path=0000:00:03.0-1.2); 17-2 (0627:0001 port_path=0000:00:03.0-2); 1-1 (46f4:0001 "
        "port_path=0000:00:04.0-1)")
    # without a port path criterion the messages are the ones they always were
    with pytest.raises(NoMatch, match=r"candidates: 17-1.2 \(46f4:0001\); 17-2 \(0627:0001\); 1-1 \(46f4:0001\)$"):
        select_remote(OFFERED, Match.checked(vendor="ffff"), "on s:3240")


def test_a_serial_is_not_on_the_wire():
    match = Match.checked(vendor="46f4", serial="LABDISK1")
    assert not match.answerable_remotely
    assert Match.checked(vendor="46f4", port_path="1.2").answerable_remotely  # a port path is on the wire now
    with pytest.raises(InvalidArgument, match="a server's device list carries no serial number"):
        select_remote(OFFERED, match, "on s:3240")
    with pytest.raises(InvalidArgument, match="a server's device list carries no serial number"):
        select_remote_all(OFFERED, match)
    assert not match.accepts_remote(DISK1)


def test_select_remote_all_takes_every_device_the_match_takes_in_the_servers_order():
    assert select_remote_all(OFFERED, Match.checked(vendor="46f4", product="0001")) == [DISK1, DISK2]
    assert select_remote_all(OFFERED, None) == OFFERED
    assert select_remote_all(OFFERED, Match.checked(vendor="ffff")) == []
    assert select_remote_all(OFFERED, Match.checked(port_path="0000:00:03.0-1.2")) == [DISK1]


def test_an_attached_device_may_have_come_from_a_port_by_its_remote_busid():
    """A vhci record keeps the server's busid only: its devpath is checked, the controller cannot be."""
    match = Match.checked(port_path="0000:00:03.0-1.2")
    assert match.may_have_come_from("17-1.2") and match.may_have_come_from("3-1.2")
    assert not match.may_have_come_from("17-1.3") and not match.may_have_come_from("usbip-vudc.0")
    assert Match.checked(port_path="1.2").may_have_come_from("17-1.2")
    assert Match.checked(vendor="46f4").may_have_come_from("usbip-vudc.0")  # no port path: any busid


def test_a_local_bare_devpath_and_a_remote_one_agree(tmp_path):
    devices = UsbBus(materialize("03-hardware.json", tmp_path)).devices()
    for device in devices:
        if device.under_vhci:
            continue
        for criterion in ("1.2", "1", port_path(device)):
            match = Match.checked(port_path=criterion)
            assert match.accepts(device) == match.accepts_remote(device.device), (device.busid, criterion)
        remote = dataclasses.replace(device.device)
        assert Match.checked(port_path=port_path(device)).accepts_remote(remote)
