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
    assert sorted(by_busid) == ["1-1", "1-2", "17-1", "18-1", "18-1.2", "18-1.3", "18-2", "18-3"]
    assert result["exported"] == ["17-1"]
    assert by_busid["17-1"]["usbip_status"] == "available" and by_busid["17-1"]["bound"] is True
    assert by_busid["1-1"]["under_vhci"] is True and by_busid["1-1"]["exportable"] is False
    assert by_busid["18-1"]["is_hub"] is True
    assert by_busid["18-1.2"]["port_path"] == "0000:00:03.0-1.2" and by_busid["18-1.2"]["serial"] == "LABDISK1"
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


# -- declared_attachments: what the usbip_client role detaches and reports missing --------------------------------
def _client(tmp_path, records):
    """vhci ports 0.. in use with the given records (None: attached by hand, no record); port 0's device enumerated."""
    fake = FakeVhci(tmp_path, controllers=1, hc_ports=4)
    for port, record in enumerate(records):
        fake.use(port, busid=fake.local_busid(port))
        if record is not None:
            fake.c_record(port, record + "\n")
    FakeTree(tmp_path).usb_device(VHCI + "/usb1/1-1", devnum=2, devpath="1", vendor=0x1209, product=0x0001,
                                  interfaces=ACM)
    return fake


def test_a_port_attached_through_an_alias_of_the_declared_server_counts_as_declared(run_module, tmp_path):
    """The role detaches exactly undeclared_ports: a port whose record names 127.0.0.1 for the declared localhost
    is the declared attachment (as usbip_attach and usbip-attachd see it), not an undeclared one."""
    fake = _client(tmp_path, ["127.0.0.1 3240 3-1.2", "10.0.0.9 3240 5-1", None])
    declared = [{"server": "localhost", "busid": "3-1.2"},
                {"server": "LOCALHOST", "port": 3240, "match": {"vendor": "1209", "product": 1}}]
    result = run_module(usbip_info, {"gather": [], "declared_attachments": declared}, fake.sysfs)
    assert result["declared_attachments"] == [
        {"attachment": "localhost:3240/3-1.2", "attached": True, "ports": [0], "local_busids": ["1-1"]},
        {"attachment": "LOCALHOST:3240/vendor=1209 product=1", "attached": True, "ports": [0],
         "local_busids": ["1-1"]},
    ]
    # the port from another server is undeclared; the one without a record names no server and is left alone
    assert [(p["port"], p["host"], p["remote_busid"]) for p in result["undeclared_ports"]] == [(1, "10.0.0.9", "5-1")]
    assert "ports" not in result and run_module.journal == []


def test_a_device_still_enumerating_satisfies_every_match_for_its_server(run_module, tmp_path):
    fake = _client(tmp_path, ["127.0.0.1 3240 3-1.2", "127.0.0.1 3240 3-1.3", "127.0.0.1 3241 usbip-vudc.0"])
    declared = [{"server": "127.0.0.1", "match": {"vendor": "abcd"}},      # port 0 is 1209:0001: no; port 1: unknown
                {"server": "127.0.0.1", "busid": "3-1.9"},                 # a busid is known at once: no guess
                {"server": "localhost", "tls": True, "server_name": "srv", "busid": "usbip-vudc.0"}]  # 3241 by default
    result = run_module(usbip_info, {"gather": [], "declared_attachments": declared}, fake.sysfs)
    assert [(d["attachment"], d["ports"], d["local_busids"]) for d in result["declared_attachments"]] == [
        ("127.0.0.1:3240/vendor=abcd", [1], ["1-2"]),
        ("127.0.0.1:3240/3-1.9", [], []),
        ("localhost:3241/usbip-vudc.0", [2], ["1-3"]),
    ]
    assert [d["attached"] for d in result["declared_attachments"]] == [True, False, True]
    assert [p["port"] for p in result["undeclared_ports"]] == [0]
    assert result["undeclared_ports"][0]["device"]["usbid"] == "1209:0001"


def test_declarations_without_vhci_are_all_missing(run_module, tree):
    result = run_module(usbip_info, {"gather": [], "declared_attachments": [{"server": "srv", "busid": "1-1"}]},
                        tree.sysfs)
    assert result["declared_attachments"] == [
        {"attachment": "srv:3240/1-1", "attached": False, "ports": [], "local_busids": []}]
    assert result["undeclared_ports"] == []


@pytest.mark.parametrize("declaration, error", [
    ({"server": "srv", "busid": "1-1", "match": {"vendor": "1209"}}, "mutually exclusive"),
    ({"server": "srv"}, "one of the following is required"),
    ({"server": "srv", "match": {"vendor": "12345"}}, "invalid vendor ID"),
])
def test_a_bad_declaration_fails(run_module, tree, declaration, error):
    result = run_module(usbip_info, {"gather": [], "declared_attachments": [declaration]}, tree.sysfs)
    assert result["failed"] and error in result["msg"]


# -- export_rules: what the usbip_server role binds, unbinds and reports missing ------------------------------------
def test_export_rules_accept_every_exportable_device_they_match(run_module, tree):
    tree.kernel_host_bind("17-1")
    tree.kernel_host_bind("18-2")
    rules = [
        {"match": {"vendor": "0x1209"}},                       # 17-1; 1-1 is 1209 too but imported through vhci
        {"match": {"vendor": 0x1209, "product": "0001"}},      # an integer ID, labelled as given
        {"busid": "18-1.2"},
        {"match": {"port_path": "0000:00:03.0-1.2", "serial": "LABDISK1"}},
        {"match": {"port_path": "1"}},                         # devpath 1 on every bus: 17-1; the hub 18-1 is not
        {"match": {"vendor": "0409"}},                         # the hub: never exportable
        {"busid": "1-2"},                                      # imported through vhci: never exportable
    ]
    result = run_module(usbip_info, {"gather": [], "export_rules": rules}, tree.sysfs)
    assert result["export_rules"] == [
        {"rule": "vendor=0x1209", "busids": ["17-1"]},
        {"rule": "vendor=4617 product=0001", "busids": ["17-1"]},
        {"rule": "busid=18-1.2", "busids": ["18-1.2"]},
        {"rule": "port_path=0000:00:03.0-1.2 serial=LABDISK1", "busids": ["18-1.2"]},
        {"rule": "port_path=1", "busids": ["17-1"]},
        {"rule": "vendor=0409", "busids": []},
        {"rule": "busid=1-2", "busids": []},
    ]
    assert result["undeclared_exports"] == ["18-2"]
    assert "devices" not in result and run_module.journal == []


def test_no_export_rules_leave_every_bound_device_undeclared(run_module, tree):
    tree.kernel_host_bind("17-1")
    result = run_module(usbip_info, {"gather": [], "export_rules": []}, tree.sysfs)
    assert result["export_rules"] == [] and result["undeclared_exports"] == ["17-1"]


def test_a_bad_export_rule_fails(run_module, tree):
    result = run_module(usbip_info, {"gather": [], "export_rules": [{"match": {"port_path": "x-0"}}]}, tree.sysfs)
    assert result["failed"] and "invalid port_path" in result["msg"]
