# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import errno

import pytest
from fake_usb import VUDC_DRIVER

from usbip.device import DeviceStatus, Speed, UsbDevice
from usbip.errors import InvalidArgument, UsbipError
from usbip.sysfs.errors import DeviceBusy, DeviceNotFound, DriverNotLoaded, NotExportable
from usbip.sysfs.fs import Change
from usbip.sysfs.vudc import VudcDriver

VUDC0 = "/sys/devices/platform/usbip-vudc.0"
UDC0 = VUDC0 + "/udc/usbip-vudc.0"

GVUDC = UsbDevice(
    path=VUDC0,
    busid="usbip-vudc.0",
    busnum=0,
    devnum=0,
    speed=Speed.HIGH,
    id_vendor=0x1D6B,
    id_product=0x0104,
    bcd_device=0x0601,
    device_class=0,
    device_subclass=0,
    device_protocol=0,
    configuration_value=0,
    num_configurations=1,
    num_interfaces=0,
)


def vudc(tree):
    return VudcDriver(tree.sysfs())


def test_describe_decodes_the_device_descriptor_like_the_c_server(tree):
    assert vudc(tree).describe("usbip-vudc.0") == GVUDC


def test_descriptor_fields_are_little_endian_and_at_their_offsets(tree):
    # bcdUSB 0x0310, class ef/02/01, idVendor 0x1234, idProduct 0xabcd, bcdDevice 0x0102, 3 configurations
    tree.file(VUDC0 + "/dev_desc", bytes.fromhex("12 01 10 03 ef 02 01 40 34 12 cd ab 02 01 00 00 00 03"))
    device = vudc(tree).describe("usbip-vudc.0")
    assert (device.id_vendor, device.id_product, device.bcd_device) == (0x1234, 0xABCD, 0x0102)
    assert (device.device_class, device.device_subclass, device.device_protocol) == (0xEF, 0x02, 0x01)
    assert device.num_configurations == 3


def test_speed_comes_from_the_udc_and_defaults_to_unknown(tree):
    tree.attrs(UDC0, current_speed="full-speed")
    assert vudc(tree).describe("usbip-vudc.0").speed is Speed.FULL
    tree.remove(UDC0 + "/current_speed")
    assert vudc(tree).describe("usbip-vudc.0").speed is Speed.UNKNOWN


def test_instances_in_numeric_order(tree):
    tree.vudc(10, None)
    tree.vudc(2, None)
    assert vudc(tree).instances() == ["usbip-vudc.0", "usbip-vudc.1", "usbip-vudc.2", "usbip-vudc.10"]


def test_without_a_gadget_there_is_nothing_to_export(tree):
    driver = vudc(tree)
    assert driver.has_gadget("usbip-vudc.0") and not driver.has_gadget("usbip-vudc.1")
    with pytest.raises(NotExportable):
        driver.describe("usbip-vudc.1")
    assert driver.scan() == [GVUDC]


def test_gadget_without_a_function_name_is_seen_through_its_descriptor(tree):
    tree.file(UDC0 + "/function", "")
    assert vudc(tree).has_gadget("usbip-vudc.0")


def test_short_descriptor_is_an_error(tree):
    tree.file(VUDC0 + "/dev_desc", b"\x12\x01\x00\x02")
    with pytest.raises(UsbipError, match="short device descriptor"):
        vudc(tree).describe("usbip-vudc.0")


def test_status(tree):
    assert vudc(tree).status("usbip-vudc.0") is DeviceStatus.AVAILABLE
    tree.attrs(VUDC0, usbip_status="2")
    assert vudc(tree).status("usbip-vudc.0") is DeviceStatus.USED


def test_export_writes_the_socket_fd(tree):
    driver = vudc(tree)
    driver.export("usbip-vudc.0", 7)
    assert driver.sysfs.journal == [Change("write", VUDC0 + "/usbip_sockfd", "7")]


@pytest.mark.parametrize("code, error", [(errno.EBUSY, DeviceBusy), (errno.ENODEV, NotExportable)])
def test_export_maps_the_kernel_refusals(tree, code, error):
    tree.errors[VUDC0 + "/usbip_sockfd"] = code
    with pytest.raises(error):
        vudc(tree).export("usbip-vudc.0", 7)


def test_unknown_instance(tree):
    driver = vudc(tree)
    for call in (driver.describe, driver.status, driver.has_gadget, lambda n: driver.export(n, 7)):
        with pytest.raises(DeviceNotFound):
            call("usbip-vudc.5")
    assert driver.sysfs.journal == []


@pytest.mark.parametrize("name", ["17-1", "usbip-vudc.x", "usbip-vudc.0/../..", "../usbip-vudc.0", "", "usbip-vudc.01"])
def test_bad_names_touch_nothing(static_tree, name):
    driver = vudc(static_tree)
    with pytest.raises(InvalidArgument):
        driver.export(name, 7)
    with pytest.raises(InvalidArgument):
        driver.describe(name)
    assert driver.sysfs.touched == []


def test_driver_not_loaded(tree):
    tree.remove(VUDC_DRIVER)
    driver = vudc(tree)
    with pytest.raises(DriverNotLoaded) as caught:
        driver.check_loaded()
    assert caught.value.hint == "modprobe usbip-vudc"
    assert driver.instances() == []
