# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip_info: read-only facts from fake trees."""

from __future__ import annotations

import pytest
from ansible_collections.usbip.usbip.plugins.modules import usbip_info
from fake_usb import ACM, VHCI, FakeTree, standard_tree
from fake_vhci import FakeVhci

from usbip.device import Speed, UsbDevice
from usbip.net import client


@pytest.fixture
def tree(tmp_path):
    return standard_tree(tmp_path)


def test_devices_exports_and_vudc_instances(run_module, tree):
    tree.kernel_host_bind("17-1")
    result = run_module(usbip_info, {}, tree.sysfs, check_mode=True)
    assert result["changed"] is False and run_module.journal == []
    assert result["drivers"] == {"usbip_host": True, "vhci_hcd": False, "usbip_vudc": True, "gadget_configfs": False}
    by_busid = {d["busid"]: d for d in result["devices"]}
    assert sorted(by_busid) == ["1-1", "1-2", "17-1", "18-1", "18-1.4", "18-2"]
    assert result["exported"] == ["17-1"]
    assert by_busid["17-1"]["usbip_status"] == "available" and by_busid["17-1"]["bound"] is True
    assert by_busid["1-1"]["under_vhci"] is True and by_busid["1-1"]["exportable"] is False
    assert by_busid["18-1"]["is_hub"] is True
    assert by_busid["18-1.4"]["port_path"] == "0000:00:14.0-1.4" and by_busid["18-1.4"]["serial"]
    assert result["vudc"] == [
        {"busid": "usbip-vudc.0", "gadget": "gvudc", "exportable": True, "usbip_status": "available",
         "usbid": "1d6b:0104", "id_vendor": "1d6b", "id_product": "0104", "speed": "High Speed(480Mbps)"},
        {"busid": "usbip-vudc.1", "gadget": None, "exportable": False, "usbip_status": "available",
         "usbid": None, "id_vendor": None, "id_product": None},
    ]
    assert result["gadgets"] == [] and result["ports"] == []
    assert "sysfs_changes" not in result and "remote_devices" not in result


def test_gather_selects_sections(run_module, tree):
    result = run_module(usbip_info, {"gather": ["vudc"]}, tree.sysfs)
    assert "devices" not in result and "ports" not in result and len(result["vudc"]) == 2


def test_ports_with_their_remote_identity(run_module, tmp_path):
    fake = FakeVhci(tmp_path, controllers=1, hc_ports=2)
    fake.use(0, busid="1-1")
    fake.c_record(0, "10.0.0.5 3240 3-1.2\n")
    fake.use(3, busid="2-2", spd=5)  # attached by hand, without a record
    FakeTree(tmp_path).usb_device(VHCI + "/usb1/1-1", devnum=2, devpath="1", vendor=0x1209, product=0x0001,
                                  interfaces=ACM)
    result = run_module(usbip_info, {"gather": ["ports"]}, fake.sysfs)
    first, second = result["ports"]
    assert {k: first[k] for k in ("port", "hub", "status", "local_busid", "host", "remote_port", "remote_busid")} == {
        "port": 0, "hub": "hs", "status": "used", "local_busid": "1-1", "host": "10.0.0.5", "remote_port": 3240,
        "remote_busid": "3-1.2"}
    assert first["device"]["usbid"] == "1209:0001"
    assert second["port"] == 3 and second["host"] is None and second["device"] is None


def test_a_server_list(run_module, tree, monkeypatch):
    device = UsbDevice("/sys/devices/platform/usbip-vudc.0", "usbip-vudc.0", 0, 0, Speed.HIGH, 0x1d6b, 0x0104,
                       0x0601, 0, 0, 0, 0, 1, 0)
    calls = []
    monkeypatch.setattr(client, "list_devices", lambda host, port, timeout=10: calls.append((host, port)) or [device])
    result = run_module(usbip_info, {"gather": [], "server": "srv", "port": 3241}, tree.sysfs)
    assert calls == [("srv", 3241)]
    assert [(d["busid"], d["usbid"]) for d in result["remote_devices"]] == [("usbip-vudc.0", "1d6b:0104")]


def test_a_bad_port_fails(run_module, tree):
    result = run_module(usbip_info, {"server": "srv", "port": 65536}, tree.sysfs)
    assert result["failed"] and "invalid TCP port 65536" in result["msg"]
