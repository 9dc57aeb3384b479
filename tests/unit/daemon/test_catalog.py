# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemon's catalog over the drivers' one export interface, and the ST_* answer to a refused export."""

from __future__ import annotations

import inspect

import pytest
from fake_usb import standard_tree

from usbip.daemon.catalog import BothModes, Catalog, exporter_for, status_for
from usbip.device import DeviceStatus
from usbip.errors import InvalidArgument, UsbipError
from usbip.protocol import Status
from usbip.sysfs.errors import DeviceBusy, DeviceError, DeviceNotFound, NotExportable
from usbip.sysfs.host import HostDriver
from usbip.sysfs.vudc import VudcDriver

#: The export interface both drivers offer (the kernel's libsrc gives its two drivers usbip_host_driver_ops).
INTERFACE = {"check_loaded": 0, "scan": 0, "status": 1, "status_file": 1, "export": 2}


@pytest.fixture
def tree(tmp_path):
    return standard_tree(tmp_path)


@pytest.mark.parametrize("kind", [HostDriver, VudcDriver, BothModes])
def test_one_export_interface(kind):
    assert kind.mode in ("host", "device", "host and device")
    for name, arguments in INTERFACE.items():
        parameters = list(inspect.signature(getattr(kind, name)).parameters)[1:]
        assert len(parameters) == arguments, (kind.__name__, name, parameters)


def test_exporter_for_each_mode(tree):
    sysfs = tree.sysfs()
    assert isinstance(exporter_for(["host"], sysfs), HostDriver)
    assert isinstance(exporter_for(["device"], sysfs), VudcDriver)
    both = exporter_for(["host", "device"], sysfs)
    assert isinstance(both, BothModes) and [d.mode for d in both.drivers] == ["host", "device"]
    with pytest.raises(UsbipError, match="unknown mode 'gadget'"):
        exporter_for(["gadget"], sysfs)
    with pytest.raises(UsbipError, match="no mode to serve"):
        exporter_for([], sysfs)


def test_host_scan_is_what_usbip_host_holds(tree):
    driver = HostDriver(tree.sysfs())
    assert driver.scan() == []
    tree.kernel_host_bind("17-1")
    assert [d.busid for d in driver.scan()] == ["17-1"]
    assert driver.status_file("17-1") == str(tree.root) + "/sys/bus/usb/devices/17-1/usbip_status"


def test_catalog_reads_status_through_the_status_file(tree):
    tree.kernel_host_bind("17-1")
    catalog = Catalog(HostDriver(tree.sysfs()))
    assert [d.busid for d in catalog.available()] == ["17-1"]
    tree.attrs("/sys/bus/usb/devices/17-1", usbip_status="%d" % DeviceStatus.USED)
    assert catalog.available() == []  # the descriptor kept open reads the new value
    assert catalog.rescans == 1


def test_device_mode_catalog(tree):
    catalog = Catalog(exporter_for(["device"], tree.sysfs(dry_run=True)))
    assert [d.busid for d in catalog.available()] == ["usbip-vudc.0"]
    assert catalog.export("usbip-vudc.0", 7).busid == "usbip-vudc.0"
    with pytest.raises(DeviceNotFound):
        catalog.export("usbip-vudc.9", 7)


@pytest.mark.parametrize("error, status", [
    (DeviceNotFound("x"), Status.NODEV), (NotExportable("x"), Status.NODEV), (InvalidArgument("x"), Status.NODEV),
    (DeviceBusy("x"), Status.DEV_BUSY), (DeviceError("x"), Status.DEV_ERR), (UsbipError("x"), Status.NA),
])
def test_refusal_is_the_c_daemons_status(error, status):
    assert status_for(error) is status
    assert Catalog.refusal(error) is status
