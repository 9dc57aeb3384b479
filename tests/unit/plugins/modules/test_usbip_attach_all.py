# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip_attach with all: true and remote port paths; usbip_info's view of such declarations (what the client
role keeps and what it detaches)."""

from __future__ import annotations

import pytest
from ansible_collections.usbip.usbip.plugins.modules import usbip_attach, usbip_info
from fake_usb import ACM, FakeTree
from fake_vhci import RECORDS, VHCI, FakeVhci

from usbip import attachments
from usbip.device import Speed, UsbDevice
from usbip.net import client

XHCI = "/sys/devices/pci0000:00/0000:00:03.0/usb17"
EHCI = "/sys/devices/pci0000:00/0000:00:04.0/usb1"


def remote(path, busid, vendor=0x46F4, product=0x0001, serial="S"):
    device = UsbDevice(path=path, busid=busid, busnum=int(busid.split("-")[0]), devnum=2, speed=Speed.HIGH,
                       id_vendor=vendor, id_product=product, bcd_device=0x0100, device_class=0, device_subclass=0,
                       device_protocol=0, configuration_value=1, num_configurations=1, num_interfaces=0)
    return device, serial


DISK1 = remote(XHCI + "/17-1/17-1.2", "17-1.2", serial="LABDISK1")   # behind the hub on xHCI
DISK2 = remote(EHCI + "/1-1", "1-1", serial="LABDISK2")              # the same model on EHCI
DISK3 = remote(XHCI + "/17-3", "17-3", serial="LABDISK3")
KEYBOARD = remote(XHCI + "/17-2", "17-2", 0x0627, 0x0001, "LABKBD1")


class Server:
    """The network as the module sees it: the device list, and an import that enumerates the device locally."""

    def __init__(self, fake, offered):
        self.fake = fake
        self.offered = list(offered)
        self.lists = 0
        self.imports = []

    def list_devices(self, host, port, timeout=10.0, tls=None):
        self.lists += 1
        return [device for device, _serial in self.offered]

    def attach(self, host, port, busid, vhci, timeout=10.0, tls=None):
        device, serial = next(entry for entry in self.offered if entry[0].busid == busid)
        self.imports.append(busid)
        vport = vhci.attach(7, device.devid, device.speed, record=(host, port, busid))
        local = self.fake.local_busid(vport)
        FakeTree(self.fake.root).usb_device("%s/usb%s/%s" % (VHCI, local.split("-")[0], local), devnum=2,
                                            devpath=local.split("-")[1], vendor=device.id_vendor,
                                            product=device.id_product, interfaces=ACM, strings={"serial": serial})
        self.offered.remove((device, serial))  # in use now: no longer listed
        return attachments.Attached(vport, device, host, port, busid)


@pytest.fixture
def fake(tmp_path):
    return FakeVhci(tmp_path, controllers=1, hc_ports=4)


@pytest.fixture
def server(fake, monkeypatch):
    s = Server(fake, [DISK1, KEYBOARD, DISK2])
    monkeypatch.setattr(client, "list_devices", s.list_devices)
    monkeypatch.setattr(attachments, "attach", s.attach)
    return s


def run(run_module, fake, args, **kw):
    args = dict({"server": "127.0.0.1", "wait_timeout": 2}, **args)
    return run_module(usbip_attach, args, fake.sysfs, **kw)


def records(fake):
    return {int(p.name[4:]): p.read_text().split()[2] for p in sorted(fake.host(RECORDS).glob("port*"))}


DISKS = {"vendor": "46f4", "product": "0001"}


# -- all: true -----------------------------------------------------------------------------------------------------
def test_all_attaches_every_matching_device_and_returns_one_result_each(run_module, fake, server):
    result = run(run_module, fake, {"all": True, "match": DISKS}, diff=True)
    assert result["changed"] is True and server.imports == ["17-1.2", "1-1"]
    assert records(fake) == {0: "17-1.2", 1: "1-1"}
    assert [(a["changed"], a["port"], a["local_busid"], a["remote"]["busid"], a["device"]["serial"])
            for a in result["attached"]] == [(True, 0, "1-1", "17-1.2", "LABDISK1"),
                                             (True, 1, "1-2", "1-1", "LABDISK2")]
    first = result["attached"][0]
    assert first["remote"]["device"]["port_path"] == "0000:00:03.0-1.2"
    assert set(first) == {"changed", "port", "local_busid", "remote", "device"}  # the keys of a single run
    assert (result["port"], result["local_busid"], result["device"]) == (None, None, None)
    assert result["remote"] == {"host": "127.0.0.1", "port": 3240}
    assert result["diff"]["after"] == ("port 0 (hs): 127.0.0.1:3240/17-1.2 -> 1-1\n"
                                       "port 1 (hs): 127.0.0.1:3240/1-1 -> 1-2\n")

    again = run(run_module, fake, {"all": True, "match": DISKS})
    assert again["changed"] is False and server.imports == ["17-1.2", "1-1"] and run_module.journal == []
    assert [(a["changed"], a["port"], a["remote"]["busid"]) for a in again["attached"]] == [
        (False, 0, "17-1.2"), (False, 1, "1-1")]

    server.offered.append(DISK3)  # appeared on the server since
    third = run(run_module, fake, {"all": True, "match": DISKS})
    assert third["changed"] is True and server.imports == ["17-1.2", "1-1", "17-3"]
    assert [(a["changed"], a["remote"]["busid"]) for a in third["attached"]] == [
        (False, "17-1.2"), (False, "1-1"), (True, "17-3")]


def test_all_in_check_mode_lists_every_device_it_would_attach(run_module, fake, server):
    result = run(run_module, fake, {"all": True, "match": DISKS}, check_mode=True, diff=True)
    assert result["changed"] is True and server.imports == [] and records(fake) == {}
    assert [c["value"] for c in result["sysfs_changes"]] == ["127.0.0.1:3240/17-1.2", "127.0.0.1:3240/1-1"]
    assert result["diff"]["before"] == "(no vhci port in use)\n"
    assert result["diff"]["after"] == ("port ? (new): 127.0.0.1:3240/17-1.2 -> (would attach)\n"
                                       "port ? (new): 127.0.0.1:3240/1-1 -> (would attach)\n")
    assert [(a["changed"], a["port"], a["remote"]["busid"]) for a in result["attached"]] == [
        (True, None, "17-1.2"), (True, None, "1-1")]


def test_all_without_a_match_takes_every_device(run_module, fake, server):
    result = run(run_module, fake, {"all": True})
    assert server.imports == ["17-1.2", "17-2", "1-1"] and len(result["attached"]) == 3
    absent = run(run_module, fake, {"all": True, "state": "absent"})
    assert absent["changed"] is True and sorted(d["remote_busid"] for d in absent["detached"]) == [
        "1-1", "17-1.2", "17-2"]
    assert records(fake) == {}


def test_all_with_nothing_to_take_changes_nothing(run_module, fake, server):
    result = run(run_module, fake, {"all": True, "match": {"vendor": "ffff"}})
    assert result["changed"] is False and result["attached"] == [] and server.lists == 1


def test_all_absent_with_a_match_detaches_only_what_it_takes(run_module, fake, server):
    run(run_module, fake, {"all": True})
    result = run(run_module, fake, {"all": True, "match": DISKS, "state": "absent"})
    assert sorted(d["remote_busid"] for d in result["detached"]) == ["1-1", "17-1.2"]
    assert list(records(fake).values()) == ["17-2"]


@pytest.mark.parametrize("args, error", [
    ({"all": True, "busid": "1-1"}, "all: true attaches every device a match takes"),
    ({"all": False}, "one of the following is required: busid, match"),
    ({"all": True, "match": {"vendor": "46f4", "serial": "LABDISK1"}}, "Unsupported parameters"),
    ({"match": {"port_path": "a/b-1"}}, "invalid port_path 'a/b-1'"),
])
def test_bad_pool_arguments_fail_before_the_server_is_asked(run_module, fake, server, args, error):
    result = run(run_module, fake, args)
    assert result["failed"] and error in result["msg"], result["msg"]
    assert server.lists == 0 and server.imports == [] and run_module.journal == []


def test_without_all_the_return_keys_are_those_of_one_device(run_module, fake, server):
    result = run(run_module, fake, {"match": {"vendor": "0627"}})
    assert "attached" not in result and result["port"] == 0 and result["remote"]["busid"] == "17-2"


# -- port_path: two identical devices on one server -----------------------------------------------------------------
def test_identical_devices_are_told_apart_by_port_path(run_module, fake, server):
    ambiguous = run(run_module, fake, {"match": DISKS})
    assert ambiguous["failed"] and ambiguous["error"] == "AmbiguousMatch"
    assert "2 devices on 127.0.0.1:3240 match vendor=46f4 product=0001: 17-1.2 (46f4:0001); 1-1 (46f4:0001)" \
        in ambiguous["msg"]
    ehci = run(run_module, fake, {"match": dict(DISKS, port_path="0000:00:04.0-1")})
    assert ehci["changed"] is True and server.imports == ["1-1"] and ehci["device"]["serial"] == "LABDISK2"
    hub = run(run_module, fake, {"match": dict(DISKS, port_path="1.2")})
    assert hub["changed"] is True and server.imports == ["1-1", "17-1.2"] and hub["device"]["serial"] == "LABDISK1"
    # each is present now by its port path, and the server is not asked again
    lists = server.lists
    for port_path, busid in (("0000:00:04.0-1", "1-1"), ("1.2", "17-1.2")):
        again = run(run_module, fake, {"match": dict(DISKS, port_path=port_path)})
        assert again["changed"] is False and again["remote"]["busid"] == busid
    assert server.lists == lists


def test_a_port_with_no_device_names_the_candidates_port_paths(run_module, fake, server):
    result = run(run_module, fake, {"match": {"port_path": "0000:00:03.0-1.4"}})
    assert result["failed"] and result["error"] == "NoMatch"
    assert result["msg"] == ("no device on 127.0.0.1:3240 matches port_path=0000:00:03.0-1.4; candidates: "
                             "17-1.2 (46f4:0001 port_path=0000:00:03.0-1.2); 17-2 (0627:0001 port_path=0000:00:03.0-2);"
                             " 1-1 (46f4:0001 port_path=0000:00:04.0-1)")


# -- usbip_info: what the role counts as declared --------------------------------------------------------------------
def info(run_module, fake, declared):
    return run_module(usbip_info, {"gather": [], "declared_attachments": declared}, fake.sysfs)


def test_ports_of_an_all_declaration_are_all_declared(run_module, fake, server):
    run(run_module, fake, {"all": True})  # both disks and the keyboard
    pool = {"server": "127.0.0.1", "all": True, "match": DISKS}
    result = info(run_module, fake, [pool])
    assert result["declared_attachments"] == [
        {"attachment": "127.0.0.1:3240/all vendor=46f4 product=0001", "attached": True, "ports": [0, 2],
         "local_busids": ["1-1", "1-3"]}]
    assert [p["remote_busid"] for p in result["undeclared_ports"]] == ["17-2"]  # the keyboard is no disk
    everything = info(run_module, fake, [{"server": "localhost", "all": True}])
    assert everything["declared_attachments"][0]["attachment"] == "localhost:3240/all"
    assert everything["declared_attachments"][0]["ports"] == [0, 1, 2] and everything["undeclared_ports"] == []


def test_a_port_path_declaration_keeps_its_own_disk_only(run_module, fake, server):
    run(run_module, fake, {"all": True, "match": DISKS})
    result = info(run_module, fake, [{"server": "127.0.0.1", "match": dict(DISKS, port_path="1.2")}])
    assert result["declared_attachments"][0]["ports"] == [0]
    assert [p["remote_busid"] for p in result["undeclared_ports"]] == ["1-1"]


@pytest.mark.parametrize("declaration, error", [
    ({"server": "srv", "all": True, "busid": "1-1"}, "not with busid 1-1"),
    ({"server": "srv", "all": False}, "one of the following is required"),
])
def test_bad_pool_declarations_fail_in_usbip_info(run_module, fake, declaration, error):
    result = info(run_module, fake, [declaration])
    assert result["failed"] and error in result["msg"]
