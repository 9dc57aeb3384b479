# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbip bind`` / ``unbind``: the C messages, idempotence, and nothing touched on bad input."""

from __future__ import annotations

import errno

import pytest
from fake_usb import BAD_BUSIDS, BIND_17_1, HOST, UNBIND_17_1


def test_bind_writes_the_c_sequence_and_reports_completion(usbip, tree):
    sysfs = tree.sysfs()
    result = usbip("bind", "-b", "17-1", sysfs=sysfs)
    assert (result.rc, result.out) == (0, "")
    assert result.err_lines == ["usbip: info: bind device on busid 17-1: complete"]
    assert sysfs.journal == BIND_17_1


def test_bind_of_a_bound_device_succeeds_without_change(usbip, tree):
    tree.kernel_host_bind("17-1")
    sysfs = tree.sysfs()
    result = usbip("bind", "--busid", "17-1", sysfs=sysfs)
    assert (result.rc, result.out) == (0, "")
    assert result.err_lines == ["usbip: info: device on busid 17-1 is already bound to usbip-host; nothing to do"]
    assert sysfs.journal == []


def test_unbind_writes_the_c_sequence_and_reports_completion(usbip, tree):
    tree.kernel_host_bind("17-1")
    sysfs = tree.sysfs()
    result = usbip("unbind", "-b", "17-1", sysfs=sysfs)
    assert (result.rc, result.out) == (0, "")
    assert result.err_lines == ["usbip: info: unbind device on busid 17-1: complete"]
    assert sysfs.journal == UNBIND_17_1


def test_unbind_of_an_unbound_device_succeeds_without_change(usbip, tree):
    sysfs = tree.sysfs()
    result = usbip("unbind", "-b", "17-1", sysfs=sysfs)
    assert (result.rc, result.out) == (0, "")
    assert result.err_lines == ["usbip: info: device on busid 17-1 is not bound to usbip-host; nothing to do"]
    assert sysfs.journal == []


@pytest.mark.parametrize("command", ["bind", "unbind"])
def test_missing_device_gets_the_c_message(usbip, static_tree, command):
    sysfs = static_tree.sysfs()
    result = usbip(command, "-b", "17-9", sysfs=sysfs)
    assert (result.rc, result.out) == (1, "")
    assert result.err_lines == ["usbip: error: device with the specified bus ID does not exist: 17-9"
                                " ('usbip list -l' shows the local devices)"]
    assert sysfs.journal == []


def test_bind_refuses_an_imported_device(usbip, static_tree):
    sysfs = static_tree.sysfs()
    result = usbip("bind", "-b", "1-1", sysfs=sysfs)
    assert (result.rc, result.out) == (1, "")
    assert len(result.err_lines) == 1
    assert result.err.startswith("usbip: error: bind loop detected")
    assert sysfs.journal == []


def test_bind_refuses_a_hub(usbip, static_tree):
    sysfs = static_tree.sysfs()
    result = usbip("bind", "-b", "18-1", sysfs=sysfs)
    assert (result.rc, result.out) == (1, "")
    assert result.err_lines == ["usbip: error: device 18-1 is a hub; hubs cannot be exported"]
    assert sysfs.journal == []


def test_bind_without_usbip_host_names_the_module(usbip, tree):
    tree.remove(HOST)
    sysfs = tree.sysfs()
    result = usbip("bind", "-b", "17-1", sysfs=sysfs)
    assert result.rc == 1
    assert result.err_lines == ["usbip: error: the usbip-host driver is not loaded (modprobe usbip-host)"]
    assert sysfs.journal == []


def test_kernel_refusal_is_one_line_without_traceback(usbip, tree):
    tree.errors[HOST + "/bind"] = errno.EACCES
    result = usbip("bind", "-b", "17-1", sysfs=tree.sysfs())
    assert (result.rc, result.out) == (1, "")
    assert result.err_lines == [
        "usbip: error: cannot write '17-1' to /sys/bus/usb/drivers/usbip-host/bind: Permission denied (run as root)"]


@pytest.mark.parametrize("command", ["bind", "unbind"])
@pytest.mark.parametrize("busid", BAD_BUSIDS + ["usbip-vudc.0"])
def test_bad_busids_are_refused_before_any_sysfs_access(usbip, static_tree, command, busid):
    sysfs = static_tree.sysfs()
    result = usbip(command, "-b", busid, sysfs=sysfs)
    assert (result.rc, result.out) == (2, "")
    assert len(result.err_lines) == 1, result.err
    assert result.err.startswith("usbip: error: argument -b/--busid: ")
    assert sysfs.touched == [] and sysfs.journal == []


@pytest.mark.parametrize("argv", [("bind",), ("unbind",), ("bind", "-b"), ("bind", "17-1")])
def test_missing_busid_is_a_usage_error(usbip, static_tree, argv):
    sysfs = static_tree.sysfs()
    result = usbip(*argv, sysfs=sysfs)
    assert (result.rc, result.out) == (2, "")
    assert len(result.err_lines) == 1 and result.err.startswith("usbip: error: ")
    assert sysfs.touched == []
