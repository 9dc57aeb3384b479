# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip_attach: arguments, "already attached from that server", check mode, port-table diffs."""

from __future__ import annotations

import fcntl
import os

import pytest
from ansible_collections.usbip.usbip.plugins.modules import usbip_attach
from fake_usb import ACM, FakeTree
from fake_vhci import DETACH, RECORDS, VHCI, FakeVhci

from usbip import attachments
from usbip.device import Speed, UsbDevice
from usbip.net import client
from usbip.sysfs.fs import Change, Sysfs


def remote(busid, vendor=0x1209, product=0x0001):
    return UsbDevice(path="/sys/devices/platform/dummy_hcd.0/usb17/" + busid, busid=busid, busnum=17, devnum=2,
                     speed=Speed.HIGH, id_vendor=vendor, id_product=product, bcd_device=0x0100, device_class=0,
                     device_subclass=0, device_protocol=0, configuration_value=1, num_configurations=1,
                     num_interfaces=0)


class Server:
    """Stands in for the network: the device list and the import."""

    def __init__(self, fake, devices):
        self.fake = fake
        self.devices = devices
        self.lists = 0
        self.imports = []

    def list_devices(self, host, port, timeout=10.0, tls=None):
        self.lists += 1
        return list(self.devices)

    def attach(self, host, port, busid, vhci, timeout=10.0, tls=None):
        device = next(d for d in self.devices if d.busid == busid)
        self.imports.append((host, port, busid))
        vport = vhci.attach(7, device.devid, device.speed, record=(host, port, busid))
        # The kernel enumerates the device under the port's root hub.
        local = self.fake.local_busid(vport)
        FakeTree(self.fake.root).usb_device("%s/usb%s/%s" % (VHCI, local.split("-")[0], local), devnum=2,
                                            devpath=local.split("-")[1], vendor=device.id_vendor,
                                            product=device.id_product, interfaces=ACM, strings={"serial": "S1"})
        self.devices.remove(device)  # in use now: no longer listed
        return attachments.Attached(vport, device, host, port, busid)


@pytest.fixture
def fake(tmp_path):
    return FakeVhci(tmp_path, controllers=1, hc_ports=2)


@pytest.fixture
def server(fake, monkeypatch):
    s = Server(fake, [remote("17-1"), remote("17-2", 0x1d6b, 0x0104)])
    monkeypatch.setattr(client, "list_devices", s.list_devices)
    monkeypatch.setattr(attachments, "attach", s.attach)
    return s


def run(run_module, fake, args, **kw):
    args = dict({"server": "127.0.0.1", "wait_timeout": 2}, **args)
    return run_module(usbip_attach, args, fake.sysfs, **kw)


def status(fake):
    return fake.status_text(0), sorted(p.name for p in fake.host(RECORDS).glob("port*"))


# -- arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("args, error", [
    ({"busid": "17-1", "port": 70000}, "invalid TCP port 70000: must be between 1 and 65535"),
    ({"busid": "17-1", "port": 0}, "invalid TCP port 0"),
    ({"busid": "../../x"}, "invalid busid '../../x'"),
    ({"busid": "17-1", "server": "a b"}, "invalid server 'a b'"),
    ({"match": {"vendor": "zz"}}, "invalid vendor ID 'zz'"),
    ({"busid": "17-1", "wait_timeout": 0}, "invalid wait_timeout 0"),
])
def test_bad_arguments_fail_before_anything_is_read_or_sent(run_module, fake, server, args, error):
    before = status(fake)
    result = run(run_module, fake, args)
    assert result["failed"] and error in result["msg"], result["msg"]
    assert result["changed"] is False and run_module.journal == [] and server.lists == 0
    assert status(fake) == before


def test_match_takes_ids_only(run_module, fake, server):
    result = run(run_module, fake, {"match": {"vendor": "1209", "serial": "S1"}})
    assert result["failed"] and "Unsupported parameters" in result["msg"]


def test_server_busid_or_match_are_required(run_module, fake, server):
    assert "missing required arguments: server" in run_module(usbip_attach, {"busid": "1-1"}, fake.sysfs)["msg"]
    assert "one of the following is required" in run(run_module, fake, {})["msg"]


# -- present ---------------------------------------------------------------------------------
def test_check_mode_lists_but_neither_imports_nor_writes(run_module, fake, server):
    before = status(fake)
    result = run(run_module, fake, {"busid": "17-1"}, check_mode=True, diff=True)
    assert result["changed"] is True and result["port"] is None
    assert server.lists == 1 and server.imports == []
    assert status(fake) == before
    assert result["sysfs_changes"] == [{"op": "attach", "path": VHCI + "/attach", "value": "127.0.0.1:3240/17-1"}]
    assert result["diff"]["before"] == "(no vhci port in use)\n"
    assert result["diff"]["after"] == "port ? (new): 127.0.0.1:3240/17-1 -> (would attach)\n"
    assert result["remote"]["id_vendor"] == "1209"


def test_attach_then_nothing_to_do(run_module, fake, server):
    first = run(run_module, fake, {"busid": "17-1"}, diff=True)
    assert first["changed"] is True and server.imports == [("127.0.0.1", 3240, "17-1")]
    assert first["port"] == 0 and first["local_busid"] == "1-1"
    assert first["device"]["usbid"] == "1209:0001" and first["device"]["under_vhci"] is True
    assert first["remote"] == {"host": "127.0.0.1", "port": 3240, "busid": "17-1", "id_vendor": "1209",
                               "id_product": "0001", "device": first["remote"]["device"]}
    assert first["diff"]["after"] == "port 0 (hs): 127.0.0.1:3240/17-1 -> 1-1\n"
    assert fake.host(RECORDS + "/port0").read_text() == "127.0.0.1 3240 17-1\n"

    lists = server.lists
    again = run(run_module, fake, {"busid": "17-1"}, diff=True)
    assert again["changed"] is False and again["port"] == 0 and again["local_busid"] == "1-1"
    assert server.lists == lists, "an attached device needs no server contact"
    assert run_module.journal == []
    assert again["diff"]["before"] == again["diff"]["after"]

    by_ids = run(run_module, fake, {"match": {"vendor": "1209", "product": "0001"}})
    assert by_ids["changed"] is False and by_ids["port"] == 0 and server.lists == lists


def test_another_name_of_the_same_server_counts(run_module, fake, server):
    run(run_module, fake, {"busid": "17-1"})
    assert run(run_module, fake, {"busid": "17-1", "server": "localhost"})["changed"] is False


def test_the_same_busid_from_another_server_or_port_is_not_present(run_module, fake, server):
    run(run_module, fake, {"busid": "17-1"})
    server.devices.append(remote("17-1"))
    result = run(run_module, fake, {"busid": "17-1", "port": 3241}, check_mode=True)
    assert result["changed"] is True


def test_present_holds_the_attach_lock_across_find_resolve_and_attach(run_module, fake, server, monkeypatch):
    """usbip-attachd takes the same lock: neither may see the other's attach half done."""
    lock = fake.host(attachments.ATTACH_LOCK)

    def held():
        """Whether someone holds the lock: a lock of our own on another open of the file would be refused."""
        try:
            fd = os.open(str(lock), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    steps = []

    def watched(name):
        real = getattr(attachments, name)

        def step(*args, **kwargs):
            steps.append((name, held()))
            return real(*args, **kwargs)
        return step

    for name in ("find", "resolve", "attach"):
        monkeypatch.setattr(attachments, name, watched(name))

    result = run(run_module, fake, {"busid": "17-1"})
    assert result["changed"] is True and result["port"] == 0
    assert steps == [("find", True), ("resolve", True), ("attach", True)]
    assert not held(), "the lock outlived the module run"


def test_match_resolves_against_the_server_list(run_module, fake, server):
    result = run(run_module, fake, {"match": {"vendor": "1d6b", "product": "0104"}})
    assert result["changed"] is True and server.imports == [("127.0.0.1", 3240, "17-2")]


def test_match_without_device_lists_the_server_candidates(run_module, fake, server):
    result = run(run_module, fake, {"match": {"vendor": "ffff"}})
    assert result["failed"] and result["error"] == "NoMatch"
    assert result["msg"] == ("no device on 127.0.0.1:3240 matches vendor=ffff; "
                             "candidates: 17-1 (1209:0001); 17-2 (1d6b:0104)")


def test_ambiguous_match_fails(run_module, fake, server):
    server.devices.append(remote("17-3"))
    result = run(run_module, fake, {"match": {"vendor": 0x1209}})
    assert result["failed"] and result["error"] == "AmbiguousMatch" and "17-1 (1209:0001); 17-3" in result["msg"]
    assert server.imports == []


def test_unknown_busid_names_what_the_server_offers(run_module, fake, server):
    result = run(run_module, fake, {"busid": "9-9"})
    assert result["failed"] and result["msg"].startswith(
        "127.0.0.1:3240 offers no device 9-9; available: 17-1 (1209:0001), 17-2 (1d6b:0104)")
    assert "usbip_bind" in result["hint"] and run_module.journal == []


def test_an_unreachable_server_gets_a_hint(run_module, fake, monkeypatch):
    def refuse(host, port, timeout=10.0, tls=None):
        raise client.ConnectError("cannot connect to %s:%d: Connection refused" % (host, port))
    monkeypatch.setattr(client, "list_devices", refuse)
    result = run(run_module, fake, {"busid": "17-1"})
    assert result["failed"] and result["msg"].startswith("cannot connect to 127.0.0.1:3240: Connection refused (")
    assert "usbipd" in result["hint"]


def test_wait_times_out_with_a_clear_error(run_module, fake, server, monkeypatch):
    def attach_without_enumeration(host, port, busid, vhci, timeout=10.0, tls=None):
        device = server.devices[0]
        port_number = vhci.attach(7, device.devid, device.speed, record=(host, port, busid))
        return attachments.Attached(port_number, device, host, port, busid)
    monkeypatch.setattr(attachments, "attach", attach_without_enumeration)
    result = run(run_module, fake, {"busid": "17-1", "wait_timeout": 1})
    assert result["failed"] and "not ready after" in result["msg"] and result["changed"] is True


# -- absent ------------------------------------------------------------------------------------
@pytest.fixture
def attached(fake):
    fake.use(1, busid="1-2")
    fake.c_record(1, "127.0.0.1 3240 17-1\n")
    fake.use(2, busid="2-1", spd=5)
    fake.c_record(2, "10.1.1.1 3240 17-1\n")
    return fake


def test_absent_in_check_mode_journals_the_detach_only(run_module, attached, server):
    before = status(attached)
    result = run(run_module, attached, {"busid": "17-1", "state": "absent"}, check_mode=True, diff=True)
    assert result["changed"] is True and [d["port"] for d in result["detached"]] == [1]
    assert run_module.journal == [Change("unlink", RECORDS + "/port1"), Change("write", DETACH, "1")]
    assert status(attached) == before
    assert result["diff"]["before"] == ("port 1 (hs): 127.0.0.1:3240/17-1 -> 1-2\n"
                                        "port 2 (ss): 10.1.1.1:3240/17-1 -> 2-1\n")
    assert result["diff"]["after"] == "port 2 (ss): 10.1.1.1:3240/17-1 -> 2-1\n"


def test_absent_detaches_only_what_matches(run_module, attached, server):
    result = run(run_module, attached, {"busid": "17-1", "state": "absent"})
    assert result["changed"] is True
    assert [p["port"] for p in result["ports"]] == [2]  # the other server's device stays
    again = run(run_module, attached, {"busid": "17-1", "state": "absent"})
    assert again["changed"] is False and run_module.journal == []
    assert server.lists == 0


def test_absent_by_match_uses_the_local_device_ids(run_module, fake, server):
    run(run_module, fake, {"busid": "17-1"})
    assert run(run_module, fake, {"match": {"vendor": "ffff"}, "state": "absent"})["changed"] is False
    result = run(run_module, fake, {"match": {"vendor": "1209", "product": "0001"}, "state": "absent"})
    assert result["changed"] is True and result["detached"][0]["remote_busid"] == "17-1"


# -- vhci-hcd not loaded ---------------------------------------------------------------------------
class NoVhci:
    def __init__(self, root):
        self.root = root

    def sysfs(self, dry_run=False):
        return Sysfs(str(self.root), dry_run)


def test_without_vhci_and_without_loading_the_hint_names_the_module(run_module, tmp_path, server):
    fake = NoVhci(tmp_path / "no-vhci")
    result = run(run_module, fake, {"busid": "17-1", "load_kernel_modules": False})
    assert result["failed"] and result["hint"] == "modprobe vhci-hcd"
    assert "vhci_hcd is not loaded" in result["msg"]


def test_check_mode_reports_loading_vhci(run_module, tmp_path, server):
    fake = NoVhci(tmp_path / "no-vhci")
    result = run(run_module, fake, {"busid": "17-1"}, check_mode=True)
    assert result["changed"] is True and result["kernel_modules"] == ["vhci-hcd"] and run_module.commands == []
    absent = run(run_module, fake, {"busid": "17-1", "state": "absent"})
    assert absent["changed"] is False and run_module.commands == []
