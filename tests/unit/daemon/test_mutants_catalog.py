# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The catalog's bookkeeping and the two-mode exporter, call by call (found by mutation testing).

The catalog keeps device records and open ``usbip_status`` descriptors between requests; each path
where it must let go of them (a rescan, a device gone, an odd status value) is taken here against an
exporter stand-in that counts what it is asked, so that a missed close or a skipped rescan shows.
"""

from __future__ import annotations

import logging
import os

import pytest

from usbip.daemon.catalog import BothModes, Catalog, exporter_for
from usbip.device import DeviceStatus
from usbip.errors import UsbipError
from usbip.sysfs.errors import DeviceNotFound
from usbip.sysfs.host import HostDriver
from usbip.sysfs.vudc import VudcDriver


class Exporter:
    """One mode's export interface over status files in a temporary directory."""

    def __init__(self, root, busids, mode="host"):
        self.mode = mode
        self.root = root
        self.busids = list(busids)
        self.calls = []
        for busid in self.busids:
            self.set_status(busid, DeviceStatus.AVAILABLE)

    def set_status(self, busid, value):
        with open(self.status_file(busid), "w") as handle:
            handle.write(value if isinstance(value, str) else "%d\n" % value)

    def check_loaded(self):
        self.calls.append(("check_loaded",))

    def scan(self):
        self.calls.append(("scan",))
        return [Device(busid) for busid in self.busids]

    def status(self, busid):
        self.calls.append(("status", busid))
        with open(self.status_file(busid)) as handle:
            text = handle.read()
        if text == "gone\n":
            raise DeviceNotFound("%s is gone" % busid)
        return DeviceStatus(int(text))

    def status_file(self, busid):
        return os.path.join(self.root, busid)

    def export(self, busid, sockfd):
        self.calls.append(("export", busid, sockfd))


class Device:
    def __init__(self, busid):
        self.busid = busid

    def __eq__(self, other):
        return isinstance(other, Device) and other.busid == self.busid

    def __repr__(self):
        return "Device(%r)" % self.busid


def open_fds():
    return set(os.listdir("/proc/self/fd"))


# -- the catalog ----------------------------------------------------------------------------------
def test_statuses_are_read_through_descriptors_kept_open_and_closed_on_invalidate(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="usbipd")
    exporter = Exporter(str(tmp_path), ["17-1", "17-2"])
    before = open_fds()
    catalog = Catalog(exporter)
    assert catalog.available() == [Device("17-1"), Device("17-2")]
    assert len(open_fds() - before) == 2 and not [c for c in exporter.calls if c[0] == "status"]
    exporter.set_status("17-2", DeviceStatus.USED)
    assert catalog.available() == [Device("17-1")]
    assert (catalog.rescans, catalog.generation) == (1, 0)
    catalog.invalidate()
    assert open_fds() == before
    assert (catalog.rescans, catalog.generation) == (1, 1)
    assert catalog.available() == [Device("17-1")]
    assert (catalog.rescans, catalog.generation) == (2, 1)
    assert [r.getMessage() for r in caplog.records] == ["device list rebuilt: 17-1, 17-2"] * 2


def test_an_odd_status_value_closes_its_descriptor_and_asks_the_driver(tmp_path):
    exporter = Exporter(str(tmp_path), ["17-1"])
    catalog = Catalog(exporter)
    before = open_fds()
    assert catalog.available() == [Device("17-1")]
    exporter.set_status("17-1", "9\n")
    with pytest.raises(ValueError):
        catalog.available()  # the driver, asked, explains or raises; this stand-in raises
    assert exporter.calls.count(("status", "17-1")) == 1
    assert open_fds() == before
    exporter.set_status("17-1", DeviceStatus.AVAILABLE)
    assert catalog.available() == [Device("17-1")]  # a new descriptor, opened again


def test_a_device_gone_since_the_scan_invalidates_the_list(tmp_path):
    exporter = Exporter(str(tmp_path), ["17-1", "17-2"])
    catalog = Catalog(exporter)
    os.unlink(exporter.status_file("17-2"))
    exporter.set_status("17-2", "gone\n")
    catalog._status_files.clear()
    assert catalog.available() == [Device("17-1")]
    assert catalog.generation == 1


def test_without_status_files_the_driver_is_asked_each_time(tmp_path):
    exporter = Exporter(str(tmp_path), ["17-1"])
    asked = []
    exporter.status_file = None
    exporter.status = lambda busid: asked.append(busid) or DeviceStatus.AVAILABLE
    catalog = Catalog(exporter)
    assert catalog.available() == [Device("17-1")]
    assert catalog.available() == [Device("17-1")]
    assert asked == ["17-1", "17-1"] and catalog._status_files == {}


def test_a_status_file_that_cannot_be_opened_leaves_the_answer_to_the_driver(tmp_path):
    exporter = Exporter(str(tmp_path), ["17-1"])
    asked = []
    exporter.status_file = lambda busid: str(tmp_path / "nowhere" / busid)
    exporter.status = lambda busid: asked.append(busid) or DeviceStatus.AVAILABLE
    catalog = Catalog(exporter)
    assert catalog.available() == [Device("17-1")] and catalog._status_files == {}
    assert asked == ["17-1"]


def test_an_export_of_a_device_not_yet_seen_rescans_once(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="usbipd")
    exporter = Exporter(str(tmp_path), [])
    catalog = Catalog(exporter)
    assert catalog.available() == []
    exporter.busids.append("17-1")
    assert catalog.export("17-1", 5) == Device("17-1")
    assert exporter.calls == [("scan",), ("scan",), ("export", "17-1", 5)]
    assert (catalog.rescans, catalog.generation) == (2, 1)
    with pytest.raises(DeviceNotFound) as caught:
        catalog.export("17-9", 5)
    assert str(caught.value) == "requested device not found: 17-9"
    assert exporter.calls[-1] == ("scan",)  # looked once more, exported nothing
    assert [r.getMessage() for r in caplog.records] == [
        "device list rebuilt: (empty)", "device list rebuilt: 17-1", "device list rebuilt: 17-1"]


# -- both modes from one daemon -------------------------------------------------------------------
def test_both_modes_route_each_busid_to_its_driver(tmp_path):
    host = Exporter(str(tmp_path), ["17-1"])
    device = Exporter(str(tmp_path), ["usbip-vudc.0"], mode="device")
    both = BothModes([host, device])
    both.check_loaded()
    assert host.calls == device.calls == [("check_loaded",)]
    assert both.scan() == [Device("17-1"), Device("usbip-vudc.0")]
    assert both.status("usbip-vudc.0") is DeviceStatus.AVAILABLE and device.calls[-1] == ("status", "usbip-vudc.0")
    assert both.status("17-1") is DeviceStatus.AVAILABLE and host.calls[-1] == ("status", "17-1")
    assert both.status_file("17-1") == str(tmp_path / "17-1")
    both.export("usbip-vudc.0", 4)
    both.export("17-1", 3)
    assert device.calls[-1] == ("export", "usbip-vudc.0", 4) and host.calls[-1] == ("export", "17-1", 3)


def test_a_busid_of_a_mode_not_served_is_not_found(tmp_path):
    host_only = BothModes([Exporter(str(tmp_path), ["17-1"])])
    with pytest.raises(DeviceNotFound) as caught:
        host_only.export("usbip-vudc.0", 3)
    assert str(caught.value) == "requested device not found: usbip-vudc.0"
    device_only = BothModes([Exporter(str(tmp_path), [], mode="device")])
    with pytest.raises(DeviceNotFound):
        device_only.status("17-1")


def test_exporter_for_says_which_modes_exist(tmp_path):
    from usbip.sysfs.fs import Sysfs

    sysfs = Sysfs(str(tmp_path))
    assert type(exporter_for(["host"], sysfs)).__name__ == HostDriver.__name__ and \
        isinstance(exporter_for(["host"], sysfs), HostDriver)
    assert [type(d) for d in exporter_for(["device", "host"], sysfs).drivers] == [VudcDriver, HostDriver]
    with pytest.raises(UsbipError) as caught:
        exporter_for(["host", "gadget"], sysfs)
    assert str(caught.value) == "unknown mode 'gadget': host or device"
    with pytest.raises(UsbipError) as caught:
        exporter_for([], sysfs)
    assert str(caught.value) == "no mode to serve: host, device or both"


def test_an_exporter_without_status_files_is_asked_for_each_status(tmp_path):
    class StatusOnly:
        mode = "host"

        def __init__(self):
            self.asked = []

        def scan(self):
            return [Device("17-1")]

        def status(self, busid):
            self.asked.append(busid)
            return DeviceStatus.AVAILABLE

    exporter = StatusOnly()
    assert Catalog(exporter).available() == [Device("17-1")] and exporter.asked == ["17-1"]


def test_an_export_of_a_listed_device_does_not_rescan(tmp_path):
    exporter = Exporter(str(tmp_path), ["17-1", "17-2"])
    catalog = Catalog(exporter)
    catalog.available()
    assert catalog.export("17-2", 6) == Device("17-2")
    assert (catalog.rescans, catalog.generation) == (1, 0)
    assert exporter.calls == [("scan",), ("export", "17-2", 6)]


def test_each_invalidation_is_a_new_generation(tmp_path):
    catalog = Catalog(Exporter(str(tmp_path), []))
    for generation in (1, 2, 3):
        catalog.invalidate()
        assert catalog.generation == generation
