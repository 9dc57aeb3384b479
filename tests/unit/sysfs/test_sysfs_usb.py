# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from fake_usb import BAD_BUSIDS, DEVICES, DUMMY_HCD, XHCI

from usbip.device import Speed, UsbDevice, UsbInterface
from usbip.errors import InvalidArgument
from usbip.sysfs.errors import DeviceNotFound
from usbip.sysfs.usb import LocalDevice, UsbBus, is_device_name, under_vhci


def test_describe_reads_every_field_of_the_wire_record_and_the_local_view(tree):
    assert UsbBus(tree.sysfs()).describe("17-1") == LocalDevice(
        device=UsbDevice(
            path=DUMMY_HCD + "/usb17/17-1",
            busid="17-1",
            busnum=17,
            devnum=2,
            speed=Speed.HIGH,
            id_vendor=0x1209,
            id_product=0x0001,
            bcd_device=0x0601,
            device_class=0,
            device_subclass=0,
            device_protocol=0,
            configuration_value=1,
            num_configurations=1,
            num_interfaces=2,
            interfaces=(UsbInterface(0x02, 0x02, 0x01), UsbInterface(0x0A, 0x00, 0x00)),
        ),
        driver="usb",
        serial="SER-gdummy",
        manufacturer="vmlab",
        product="gadget-gdummy",
        devpath="1",
        is_hub=False,
        under_vhci=False,
    )


def test_devices_lists_every_device_in_bus_order_without_root_hubs_or_interfaces(tree):
    assert [d.busid for d in UsbBus(tree.sysfs()).devices()] == [
        "1-1", "1-2", "17-1", "18-1", "18-1.2", "18-1.3", "18-2", "18-3"]


def test_bindable_only_skips_hubs_and_imported_devices(tree):
    bus = UsbBus(tree.sysfs())
    assert [d.busid for d in bus.devices(bindable_only=True)] == ["17-1", "18-1.2", "18-1.3", "18-2", "18-3"]
    assert [d.busid for d in bus.devices() if d.bindable] == ["17-1", "18-1.2", "18-1.3", "18-2", "18-3"]


def test_hub_and_vhci_flags(tree):
    bus = UsbBus(tree.sysfs())
    assert bus.describe("18-1").is_hub and not bus.describe("18-1").under_vhci
    assert bus.describe("1-2").under_vhci and not bus.describe("1-2").is_hub


def test_scan_costs_one_listing_and_stops_early_on_hubs_and_imported_devices(tree):
    sysfs = tree.sysfs()
    UsbBus(sysfs).devices(bindable_only=True)
    assert [p for p in sysfs.touched if p == DEVICES] == [DEVICES]
    for skipped in ("1-1", "1-2", "18-1"):
        base = "%s/%s" % (DEVICES, skipped)
        assert [p for p in sysfs.touched if p.startswith(base + "/") or p == base] == [base, base + "/bDeviceClass"]


def test_unconfigured_device_has_no_interfaces_and_absent_strings_are_none(tree):
    tree.kernel_driver_unbind("18-3")  # no driver: the generic driver's release unconfigured it
    tree.remove(tree.resolve("18-3") + "/serial")  # a device without a serial string shows no attribute
    device = UsbBus(tree.sysfs()).describe("18-3")
    assert (device.device.configuration_value, device.device.num_interfaces, device.device.interfaces) == (0, 0, ())
    assert device.device.speed is Speed.FULL
    assert (device.driver, device.serial, device.manufacturer) == (None, None, "QEMU")


def test_a_device_bound_to_usbip_host_is_unconfigured(tree):
    tree.kernel_host_bind("18-1.2")  # as 04-hardware-bound.json shows it
    device = UsbBus(tree.sysfs()).describe("18-1.2")
    assert (device.device.configuration_value, device.device.interfaces, device.driver) == (0, (), "usbip-host")
    assert (device.serial, device.product) == ("LABDISK1", "QEMU USB HARDDRIVE")


def test_device_behind_a_hub(tree):
    device = UsbBus(tree.sysfs()).describe("18-1.2")
    assert device.device.path == XHCI + "/usb18/18-1/18-1.2"
    assert (device.devpath, device.device.busnum, device.device.devnum) == ("1.2", 18, 4)
    assert (device.product, device.serial, device.driver) == ("QEMU USB HARDDRIVE", "LABDISK1", "usb")
    assert device.device.interfaces == (UsbInterface(0x08, 0x06, 0x50),)


def test_device_unplugged_during_a_scan_is_left_out(tree):
    tree.remove(XHCI + "/usb18/18-2")  # its bus link now dangles
    assert [d.busid for d in UsbBus(tree.sysfs()).devices()] == ["1-1", "1-2", "17-1", "18-1", "18-1.2", "18-1.3",
                                                                 "18-3"]


def test_unknown_busid(tree):
    with pytest.raises(DeviceNotFound):
        UsbBus(tree.sysfs()).describe("17-2")


@pytest.mark.parametrize("busid", BAD_BUSIDS)
def test_bad_busid_is_refused_before_any_access(static_tree, busid):
    sysfs = static_tree.sysfs()
    with pytest.raises(InvalidArgument):
        UsbBus(sysfs).describe(busid)
    assert sysfs.touched == [] and sysfs.journal == []


def test_names_and_paths_helpers():
    assert [n for n in ["17-1", "17-1:1.0", "usb17", "18-1.4", "bind", "module"] if is_device_name(n)] == [
        "17-1",
        "18-1.4",
    ]
    assert under_vhci("/sys/devices/platform/vhci_hcd.3/usb7/7-1")
    assert not under_vhci("/sys/devices/platform/dummy_hcd.0/usb17/17-1")
