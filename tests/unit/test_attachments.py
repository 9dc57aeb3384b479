# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip.attachments: the client use case the module, the CLI and usbip-attachd share."""

from __future__ import annotations

import socket

import pytest
from fake_vhci import RECORDS, VHCI, FakeVhci

from usbip import attachments, validate
from usbip.device import Speed, UsbDevice
from usbip.errors import InvalidArgument, UsbipError
from usbip.matching import AmbiguousMatch, Match, NoMatch
from usbip.net import client
from usbip.sysfs.errors import DeviceNotFound, DriverNotLoaded
from usbip.sysfs.fs import Change
from usbip.sysfs.vhci import Record, VhciDriver


def remote(busid, vendor=0x1209, product=0x0001):
    return UsbDevice(path="/sys/devices/platform/dummy_hcd.0/usb17/" + busid, busid=busid, busnum=17, devnum=2,
                     speed=Speed.HIGH, id_vendor=vendor, id_product=product, bcd_device=0x0100, device_class=0,
                     device_subclass=0, device_protocol=0, configuration_value=1, num_configurations=1,
                     num_interfaces=0)


@pytest.fixture
def fake(tmp_path):
    return FakeVhci(tmp_path, controllers=1, hc_ports=4)


def test_default_ports_are_the_protocol_constants():
    from usbip.protocol.constants import USBIP_PORT, USBIP_TLS_PORT

    assert (attachments.default_port(False), attachments.default_port(True)) == (USBIP_PORT, USBIP_TLS_PORT)
    assert (USBIP_PORT, USBIP_TLS_PORT) == (3240, 3241)


def test_plan_attach_journals_the_one_attach_and_writes_nothing(fake):
    vhci = VhciDriver(fake.sysfs(dry_run=True))
    change = attachments.plan_attach(vhci, "server", 3240, "17-1")
    assert change == Change("attach", VHCI + "/attach", "server:3240/17-1")
    assert vhci.sysfs.journal == [change]
    assert fake.row(0)[0] == 4 and not list(fake.host(RECORDS).glob("port*"))


def test_the_driver_plans_what_its_attach_writes(fake):
    vhci = VhciDriver(fake.sysfs())
    expected = Change("attach", VHCI + "/attach", "h:3241/usbip-vudc.0")
    assert vhci.plan_attach(Record("h", 3241, "usbip-vudc.0")) == expected
    assert vhci.plan_attach(("h", 3241, "usbip-vudc.0")) == expected
    # A tuple is untyped input: checked, as attach checks it.
    with pytest.raises(InvalidArgument):
        vhci.plan_attach(("a b", 3240, "17-1"))
    with pytest.raises(InvalidArgument):
        vhci.plan_attach(("h", 3240, "../x"))


def test_an_attach_records_a_typed_record_as_given(fake):
    vhci = VhciDriver(fake.sysfs())
    assert vhci.attach(3, 0x110002, Speed.HIGH, record=Record("server", 3241, "usbip-vudc.0")) == 0
    assert fake.host(RECORDS + "/port0").read_text() == "server 3241 usbip-vudc.0\n"
    assert vhci.plan_attach(Record("server", 3241, "usbip-vudc.0")).value == "server:3241/usbip-vudc.0"


def test_a_plan_outside_a_dry_run_is_refused(fake):
    vhci = VhciDriver(fake.sysfs())
    with pytest.raises(UsbipError, match="can only be planned in a dry run"):
        attachments.plan_attach(vhci, "server", 3240, "17-1")
    assert vhci.sysfs.journal == []


@pytest.fixture
def attached(fake):
    fake.use(0, busid="1-1")
    fake.c_record(0, "127.0.0.1 3240 17-1\n")
    fake.use(1, busid="0-0")  # still enumerating
    fake.c_record(1, "localhost 3240 17-2\n")
    fake.use(2, busid="1-3")
    fake.c_record(2, "10.1.1.1 3240 17-1\n")
    return fake


def test_find_by_server_port_and_busid(attached):
    vhci = VhciDriver(attached.sysfs())
    assert [a.imported.port for a in attachments.find(vhci, "127.0.0.1", 3240)] == [0, 1]  # localhost is 127.0.0.1
    assert [a.imported.port for a in attachments.find(vhci, "localhost", 3240, "17-2")] == [1]
    assert attachments.find(vhci, "127.0.0.1", 3241) == []
    assert [a.imported.port for a in attachments.find(vhci, "10.1.1.1", 3240, "17-1")] == [2]


def test_find_by_match_needs_the_enumerated_device(attached):
    vhci = VhciDriver(attached.sysfs())
    # None of the ports has a local device in this tree: a match cannot accept any of them.
    assert attachments.find(vhci, "127.0.0.1", 3240, match=Match(vendor=0x1209)) == []
    # A busid decides alone, match or not.
    assert [a.imported.port for a in attachments.find(vhci, "127.0.0.1", 3240, "17-1", Match(vendor=1))] == [0]


def test_resolve_by_busid_or_match(monkeypatch):
    devices = [remote("17-1"), remote("17-2", 0x1d6b, 0x0104), remote("17-3", 0x1d6b, 0x0104)]
    monkeypatch.setattr(client, "list_devices", lambda host, port, timeout=10.0, tls=None: list(devices))
    assert attachments.resolve("s", 3240, busid="17-2") == devices[1]
    assert attachments.resolve("s", 3240, match=Match(vendor=0x1209)) == devices[0]
    with pytest.raises(DeviceNotFound, match=r"s:3240 offers no device 17-9; available: 17-1 \(1209:0001\)"):
        attachments.resolve("s", 3240, busid="17-9")
    with pytest.raises(NoMatch, match="no device on s:3240 matches vendor=ffff"):
        attachments.resolve("s", 3240, match=Match(vendor=0xFFFF))
    with pytest.raises(AmbiguousMatch, match="2 devices on s:3240 match"):
        attachments.resolve("s", 3240, match=Match(vendor=0x1d6b))


def test_attach_checks_vhci_before_taking_the_device(tmp_path, monkeypatch):
    imports = []
    monkeypatch.setattr(client, "import_device", lambda *a, **kw: imports.append(a))
    from usbip.sysfs.fs import Sysfs

    with pytest.raises(DriverNotLoaded):
        attachments.attach("s", 3240, "17-1", VhciDriver(Sysfs(str(tmp_path))))
    assert imports == []


@pytest.mark.parametrize("value", ["", "a b", "h\n", "h\t", "h\0", "h\u00e9", None, 3240, "x" * 254])
def test_one_host_check(value):
    with pytest.raises(InvalidArgument, match="a host name or an address is expected"):
        validate.host(value)


@pytest.mark.parametrize("value", ["h", "127.0.0.1", "::1", "fe80::1%eth0", "lab-server.example.com", "x" * 253])
def test_hosts_that_pass(value):
    assert validate.host(value) == value


def test_the_host_check_names_what_it_checks():
    with pytest.raises(InvalidArgument, match="invalid server 'a b'"):
        validate.host("a b", "server")


# -- the attach lock ----------------------------------------------------------------------------
def test_the_attach_lock_serializes_two_threads(tmp_path):
    import threading
    import time

    from usbip.sysfs.fs import Sysfs

    sysfs = Sysfs(str(tmp_path))
    held = []  # (thread, start, end) of each hold
    inside = threading.Event()

    def hold(name, seconds):
        with attachments.attach_lock(sysfs) as locked:
            assert locked
            start = time.monotonic()
            inside.set()
            time.sleep(seconds)
            held.append((name, start, time.monotonic()))

    first = threading.Thread(target=hold, args=("first", 0.5))
    first.start()
    assert inside.wait(5)
    waited = time.monotonic()
    hold("second", 0)  # in this thread, with a descriptor of its own
    first.join(5)
    (name1, start1, end1), (name2, start2, _end2) = held
    assert (name1, name2) == ("first", "second")
    assert start2 >= end1, "the second hold began while the first was held"
    assert start2 - waited > 0.3  # it did wait for the first
    path = tmp_path / "run" / "usbip" / "attach.lock"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o755"


def test_a_held_attach_lock_is_an_error_after_the_wait(tmp_path):
    import fcntl
    import os

    from usbip.sysfs.fs import Sysfs

    path = tmp_path / "run" / "usbip" / "attach.lock"
    path.parent.mkdir(parents=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process, as far as the lock knows
        with pytest.raises(UsbipError, match="another attach has held .*/run/usbip/attach.lock for 0 s"):
            with attachments.attach_lock(Sysfs(str(tmp_path)), wait=0.2):
                pass
    finally:
        os.close(fd)


def test_a_lock_file_replaced_while_waiting_is_not_trusted(tmp_path):
    """The holder's file was removed (a RuntimeDirectory cleaned up): the waiter locks the file now there."""
    import fcntl
    import os
    import threading

    from usbip.sysfs.fs import Sysfs

    path = tmp_path / "run" / "usbip" / "attach.lock"
    path.parent.mkdir(parents=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    got = []

    def waiter():
        with attachments.attach_lock(Sysfs(str(tmp_path)), wait=5):
            got.append(os.stat(str(path)).st_ino)

    thread = threading.Thread(target=waiter)
    thread.start()
    thread.join(0.3)
    path.unlink()  # gone with its lock still held, then released
    os.close(fd)
    thread.join(5)
    assert got == [os.stat(str(path)).st_ino]  # the new file, which others will lock too


def test_without_a_place_for_the_lock_the_attach_runs_without_it(tmp_path, caplog):
    import logging

    from usbip.sysfs.fs import Sysfs

    (tmp_path / "run").write_text("")  # /run/usbip cannot be made (as for a user who is not root)
    caplog.set_level(logging.DEBUG, logger="usbip.attachments")
    with attachments.attach_lock(Sysfs(str(tmp_path))) as locked:
        assert locked is False
    assert "attaching without the attach lock: cannot open" in caplog.text


def test_a_dry_run_takes_no_lock(tmp_path):
    from usbip.sysfs.fs import Sysfs

    with attachments.attach_lock(Sysfs(str(tmp_path), dry_run=True)) as locked:
        assert locked is False
    assert not (tmp_path / "run").exists()


def test_server_addresses_are_cached_for_a_while_and_failures_not_at_all(monkeypatch):
    """A long-running supervisor must see a server's new address, and retry a name that failed once."""
    answers = {"srv.example": [OSError("temporary failure")]}
    calls = []

    def getaddrinfo(host, port, type=0):  # noqa: A002 - socket.getaddrinfo's keyword
        calls.append(host)
        answer = answers[host].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, 0))]

    monkeypatch.setattr(attachments.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(attachments, "_RESOLVED", {})
    now = [1000.0]

    def clock():
        return now[0]

    assert attachments._addresses("srv.example", clock) == frozenset()
    answers["srv.example"] += ["10.0.0.1", "10.0.0.2"]
    assert attachments._addresses("srv.example", clock) == {"10.0.0.1"}  # the failure was not kept
    now[0] += attachments.ADDRESSES_TTL - 1
    assert attachments._addresses("srv.example", clock) == {"10.0.0.1"}  # cached
    now[0] += 2
    assert attachments._addresses("srv.example", clock) == {"10.0.0.2"}  # expired: looked up again
    assert calls == ["srv.example"] * 3
