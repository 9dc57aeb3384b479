# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbip release`` (end an import, keep the export) and ``attached_by`` in ``list -l|-d --json``."""

from __future__ import annotations

import json

import pytest

from usbip.daemon import ownership
from usbip.device import DeviceStatus
from usbip.sysfs.errors import DeviceNotFound, NotExportable
from usbip.sysfs.fs import Change
from usbip.sysfs.host import HostDriver
from usbip.sysfs.vudc import VudcDriver

DEV_17_1 = "/sys/devices/platform/dummy_hcd.0/usb17/17-1"
SOCKFD_17_1 = "/sys/bus/usb/devices/17-1/usbip_sockfd"
VUDC0 = "/sys/devices/platform/usbip-vudc.0"
HOLDER = {"host": "10.0.0.5", "port": 40512, "tls_name": "dns:client.example", "since": "2026-01-02T03:04:05Z"}


@pytest.fixture
def records(tmp_path, monkeypatch):
    path = tmp_path / "exports.json"
    monkeypatch.setenv(ownership.PATH_ENV, str(path))
    return path


def in_use(tree, busid="17-1"):
    tree.kernel_host_bind(busid)
    tree.attrs(tree.resolve(busid), usbip_status="2")


# -- the drivers --------------------------------------------------------------------------------
def test_host_release_writes_minus_one_to_the_devices_sockfd(tree):
    in_use(tree)
    host = HostDriver(tree.sysfs())
    host.release("17-1")
    assert host.sysfs.journal == [Change("write", SOCKFD_17_1, "-1")]


@pytest.mark.parametrize("prepare, error, why", [
    (lambda tree: None, DeviceNotFound, "device 17-1 is not exported (not bound to usbip-host)"),
    (lambda tree: tree.kernel_host_bind("17-1"), NotExportable, "device 17-1 is not in use (usbip_status 1)"),
])
def test_host_release_of_a_device_not_in_use_changes_nothing(tree, prepare, error, why):
    prepare(tree)
    host = HostDriver(tree.sysfs())
    with pytest.raises(error, match=r"^%s" % why.replace("(", r"\(").replace(")", r"\)")):
        host.release("17-1")
    assert host.sysfs.journal == []


def test_vudc_release_writes_minus_one_only_while_in_use(tree):
    vudc = VudcDriver(tree.sysfs())
    with pytest.raises(NotExportable, match="usbip-vudc.0 is not in use"):
        vudc.release("usbip-vudc.0")
    assert vudc.sysfs.journal == []
    tree.attrs(VUDC0, usbip_status="2")
    vudc.release("usbip-vudc.0")
    assert vudc.sysfs.journal == [Change("write", VUDC0 + "/usbip_sockfd", "-1")]
    with pytest.raises(DeviceNotFound):
        vudc.release("usbip-vudc.7")


# -- the command line ---------------------------------------------------------------------------
def test_usbip_release_ends_the_import(usbip, tree):
    in_use(tree)
    sysfs = tree.sysfs()
    result = usbip("release", "-b", "17-1", sysfs=sysfs)
    assert result.rc == 0 and "release device on busid 17-1: complete" in result.out + result.err
    assert sysfs.journal == [Change("write", SOCKFD_17_1, "-1")]


@pytest.mark.parametrize("argv, rc, why", [
    (["release", "-b", "17-1"], 1, "device 17-1 is not exported"),
    (["release", "-b", "usbip-vudc.0"], 1, "usbip-vudc.0 is not in use"),
    (["release", "-b", "../x"], 2, "invalid busid"),
    (["release"], 2, "-b/--busid"),
])
def test_usbip_release_refusals_are_one_line_and_change_nothing(usbip, tree, argv, rc, why):
    sysfs = tree.sysfs()
    result = usbip(*argv, sysfs=sysfs)
    assert result.rc == rc and why in result.err, result
    assert "Traceback" not in result.err
    assert sysfs.journal == []


def test_list_json_shows_the_holder_of_a_device_in_use_only(usbip, tree, records):
    in_use(tree)
    tree.kernel_host_bind("18-3")  # bound, available: a stale record of it is not shown
    records.write_text(json.dumps({"exports": {"17-1": HOLDER, "18-3": dict(HOLDER, tls_name=None),
                                               "usbip-vudc.0": dict(HOLDER, port=1)}}))
    devices = {d["busid"]: d for d in json.loads(usbip("list", "-l", "--json", sysfs=tree.sysfs()).out)}
    assert devices["17-1"]["attached_by"] == HOLDER
    assert devices["18-3"]["attached_by"] is None and devices["18-2"]["attached_by"] is None
    (gadget,) = json.loads(usbip("list", "-d", "--json", sysfs=tree.sysfs()).out)
    assert gadget["attached_by"] is None  # available
    tree.attrs(VUDC0, usbip_status="2")
    (gadget,) = json.loads(usbip("list", "-d", "--json", sysfs=tree.sysfs()).out)
    assert gadget["attached_by"] == dict(HOLDER, port=1)
    assert ownership.read(str(records))["17-1"].host == "10.0.0.5"
    assert DeviceStatus(int(tree.read(DEV_17_1 + "/usbip_status"))) is DeviceStatus.USED


def test_list_human_output_is_the_same_with_records(usbip, tree, records):
    in_use(tree)
    before = usbip("list", "-l", sysfs=tree.sysfs())
    records.write_text(json.dumps({"exports": {"17-1": HOLDER}}))
    after = usbip("list", "-l", sysfs=tree.sysfs())
    assert (after.rc, after.out, after.err) == (before.rc, before.out, before.err) and "10.0.0.5" not in after.out
    parsable = usbip("list", "-l", "-p", sysfs=tree.sysfs())
    assert "10.0.0.5" not in parsable.out and "attached" not in parsable.out


def test_list_json_without_readable_records_shows_null(usbip, tree, records):
    in_use(tree)
    records.write_text("{not json")
    devices = json.loads(usbip("list", "-l", "--json", sysfs=tree.sysfs()).out)
    assert all(d["attached_by"] is None for d in devices)
