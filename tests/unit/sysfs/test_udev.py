# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for USB devices: polling on fake trees, uevents through a stand-in pyudev."""

from __future__ import annotations

import os
import sys
import threading
import types

import pytest
from fake_usb import MASS_STORAGE, FakeTree, capture_tree

from usbip.errors import InvalidArgument
from usbip.sysfs import udev
from usbip.sysfs.errors import DeviceNotFound
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.udev import UsbEntry, not_ready, usb_devices, wait_for_usb_device

VHCI = "/sys/devices/platform/vhci_hcd.0"
ACM_UNBOUND = ((0x02, 0x02, 0x01, None), (0x0A, 0x00, 0x00, None))


def attach_later(tree, delay, interfaces=MASS_STORAGE):
    """The kernel enumerating an imported device ``delay`` seconds from now."""
    def enumerate_device():
        tree.usb_device(VHCI + "/usb3/3-1", devnum=2, devpath="1", vendor=0x1209, product=0x0001,
                        interfaces=interfaces, strings={"serial": "SER-1"})

    timer = threading.Timer(delay, enumerate_device)
    timer.start()
    return timer


@pytest.fixture
def tree(tmp_path):
    t = FakeTree(tmp_path)
    t.dir("/sys/bus/usb/devices")
    return t


def test_polls_until_the_device_and_its_drivers_appear(tree):
    attach_later(tree, 0.3)
    result = wait_for_usb_device("3-1", timeout=5, sysfs=tree.sysfs())
    assert result.busid == "3-1" and result.method == "poll"
    assert "not the running kernel's sysfs" in result.reason or result.reason == "pyudev is not installed"
    assert 0.25 < result.elapsed < 5


def test_without_pyudev_it_polls_and_says_why(tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyudev", None)  # import fails
    attach_later(tree, 0.1)
    result = wait_for_usb_device("3-1", timeout=5, sysfs=tree.sysfs())
    assert (result.method, result.reason) == ("poll", "pyudev is not installed")


def test_a_predicate_finds_the_device_by_its_ids(tree):
    attach_later(tree, 0.1)
    result = wait_for_usb_device(lambda e: (e.id_vendor, e.id_product, e.serial) == (0x1209, 0x0001, "SER-1"),
                                 timeout=5, sysfs=tree.sysfs())
    assert result.busid == "3-1"
    assert usb_devices(tree.sysfs()) == [UsbEntry("3-1", 0x1209, 0x0001, "SER-1", "usb")]


def test_the_wait_is_bounded(tree):
    with pytest.raises(DeviceNotFound, match=r"not ready after 0.3 s: 3-1 does not exist") as err:
        wait_for_usb_device("3-1", timeout=0.3, sysfs=tree.sysfs())
    assert err.value.hint is None


def test_an_interface_without_driver_is_waited_for_unless_told_not_to(tree):
    attach_later(tree, 0, interfaces=ACM_UNBOUND).join()
    with pytest.raises(DeviceNotFound, match="no driver is bound to interface 3-1:1.0, 3-1:1.1") as err:
        wait_for_usb_device("3-1", timeout=0.2, sysfs=tree.sysfs())
    assert "module" in err.value.hint
    assert wait_for_usb_device("3-1", timeout=0.2, need_driver=False, sysfs=tree.sysfs()).busid == "3-1"


def test_readiness_of_the_captured_imported_devices(tmp_path):
    sysfs = capture_tree("02-attached.json", tmp_path).sysfs()
    assert not_ready(sysfs, "1-2") is None  # mass storage: usb-storage bound
    assert not_ready(sysfs, "1-1") == "no driver is bound to interface 1-1:1.0, 1-1:1.1"  # cdc_acm not loaded
    assert not_ready(sysfs, "1-1", need_driver=False) is None
    assert {e.busid: (e.id_vendor, e.serial) for e in usb_devices(sysfs)} == {
        "1-1": (0x1209, "SER-gdummy"), "1-2": (0x1D6B, "SER-gvudc"), "17-1": (0x1209, "SER-gdummy")}


class LiveRoot(Sysfs):
    """Looks like the running kernel's sysfs (root "/") but reads the fake tree."""

    def __init__(self, tree):
        super().__init__("/")
        self.tree = tree

    def real(self, path):
        return str(self.tree.host_path(path))


def stand_in_pyudev(on_poll):
    class Monitor:
        polls = []

        @classmethod
        def from_netlink(cls, context, source):
            assert source == "kernel"  # needs no udevd
            return cls()

        def filter_by(self, subsystem):
            assert subsystem == "usb"

        def start(self):
            pass

        def poll(self, timeout):
            self.polls.append(timeout)
            on_poll(len(self.polls))
            return object()

    return types.SimpleNamespace(Context=lambda: None, Monitor=Monitor)


def test_kernel_uevents_wake_the_wait(tree, monkeypatch):
    def on_poll(n):
        if n == 2:
            attach_later(tree, 0).join()

    pyudev = stand_in_pyudev(on_poll)
    monkeypatch.setitem(sys.modules, "pyudev", pyudev)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = wait_for_usb_device("3-1", timeout=5, sysfs=LiveRoot(tree))
    assert (result.busid, result.method, result.reason) == ("3-1", "uevent", "")
    assert len(pyudev.Monitor.polls) == 2 and result.elapsed < 1


def test_a_failing_uevent_socket_falls_back_to_polling(tree, monkeypatch):
    def on_poll(n):
        raise OSError(105, "No buffer space available")

    monkeypatch.setitem(sys.modules, "pyudev", stand_in_pyudev(on_poll))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    attach_later(tree, 0.1)
    result = wait_for_usb_device("3-1", timeout=5, sysfs=LiveRoot(tree))
    assert result.method == "poll" and "uevent socket failed" in result.reason


def test_uevents_need_root(tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyudev", stand_in_pyudev(lambda n: None))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert udev._uevent_monitor(LiveRoot(tree)) == (None, "not running as root")


@pytest.mark.parametrize("target, timeout", [("../1-1", 1), ("usb1", 1), (3, 1), ("1-1", 0), ("1-1", True),
                                             ("1-1", "5"), ("1-1", 10**6)])
def test_bad_arguments(target, timeout):
    with pytest.raises(InvalidArgument):
        wait_for_usb_device(target, timeout=timeout, sysfs=Sysfs("/nonexistent"))
