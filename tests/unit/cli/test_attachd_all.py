# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip-attachd with shared pools: ``all: true`` declarations and remote ``port_path`` matches.

The supervisor runs with its real I/O (``HostIo``) against a fake vhci and a
fake server that lists what it offers and, as usbipd does, stops listing a
device once it is imported.
"""

from __future__ import annotations

import contextlib
import logging
import socket

import pytest
from fake_vhci import RECORDS, FakeVhci

from usbip.cli.attachd import Declared, HostIo, Supervisor, Sweep, parse_config
from usbip.device import Speed, UsbDevice
from usbip.errors import UsbipError
from usbip.matching import Match
from usbip.net import client
from usbip.protocol import Status

XHCI = "/sys/devices/pci0000:00/0000:00:03.0/usb17"
EHCI = "/sys/devices/pci0000:00/0000:00:04.0/usb1"


def record(path: str, busid: str, vendor: int = 0x46F4, product: int = 0x0001) -> UsbDevice:
    busnum = int(busid.split("-")[0]) if busid[0].isdigit() else 0
    return UsbDevice(path=path, busid=busid, busnum=busnum, devnum=2, speed=Speed.HIGH, id_vendor=vendor,
                     id_product=product, bcd_device=0x100, device_class=0, device_subclass=0, device_protocol=0,
                     configuration_value=1, num_configurations=1, num_interfaces=1)


DISK1 = record(XHCI + "/17-1/17-1.2", "17-1.2")             # behind the hub on xHCI
DISK2 = record(EHCI + "/1-1", "1-1")                         # the same model on EHCI
DISK3 = record(XHCI + "/17-3", "17-3")                       # plugged in later
KEYBOARD = record(XHCI + "/17-2", "17-2", 0x0627, 0x0001)
GADGET = record("/sys/devices/platform/usbip-vudc.0", "usbip-vudc.0", 0x1209, 0x0001)


class Server:
    """What ``client`` would reach on the network: a device list, imports that take devices off it."""

    def __init__(self, monkeypatch, offered):
        self.offered = list(offered)
        self.lists = 0
        self.imports = []
        self.refuse = set()
        self.sockets = []
        monkeypatch.setattr(client, "list_devices", self.list_devices)
        monkeypatch.setattr(client, "open_import", self.open_import)

    def list_devices(self, host, port, timeout=None, tls=None):
        self.lists += 1
        return list(self.offered)

    def open_import(self, host, port, timeout=None, tls=None):
        server = self

        class Connection:
            def import_device(self, busid):
                if busid in server.refuse:
                    raise client.ImportRefused(busid, Status.DEV_BUSY)
                device = next(d for d in server.offered if d.busid == busid)
                server.offered.remove(device)
                server.imports.append(busid)
                ours, theirs = socket.socketpair()
                server.sockets.append(theirs)
                return ours, device

            def close(self):
                pass

        return Connection()

    def close(self):
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def vhci(tmp_path):
    return FakeVhci(tmp_path, controllers=1, hc_ports=8)


@pytest.fixture
def server(monkeypatch):
    s = Server(monkeypatch, [DISK1, KEYBOARD, DISK2])
    yield s
    s.close()


def records(fake):
    """server busid of each vhci port's record, by port."""
    found = {}
    for path in sorted(fake.host(RECORDS).glob("port*")):
        found[int(path.name[4:])] = path.read_text().split()[2]
    return found


def supervisor(fake, declared):
    io = HostIo(fake.sysfs(), {}, 5.0)
    return Supervisor(declared, io.present, io.attach), io


# -- attachments.yml ---------------------------------------------------------------------------------------------
def test_all_and_port_path_in_attachments_yml():
    config = parse_config({"attachments": [
        {"server": "10.0.0.1", "all": True, "match": {"vendor": "46f4", "product": "0001"}},
        {"server": "10.0.0.1", "all": True},
        {"server": "10.0.0.1", "match": {"vendor": "46f4", "port_path": "0000:00:03.0-1.2"}},
        {"server": "10.0.0.1", "busid": "1-1", "all": False},
    ]})
    pool, everything, by_port, plain = config.attachments
    assert (pool.all_devices, pool.match) == (True, Match(vendor=0x46F4, product=0x0001))
    assert (everything.all_devices, everything.match, everything.busid) == (True, None, None)
    assert by_port.match == Match(vendor=0x46F4, port_path="0000:00:03.0-1.2") and not by_port.all_devices
    assert not plain.all_devices
    assert [str(d) for d in config.attachments] == [
        "10.0.0.1:3240/all vendor=46f4 product=0001", "10.0.0.1:3240/all",
        "10.0.0.1:3240/vendor=46f4 port_path=0000:00:03.0-1.2", "10.0.0.1:3240/1-1"]


@pytest.mark.parametrize("entry, message", [
    ({"server": "x", "all": True, "busid": "1-1"}, "attachments[0].all: true declares every device a match takes"),
    ({"server": "x", "all": "yes"}, "attachments[0].all: expected true or false, got 'yes'"),
    ({"server": "x", "all": False}, "attachments[0]: expected exactly one of busid and match"),
    ({"server": "x"}, "attachments[0]: expected exactly one of busid and match"),
    ({"server": "x", "all": True, "match": {"serial": "A"}},
     "attachments[0].match.serial: a server's device list carries no serial number; match a remote device by "
     "vendor, product, port_path"),
    ({"server": "x", "match": {"port_path": "a/b-1"}}, "attachments[0].match.port_path: invalid port_path"),
    ({"server": "x", "all": True, "match": {}}, "attachments[0].match: expected at least one of"),
])
def test_bad_pool_declarations_are_one_line_naming_the_key(entry, message):
    with pytest.raises(UsbipError) as caught:
        parse_config({"attachments": [entry]})
    assert str(caught.value).startswith(message), str(caught.value)


# -- all: true -----------------------------------------------------------------------------------------------------
def test_all_with_a_match_of_two_devices_attaches_both_and_a_third_on_a_later_pass(vhci, server, caplog):
    caplog.set_level(logging.INFO, logger="usbip-attachd")
    pool = Declared("10.0.0.1", 3240, match=Match(vendor=0x46F4, product=0x0001), all_devices=True)
    sup, io = supervisor(vhci, [pool])
    assert sup.step() is True
    assert server.imports == ["17-1.2", "1-1"] and server.offered == [KEYBOARD]
    assert sorted(records(vhci).values()) == ["1-1", "17-1.2"]
    lines = [r.getMessage() for r in caplog.records if r.name == "usbip-attachd"]
    assert lines == ["10.0.0.1:3240/all vendor=46f4 product=0001: attempt 1: attached 17-1.2 on port 0",
                     "10.0.0.1:3240/all vendor=46f4 product=0001: attempt 1: attached 1-1 on port 1"]

    caplog.clear()
    assert sup.step() is True  # nothing new: the server is listed again, nothing imported, nothing logged
    assert server.lists == 2 and len(server.imports) == 2 and caplog.records == []

    server.offered.append(DISK3)  # plugged into the server and bound there after the supervisor started
    assert sup.step() is True
    assert server.imports == ["17-1.2", "1-1", "17-3"] and server.offered == [KEYBOARD]
    assert sorted(records(vhci).values()) == ["1-1", "17-1.2", "17-3"]
    assert [r.getMessage() for r in caplog.records] == [
        "10.0.0.1:3240/all vendor=46f4 product=0001: attempt 1: attached 17-3 on port 2"]
    assert sup.attempts == {} and sup.delay == {}


def test_all_without_a_match_takes_every_device_the_server_offers(vhci, server, monkeypatch):
    server.offered.append(GADGET)
    sup, _io = supervisor(vhci, [Declared("10.0.0.1", 3240, all_devices=True)])
    assert sup.step() is True
    assert server.imports == ["17-1.2", "17-2", "1-1", "usbip-vudc.0"] and server.offered == []
    assert sorted(records(vhci).values()) == ["1-1", "17-1.2", "17-2", "usbip-vudc.0"]


def test_a_pool_device_that_fails_backs_off_the_pool_after_attaching_the_others(vhci, server, caplog):
    server.refuse.add("17-1.2")
    clock = [100.0]
    io = HostIo(vhci.sysfs(), {}, 5.0)
    pool = Declared("s", 3240, match=Match(vendor=0x46F4), all_devices=True)
    sup = Supervisor([pool], io.present, io.attach, initial=1, maximum=4, clock=lambda: clock[0])
    caplog.set_level(logging.INFO, logger="usbip-attachd")
    assert sup.step() is False
    assert server.imports == ["1-1"]  # the other one is attached all the same
    assert "s:3240/all vendor=46f4: attempt 1: attached 1-1 on port 0" in caplog.text
    assert ("s:3240/all vendor=46f4: attempt 1 failed: 17-1.2: Attach Request for 17-1.2 failed - %s; next in 1 s"
            % Status.DEV_BUSY.description) in caplog.text
    lists = server.lists
    assert sup.step() is False and server.lists == lists  # within its backoff: the server is not asked
    clock[0] += 1
    server.refuse.clear()
    assert sup.step() is True
    assert server.imports == ["1-1", "17-1.2"]
    assert sup.attempts == {} and sup.delay == {} and sup.next_try == {}


def test_a_device_attached_meanwhile_by_the_module_is_not_imported_again(vhci, server, monkeypatch):
    """Under the attach lock each device is looked for again by its busid."""
    from usbip import attachments

    real_find = attachments.find

    def find(vhci_driver, host, port, busid=None, match=None):
        if busid == "1-1":  # the module attached it between the list and the lock
            return ["attached by usbip_attach"]
        return real_find(vhci_driver, host, port, busid, match)

    monkeypatch.setattr(attachments, "find", find)
    pool = Declared("s", 3240, match=Match(vendor=0x46F4), all_devices=True)
    outcome = HostIo(vhci.sysfs(), {}, 5.0).attach(pool, lambda wait: contextlib.nullcontext())
    assert outcome == Sweep(attached=(("17-1.2", 0),))
    assert server.imports == ["17-1.2"]


def test_an_unreachable_pool_server_is_a_failed_attempt(vhci, monkeypatch, caplog):
    def refuse(host, port, timeout=None, tls=None):
        raise client.ConnectError("cannot connect to %s:%d: Connection refused" % (host, port))

    monkeypatch.setattr(client, "list_devices", refuse)
    sup, _io = supervisor(vhci, [Declared("s", 3240, all_devices=True)])
    assert sup.step() is False
    assert "s:3240/all: attempt 1 failed: cannot connect to s:3240: Connection refused; next in 1 s" in caplog.text


def test_a_pool_is_never_asked_whether_it_is_present():
    asked = []
    pool = Declared("s", 3240, all_devices=True)
    sup = Supervisor([pool], lambda d: asked.append(d) or True, lambda d, hold: Sweep())
    assert sup.step() is True and asked == []


def test_a_pool_sweep_that_was_postponed_is_tried_on_the_next_pass_uncounted(caplog):
    caplog.set_level(logging.INFO, logger="usbip-attachd")
    pool = Declared("s", 3240, all_devices=True)
    sup = Supervisor([pool], lambda d: False, lambda d, hold: Sweep(attached=(("1-1", 0),), postponed="lock busy"))
    assert sup.step() is False
    assert [r.getMessage() for r in caplog.records] == [
        "s:3240/all: attempt 1: attached 1-1 on port 0", "s:3240/all: attempt postponed: lock busy"]
    assert sup.attempts == {} and sup.next_try == {}


# -- port_path: two identical devices on one server ---------------------------------------------------------------
def test_identical_devices_are_told_apart_by_port_path(vhci, server):
    by_port = Declared("10.0.0.1", 3240, match=Match(vendor=0x46F4, product=0x0001, port_path="0000:00:04.0-1"))
    sup, io = supervisor(vhci, [by_port])
    assert sup.step() is True
    assert server.imports == ["1-1"] and records(vhci) == {0: "1-1"}
    assert io.present(by_port)
    assert sup.step() is True and server.imports == ["1-1"]  # present: not even listed again
    # the same model behind the hub, by its bare devpath
    behind_hub = Declared("10.0.0.1", 3240, match=Match(vendor=0x46F4, port_path="1.2"))
    sup.declare([by_port, behind_hub], io.present, io.attach, 1.0, 8.0)
    assert sup.step() is True
    assert server.imports == ["1-1", "17-1.2"] and records(vhci) == {0: "1-1", 1: "17-1.2"}


def test_a_port_path_match_is_ambiguous_no_more_but_a_missing_port_names_the_candidates(vhci, server, caplog):
    sup, _io = supervisor(vhci, [Declared("s", 3240, match=Match(vendor=0x46F4))])
    assert sup.step() is False
    assert "2 devices on s:3240 match vendor=46f4: 17-1.2 (46f4:0001); 1-1 (46f4:0001)" in caplog.text
    sup, _io = supervisor(vhci, [Declared("s", 3240, match=Match(port_path="0000:00:03.0-1.4"))])
    assert sup.step() is False
    assert ("no device on s:3240 matches port_path=0000:00:03.0-1.4; candidates: 17-1.2 (46f4:0001 "
            "port_path=0000:00:03.0-1.2); 17-2 (0627:0001 port_path=0000:00:03.0-2); 1-1 (46f4:0001 "
            "port_path=0000:00:04.0-1)") in caplog.text
    assert server.imports == []


def test_a_restarted_supervisor_finds_a_port_path_attachment_by_the_busid_the_port_records(vhci, server):
    """After a restart nothing is resolved yet: the port's record (server busid 1-1) and the local device's IDs
    say the EHCI disk is there; the hub's port 1.2 is not, so that one is attached."""
    from fake_usb import ACM, FakeTree

    from usbip.sysfs.vhci import VHCI

    vhci.use(0, busid="2-1")
    vhci.c_record(0, "10.0.0.1 3240 1-1\n")
    FakeTree(vhci.root).usb_device(VHCI + "/usb2/2-1", devnum=2, devpath="1", vendor=0x46F4, product=0x0001,
                                   interfaces=ACM)
    server.offered.remove(DISK2)  # imported by this client before the restart
    ehci = Declared("10.0.0.1", 3240, match=Match(vendor=0x46F4, port_path="0000:00:04.0-1"))
    hub = Declared("10.0.0.1", 3240, match=Match(vendor=0x46F4, port_path="0000:00:03.0-1.2"))
    sup, io = supervisor(vhci, [ehci, hub])
    assert io.present(ehci) and not io.present(hub)
    assert sup.step() is True
    assert server.imports == ["17-1.2"]
