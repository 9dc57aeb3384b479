# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import errno

import pytest
from fake_usb import ACM, BAD_BUSIDS, BIND_17_1, DEVICES, DUMMY_HCD, HOST, UNBIND_17_1

from usbip.device import DeviceStatus
from usbip.errors import InvalidArgument
from usbip.sysfs.errors import (
    BindLoop,
    DeviceBusy,
    DeviceError,
    DeviceNotFound,
    DriverNotLoaded,
    NotExportable,
    SysfsError,
)
from usbip.sysfs.fs import Change
from usbip.sysfs.host import BindResult, BoundDevice, HostDriver
from usbip.sysfs.usb import UsbBus

DEV = DUMMY_HCD + "/usb17/17-1"


def driver(tree, sysfs=None):
    return HostDriver(sysfs or tree.sysfs())


def test_bindable_is_what_usbip_list_l_shows(tree):
    assert [d.busid for d in driver(tree).bindable()] == ["17-1", "18-1.2", "18-1.3", "18-2", "18-3"]


def test_bind_follows_the_c_tool_order(tree):
    host = driver(tree)
    assert host.bind("17-1") == BindResult("17-1", True, "usb")
    assert host.sysfs.journal == BIND_17_1


def test_bind_of_a_device_without_driver_has_nothing_to_unbind(tree):
    tree.kernel_driver_unbind("18-3")  # taken from the generic driver by hand
    host = driver(tree)
    assert host.bind("18-3") == BindResult("18-3", True, None)
    assert host.sysfs.journal == [
        Change("write", HOST + "/match_busid", "add 18-3"),
        Change("write", HOST + "/bind", "18-3"),
    ]


def test_bind_of_a_bound_device_changes_nothing(tree):
    tree.kernel_host_bind("17-1")
    host = driver(tree)
    assert host.bind("17-1") == BindResult("17-1", False, "usbip-host")
    assert host.sysfs.journal == []


def test_bind_in_dry_run_journals_the_same_writes_and_changes_nothing(tree):
    host = driver(tree, tree.sysfs(dry_run=True))
    assert host.bind("17-1").changed
    assert host.sysfs.journal == BIND_17_1
    assert UsbBus(tree.sysfs()).describe("17-1").driver == "usb"
    assert tree.read(HOST + "/match_busid") == "\n"


@pytest.mark.parametrize(
    "busid, error, text",
    [
        ("18-1", NotExportable, "hub"),
        ("1-2", BindLoop, "bind loop detected"),
        ("17-2", DeviceNotFound, "does not exist"),
    ],
)
def test_bind_refusals_write_nothing(tree, busid, error, text):
    host = driver(tree)
    with pytest.raises(error, match=text):
        host.bind(busid)
    assert host.sysfs.journal == []


@pytest.mark.parametrize("busid", BAD_BUSIDS)
@pytest.mark.parametrize("action", ["bind", "unbind", "status"])
def test_bad_busids_touch_nothing(static_tree, busid, action):
    host = driver(static_tree)
    with pytest.raises(InvalidArgument):
        getattr(host, action)(busid)
    assert host.sysfs.touched == [] and host.sysfs.journal == []


@pytest.mark.parametrize("busid", BAD_BUSIDS)
def test_export_of_bad_busid_touches_nothing(static_tree, busid):
    host = driver(static_tree)
    with pytest.raises(InvalidArgument):
        host.export(busid, 5)
    assert host.sysfs.touched == []


def test_bind_without_the_driver_loaded(tree):
    tree.remove(HOST)
    host = driver(tree)
    with pytest.raises(DriverNotLoaded) as caught:
        host.bind("17-1")
    assert caught.value.hint == "modprobe usbip-host"
    assert host.sysfs.journal == []


def test_failed_bind_forgets_the_busid_and_gives_the_device_back(tree):
    tree.errors[HOST + "/bind"] = errno.ENODEV
    host = driver(tree)
    with pytest.raises(SysfsError) as caught:
        host.bind("17-1")
    assert caught.value.errno == errno.ENODEV
    assert host.sysfs.journal == BIND_17_1 + [
        Change("write", HOST + "/match_busid", "del 17-1"),
        Change("write", "/sys/bus/usb/drivers/usb/bind", "17-1"),
    ]


def test_full_match_table_gives_the_device_back(tree):
    tree.errors[HOST + "/match_busid"] = errno.ENOMEM
    host = driver(tree)
    with pytest.raises(SysfsError):
        host.bind("17-1")
    assert host.sysfs.journal == BIND_17_1[:2] + [Change("write", "/sys/bus/usb/drivers/usb/bind", "17-1")]


def test_unbind_follows_the_c_tool_order(tree):
    tree.kernel_host_bind("17-1")
    host = driver(tree)
    assert host.unbind("17-1") == BindResult("17-1", True, "usbip-host")
    assert host.sysfs.journal == UNBIND_17_1


@pytest.mark.parametrize("busid, previous", [("17-1", "usb"), ("18-1.2", "usb"), ("18-3", None)])
def test_unbind_of_a_device_not_bound_changes_nothing(tree, busid, previous):
    if previous is None:
        tree.kernel_driver_unbind(busid)
    host = driver(tree)
    assert host.unbind(busid) == BindResult(busid, False, previous)
    assert host.sysfs.journal == []


def test_unbind_of_unknown_device(tree):
    with pytest.raises(DeviceNotFound):
        driver(tree).unbind("17-2")


def test_status_follows_the_device_through_bind_and_attach(tree):
    host = driver(tree)
    assert host.status("17-1") is None
    tree.kernel_host_bind("17-1")
    assert host.status("17-1") is DeviceStatus.AVAILABLE
    tree.kernel_host_attach("17-1", ACM)
    assert host.status("17-1") is DeviceStatus.USED
    tree.attrs(DEV, usbip_status="3")
    assert host.status("17-1") is DeviceStatus.ERROR
    tree.attrs(DEV, usbip_status="7")
    with pytest.raises(DeviceError):
        host.status("17-1")
    with pytest.raises(DeviceNotFound):
        host.status("17-2")


def test_bound_lists_the_offered_devices_with_their_status(tree):
    host = driver(tree)
    assert host.bound() == []
    tree.kernel_host_bind("17-1")
    (bound,) = host.bound()
    assert bound == BoundDevice(UsbBus(tree.sysfs()).describe("17-1"), DeviceStatus.AVAILABLE)
    # usbip-host's bind left the device unconfigured until a client picks a configuration
    assert (bound.local.device.configuration_value, bound.local.device.num_interfaces) == (0, 0)


def test_export_writes_the_socket_fd(tree):
    tree.kernel_host_bind("17-1")
    host = driver(tree)
    host.export("17-1", 5)
    assert host.sysfs.journal == [Change("write", DEVICES + "/17-1/usbip_sockfd", "5")]


@pytest.mark.parametrize("status, error", [("2", DeviceBusy), ("3", DeviceError)])
def test_export_refuses_a_device_that_is_not_available(tree, status, error):
    tree.kernel_host_bind("17-1")
    tree.attrs(DEV, usbip_status=status)
    host = driver(tree)
    with pytest.raises(error):
        host.export("17-1", 5)
    assert host.sysfs.journal == []


@pytest.mark.parametrize("busid", ["17-1", "17-2"])
def test_export_of_a_device_not_offered(tree, busid):
    host = driver(tree)
    with pytest.raises(DeviceNotFound):
        host.export(busid, 5)
    assert host.sysfs.journal == []


def test_export_that_loses_a_race_reports_busy(tree, monkeypatch):
    tree.kernel_host_bind("17-1")
    host = driver(tree)
    original = host.sysfs.write

    def write_after_another_client(path, value):
        tree.attrs(DEV, usbip_status="2")
        tree.errors[path] = errno.EINVAL
        original(path, value)

    monkeypatch.setattr(host.sysfs, "write", write_after_another_client)
    with pytest.raises(DeviceBusy):
        host.export("17-1", 5)


def test_export_write_error_with_the_device_still_available_is_reported_as_is(tree):
    tree.kernel_host_bind("17-1")
    tree.errors[DEVICES + "/17-1/usbip_sockfd"] = errno.EINVAL
    with pytest.raises(SysfsError):
        driver(tree).export("17-1", 5)


@pytest.mark.parametrize("sockfd", [-1, "-1", 2**31, None, True, "3\n"])
def test_export_refuses_bad_socket_numbers(tree, sockfd):
    tree.kernel_host_bind("17-1")
    host = driver(tree)
    with pytest.raises(InvalidArgument):
        host.export("17-1", sockfd)
    assert host.sysfs.journal == []


def test_bind_export_unbind_cycle(tree):
    host = driver(tree)
    host.bind("17-1")
    tree.kernel_host_bind("17-1")
    host.export("17-1", 3)
    tree.kernel_host_attach("17-1", ACM)
    assert host.status("17-1") is DeviceStatus.USED
    host.unbind("17-1")
    tree.kernel_host_unbind("17-1", interfaces=ACM)
    assert host.sysfs.journal == BIND_17_1 + [Change("write", DEVICES + "/17-1/usbip_sockfd", "3")] + UNBIND_17_1
    assert UsbBus(tree.sysfs()).describe("17-1").driver == "usb"
    assert host.bound() == []
