# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No write from bad input, through every entry point that can write.

Each case runs the real driver code on a fake kernel tree and proves two
things: ``Sysfs.journal`` -- where every write, mkdir, symlink, unlink and
record file is entered before it is made -- stays empty, and the tree on disk
is byte-for-byte what it was (so nothing bypassed the journal either). The
bad inputs: busids that are path-like, empty, 32 characters or more,
non-ASCII, with NUL, with a newline; vhci ports that are negative, beyond
the last port or not numbers; devices that do not exist, hubs, devices
imported through vhci_hcd, devices already in use; configfs names that are
not names. The entry points: ``HostDriver.bind/unbind/export``,
``VhciDriver.attach/detach``, ``VudcDriver.export``, ``GadgetDriver.ensure/remove``,
the ``usbip`` command line and the server's IMPORT path.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Dict, Tuple

import pytest
from fake_configfs import FakeConfigfs
from fake_usb import BAD_BUSIDS, FakeTree, standard_tree
from fake_vhci import FakeVhci

from tests.fuzz.server import LiveServer, receive_all
from usbip.cli.usbip import main as usbip_main
from usbip.device import Speed
from usbip.errors import InvalidArgument
from usbip.protocol import ImportReply, ImportRequest, Status
from usbip.sysfs.errors import (
    BindLoop,
    DeviceBusy,
    DeviceError,
    DeviceNotFound,
    DriverNotLoaded,
    NoFreePort,
    NotExportable,
)
from usbip.sysfs.gadget import GadgetDriver, GadgetFunction, GadgetSpec
from usbip.sysfs.host import HostDriver
from usbip.sysfs.vhci import VhciDriver
from usbip.sysfs.vudc import VudcDriver

#: The issue's list, on top of fake_usb's: NUL, more path tricks, 32+ characters.
BUSIDS = BAD_BUSIDS + [
    "17-1\0", "\x0017-1", "17\x00-1", "/sys/bus/usb/devices/17-1", "17-1/../18-1", "./17-1", "17-1 ", " 17-1",
    "17-1\t", "17-1\r", "1-1\n1-2", "17-\u00b9", "\u00e9", "17-1\u200b", "9" * 40, "1-" + "1" * 30, "-1", "17-",
    "17-0", "0-1", "17-1..2", "17-1;id", "17-1$(id)", "*", "usbip-vudc.0",
]
VUDC_NAMES = [
    "usbip-vudc.", "usbip-vudc.-1", "usbip-vudc.01", "usbip-vudc.x", "../usbip-vudc.0", "usbip-vudc.0/../..",
    "usbip-vudc.0\n", "usbip-vudc.0\0", "usbip-vudc.\uff10", "usbip-vudc.12345", "usbip-vudc.0 ", "",
    "usbip_vudc.0", "17-1", "x" * 40,
]
PORTS = [-1, -240, 240, 241, 10**6, 2**31, 2**63, "x", "", " 1", "1 ", "+1", "-1", "0x1", "1e2", "\u0661",
         "1\n", "1\0", 1.0, 1.5, True, False, None, [1], b"1"]
SOCKFDS = [-1, 2**31, "x", "3 ", None, 1.5, True]


#: The host-wide attach lock (``flock`` on a file, not kernel state) and the directories it is made in.
LOCK = {"var", "var/run", "var/run/vhci_hcd", "var/run/vhci_hcd/.lock"}


def snapshot(root: Path) -> Dict[str, Tuple[str, object]]:
    """Every entry below ``root`` but the attach lock: kind and content (files), target (links)."""
    found: Dict[str, Tuple[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel in LOCK:
                continue
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir", None)
            else:
                with open(path, "rb") as f:
                    found[rel] = ("file", f.read())
    return found


class Guard:
    """A fake tree's gateway plus the proof that nothing changed through it or beside it."""

    def __init__(self, root: Path, sysfs) -> None:
        self.root = root
        self.sysfs = sysfs
        self.before = snapshot(root)

    def assert_untouched(self) -> None:
        assert self.sysfs.journal == []
        assert snapshot(self.root) == self.before

    def refuses(self, call, inputs, error=InvalidArgument, unread: bool = False) -> None:
        """``call(x)`` raises ``error`` for every input, writes nothing, and (``unread``) reads nothing."""
        for value in inputs:
            try:
                call(value)
            except error:
                pass
            except Exception as err:  # noqa: BLE001 - reported with the input that caused it
                pytest.fail("%r: %r instead of %s" % (value, err, error.__name__))
            else:
                pytest.fail("%r was accepted" % (value,))
            assert self.sysfs.journal == [], value
            if unread:
                assert self.sysfs.touched == [], value  # refused before any sysfs access
        self.assert_untouched()


# -- the trees ------------------------------------------------------------------------
def _host_tree(root: Path) -> FakeTree:
    """The standard tree: 17-1 on usb, 18-1 a hub, 18-1.2 and 18-1.3 behind it, 1-1 and 1-2 imported via
    vhci_hcd, 18-3 without driver; 18-1.2 bound to usbip-host and in use; usbip-vudc.0 with a gadget, .1
    without."""
    tree = standard_tree(root)
    tree.kernel_driver_unbind("18-3")
    tree.kernel_host_bind("18-1.2")
    tree.attrs(tree.resolve("18-1.2"), usbip_status="2")
    return tree


@pytest.fixture
def host_tree(tmp_path) -> FakeTree:
    """A tree of the test's own, for tests that change it first."""
    return _host_tree(tmp_path / "host")


@pytest.fixture(scope="module")
def shared_host(tmp_path_factory) -> Tuple[FakeTree, Dict[str, Tuple[str, object]]]:
    """Built once: every test proves it left the tree as it was, so sharing it is safe."""
    tree = _host_tree(tmp_path_factory.mktemp("host"))
    return tree, snapshot(tree.root)


@pytest.fixture
def host(shared_host) -> Guard:
    tree, before = shared_host
    guard = Guard.__new__(Guard)
    guard.root, guard.sysfs, guard.before = tree.root, tree.sysfs(), before
    return guard


@pytest.fixture
def vhci(tmp_path) -> Tuple[FakeVhci, Guard]:
    fake = FakeVhci(tmp_path / "vhci")
    fake.use(3)
    return fake, Guard(fake.root, fake.sysfs())


@pytest.fixture
def configfs(tmp_path) -> Tuple[FakeConfigfs, Guard]:
    fake = FakeConfigfs(tmp_path / "configfs")
    sysfs = fake.sysfs()
    # One existing gadget, bound: another gadget may not take its UDC.
    GadgetDriver(sysfs).ensure(GadgetSpec("taken", 0x1209, 0x0001, functions=(GadgetFunction("acm.0"),)), "dummy_udc.0")
    sysfs.journal.clear()
    return fake, Guard(fake.root, sysfs)


# -- usbip-host -----------------------------------------------------------------------
@pytest.mark.parametrize("action", ["bind", "unbind", "status", "export"])
def test_host_driver_bad_busids(host, action):
    driver = HostDriver(host.sysfs)
    call = (lambda busid: driver.export(busid, 3)) if action == "export" else getattr(driver, action)
    host.refuses(call, BUSIDS, unread=True)


@pytest.mark.parametrize("busid, error", [
    ("9-9", DeviceNotFound), ("17-9", DeviceNotFound), ("17-1.1", DeviceNotFound),
    ("18-1", NotExportable),  # a hub
    ("1-1", BindLoop), ("1-2", BindLoop),  # imported through vhci_hcd
])
def test_bind_of_what_cannot_be_exported(host, busid, error):
    with pytest.raises(error):
        HostDriver(host.sysfs).bind(busid)
    host.assert_untouched()


@pytest.mark.parametrize("busid, error", [("9-9", DeviceNotFound), ("17-9", DeviceNotFound)])
def test_unbind_of_unknown_devices(host, busid, error):
    with pytest.raises(error):
        HostDriver(host.sysfs).unbind(busid)
    host.assert_untouched()


@pytest.mark.parametrize("busid", ["17-1", "18-1", "1-1", "18-2", "18-3"])
def test_unbind_of_devices_not_bound_changes_nothing(host, busid):
    assert HostDriver(host.sysfs).unbind(busid).changed is False
    host.assert_untouched()


@pytest.mark.parametrize("busid, error", [
    ("9-9", DeviceNotFound),
    ("17-1", DeviceNotFound),  # not bound to usbip-host
    ("18-1", DeviceNotFound),  # a hub, not bound
    ("1-1", DeviceNotFound),  # imported, not bound
    ("18-1.2", DeviceBusy),  # bound, in use
])
def test_export_of_what_is_not_available(host, busid, error):
    with pytest.raises(error):
        HostDriver(host.sysfs).export(busid, 3)
    host.assert_untouched()


def test_export_of_a_device_in_error_state(host_tree, host):
    host_tree.attrs(host_tree.resolve("18-1.2"), usbip_status="3")
    guard = Guard(host_tree.root, host_tree.sysfs())
    with pytest.raises(DeviceError):
        HostDriver(guard.sysfs).export("18-1.2", 3)
    guard.assert_untouched()


def test_export_with_a_bad_socket(host_tree):
    host_tree.attrs(host_tree.resolve("18-1.2"), usbip_status="1")
    guard = Guard(host_tree.root, host_tree.sysfs())
    guard.refuses(lambda sockfd: HostDriver(guard.sysfs).export("18-1.2", sockfd), SOCKFDS)


# -- vhci_hcd ---------------------------------------------------------------------------
def test_detach_of_bad_ports(vhci):
    _, guard = vhci
    guard.refuses(VhciDriver(guard.sysfs).detach, PORTS)


def test_detach_of_free_ports_changes_nothing(vhci):
    _, guard = vhci
    for port in (0, 1, 239):
        assert VhciDriver(guard.sysfs).detach(port) is False
    guard.assert_untouched()


GOOD_ATTACH = {"sockfd": 3, "devid": 0x110002, "speed": Speed.HIGH, "record": ("127.0.0.1", 3240, "17-1")}


BAD_ATTACH = {
    "sockfd": SOCKFDS,
    "devid": [-1, 2**32, "x", None, 1.5],
    "speed": [0, 7, -1, "high", None, 99],
    "record": [("", 3240, "17-1"), ("a b", 3240, "17-1"), ("h\n", 3240, "17-1"), ("h\u00e9", 3240, "17-1"),
               ("h\0", 3240, "17-1"), (None, 3240, "17-1"), ("h", 0, "17-1"), ("h", 65536, "17-1"),
               ("h", "x", "17-1"), ("h", -1, "17-1")]
    + [("127.0.0.1", 3240, busid) for busid in BUSIDS if busid != "usbip-vudc.0"],
}


@pytest.mark.parametrize("field", sorted(BAD_ATTACH))
def test_attach_with_bad_arguments(vhci, field):
    _, guard = vhci
    guard.refuses(lambda value: VhciDriver(guard.sysfs).attach(**{**GOOD_ATTACH, field: value}), BAD_ATTACH[field])


@pytest.mark.parametrize("speed, hub", [(Speed.HIGH, "hs"), (Speed.SUPER, "ss")])
def test_attach_with_every_port_of_the_speed_taken(vhci, speed, hub):
    fake, guard = vhci
    fake.fill(hub)
    guard.before = snapshot(fake.root)
    with pytest.raises(NoFreePort, match="no free %s port" % hub):
        VhciDriver(guard.sysfs).attach(**{**GOOD_ATTACH, "speed": speed})
    guard.assert_untouched()


def test_attach_without_vhci_hcd(tmp_path):
    tree = FakeTree(tmp_path)
    tree.dir("/sys/devices/platform")
    guard = Guard(tmp_path, tree.sysfs())
    with pytest.raises(DriverNotLoaded):
        VhciDriver(guard.sysfs).attach(**GOOD_ATTACH)
    guard.assert_untouched()


# -- usbip-vudc ---------------------------------------------------------------------------
def test_vudc_export_of_bad_names(host):
    host.refuses(lambda name: VudcDriver(host.sysfs).export(name, 3), VUDC_NAMES, unread=True)


@pytest.mark.parametrize("name, error", [
    ("usbip-vudc.7", DeviceNotFound),  # no such instance
    ("usbip-vudc.1", NotExportable),  # no gadget bound
])
def test_vudc_export_of_what_is_not_there(host, name, error):
    with pytest.raises(error):
        VudcDriver(host.sysfs).export(name, 3)
    host.assert_untouched()


def test_vudc_export_of_an_instance_in_use(host_tree):
    host_tree.attrs("/sys/devices/platform/usbip-vudc.0", usbip_status="2")
    guard = Guard(host_tree.root, host_tree.sysfs())
    with pytest.raises(DeviceBusy):
        VudcDriver(guard.sysfs).export("usbip-vudc.0", 3)
    guard.assert_untouched()


def test_vudc_export_with_a_bad_socket(host):
    host.refuses(lambda sockfd: VudcDriver(host.sysfs).export("usbip-vudc.0", sockfd), SOCKFDS)


# -- configfs gadgets ---------------------------------------------------------------------
BAD_GADGET_NAMES = ["", "../x", "a/b", "/abs", ".hidden", "x" * 41, "g\u00e9", "g\0", "g\n", "g ", "-g", "g;id",
                    None, 7]
ACM = (GadgetFunction("acm.0"),)


def _spec(**changes) -> GadgetSpec:
    return GadgetSpec(**{**GadgetSpec("g1", 0x1209, 0x0002, functions=ACM).__dict__, **changes})


BAD_SPECS = (
    [_spec(name=n) for n in BAD_GADGET_NAMES]
    + [_spec(**{f: v}) for f, v in (
        ("id_vendor", 0x10000), ("id_vendor", -1), ("id_product", "x"), ("bcd_device", 0x00AA), ("bcd_usb", 0x1A00),
        ("device_class", 256), ("manufacturer", "a\nb"), ("product", "\u00e9"), ("serialnumber", "s" * 127),
        ("configuration", "c\0"), ("max_power", 2041), ("max_power", -1), ("id_vendor", True))]
    + [_spec(functions=(GadgetFunction(n),)) for n in (
        "", "acm", "../acm.0", "acm.0/../../x", "ACM.0", "acm.0\n", "mass_storage.0 ", "acm." + "0" * 40)]
    + [_spec(functions=(GadgetFunction("mass_storage.0", {k: v}),))
       for k, v in (("lun.0/../../../x", "1"), ("/abs", "1"), ("lun.0/file\n", "x"), ("../UDC", "x"),
                    ("lun.0/file", "/tmp/x\n"), ("lun.0/file", "\u00e9"), ("lun.0/ro", 2), ("lun.0/ro", "yes"),
                    ("stall", None), ("lun.0/file", "x" * 4096))]
    + [_spec(functions=(GadgetFunction("hid.0", {"report_desc": b"\0" * 4097}),)),
       _spec(functions=(GadgetFunction("hid.0", {"report_length": 0x10000}),)),
       _spec(functions=ACM + ACM),
       "g1"]
)


def test_gadget_ensure_of_bad_specs(configfs):
    _, guard = configfs
    guard.refuses(lambda spec: GadgetDriver(guard.sysfs).ensure(spec, "usbip-vudc.0"), BAD_SPECS)


@pytest.mark.parametrize("udc, error", [
    ("../udc", InvalidArgument), ("", InvalidArgument), ("a b", InvalidArgument), ("u\n", InvalidArgument),
    ("x" * 65, InvalidArgument), ("nope.0", DeviceNotFound),
    ("dummy_udc.0", DeviceBusy),  # bound to the gadget "taken"
])
def test_gadget_ensure_onto_a_bad_udc(configfs, udc, error):
    _, guard = configfs
    with pytest.raises(error):
        GadgetDriver(guard.sysfs).ensure(_spec(), udc)
    guard.assert_untouched()


def test_gadget_remove_and_read_of_bad_names(configfs):
    _, guard = configfs
    gadgets = GadgetDriver(guard.sysfs)
    for call in (gadgets.remove, gadgets.read, gadgets.bound_udc):
        guard.refuses(call, BAD_GADGET_NAMES)


# -- the usbip command line -----------------------------------------------------------------
def _usbip(guard: Guard, *argv: str) -> int:
    return usbip_main(list(argv), sysfs=guard.sysfs)


@pytest.mark.parametrize("command", ["bind", "unbind"])
def test_cli_bind_unbind_of_bad_busids(host, command, capsys):
    for busid in BUSIDS:
        assert _usbip(host, command, "-b", busid) == 2, busid
        assert capsys.readouterr().err.startswith("usbip: error: argument -b/--busid: "), busid
    assert host.sysfs.touched == []
    host.assert_untouched()


@pytest.mark.parametrize("busid", ["9-9", "18-1", "1-1", "1-2"])
def test_cli_bind_of_what_cannot_be_exported(host, busid):
    assert _usbip(host, "bind", "-b", busid) == 1
    host.assert_untouched()


def test_cli_unbind_of_an_unknown_device(host):
    assert _usbip(host, "unbind", "-b", "9-9") == 1
    host.assert_untouched()


def test_cli_detach_of_bad_ports(vhci):
    _, guard = vhci
    for port in ("-1", "x", "", " 1", "+1", "0x1", "1\n", "1\0", "\u0661", "9" * 30, "240", "241", str(2**31)):
        assert _usbip(guard, "detach", "-p", port) == 2, port
    guard.assert_untouched()


def test_cli_attach_argument_errors(vhci):
    _, guard = vhci
    for argv in (
        [("attach", "-r", "127.0.0.1", "-b", b) for b in BUSIDS if b != "usbip-vudc.0"]
        + [("attach", "-r", "127.0.0.1", "-d", b) for b in VUDC_NAMES if b not in ("17-1",)]
        + [("attach", "-r", host, "-b", "17-1") for host in ("", "a b", "h\n", "h\0", "h\u00e9")]
        + [("-t", port, "attach", "-r", "127.0.0.1", "-b", "17-1") for port in ("0", "65536", "x", "-1")]
    ):
        assert _usbip(guard, *argv) == 2, argv
    guard.assert_untouched()


class OneShotServer:
    """Answers one IMPORT on 127.0.0.1 with ``reply`` and reports whether the client hung up."""

    def __init__(self, reply: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply

    def serve_one(self) -> bytes:
        self.sock.settimeout(10)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(10)
            request = b""
            while len(request) < 40:
                chunk = conn.recv(40 - len(request))
                if not chunk:
                    break
                request += chunk
            conn.sendall(self.reply)
            assert conn.recv(1) == b""  # the client closed: the device is released on the server
        return request


@pytest.mark.parametrize("status", [Status.NODEV, Status.DEV_BUSY, Status.DEV_ERR, Status.NA])
def test_cli_attach_refused_by_the_server(vhci, status):
    import threading

    _, guard = vhci
    server = OneShotServer(ImportReply(status).encode())
    seen = []
    thread = threading.Thread(target=lambda: seen.append(server.serve_one()))
    thread.start()
    assert _usbip(guard, "-t", str(server.port), "attach", "-r", "127.0.0.1", "-b", "17-1") == 1
    thread.join(10)
    assert seen == [ImportRequest("17-1").encode()]
    guard.assert_untouched()


def test_cli_attach_with_no_free_port_releases_the_device(vhci):
    import threading

    from usbip.device import UsbDevice

    fake, guard = vhci
    fake.fill("hs")
    guard.before = snapshot(fake.root)
    device = UsbDevice(path="/sys/devices/platform/dummy_hcd.0/usb17/17-1", busid="17-1", busnum=17, devnum=2,
                       speed=Speed.HIGH, id_vendor=0x1209, id_product=1, bcd_device=0x100, device_class=0,
                       device_subclass=0, device_protocol=0, configuration_value=1, num_configurations=1,
                       num_interfaces=0)
    server = OneShotServer(ImportReply(Status.OK, device).encode())
    thread = threading.Thread(target=server.serve_one)
    thread.start()
    assert _usbip(guard, "-t", str(server.port), "attach", "-r", "127.0.0.1", "-b", "17-1") == 1
    thread.join(10)
    assert not thread.is_alive()  # the server saw the client hang up
    guard.assert_untouched()  # no port taken, no record file


# -- the server's IMPORT path ------------------------------------------------------------------
def _raw_import(busid: bytes) -> bytes:
    return bytes.fromhex("0111800300000000") + busid.ljust(32, b"\0")[:32]


def _ask(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return receive_all(s)


NODEV = ImportReply(Status.NODEV).encode()
BUSY = ImportReply(Status.DEV_BUSY).encode()
WIRE_BUSIDS = [b.encode("utf-8") for b in BUSIDS if "\0" not in b and b != "usbip-vudc.0"] + [
    b"A" * 32, b"\xff\xfe17-1", b"17-1\xff", b"\x0017-1", b"../../../../sys/bus/usb/drivers/usbip-host/bind",
]


@pytest.mark.parametrize("mode", ["host", "device"])
def test_server_import_of_bad_and_unavailable_busids(host_tree, mode):
    host_tree.attrs("/sys/devices/platform/usbip-vudc.0", usbip_status="2")  # in use, as 18-1.2
    sysfs = host_tree.sysfs()
    guard = Guard(host_tree.root, sysfs)
    live = LiveServer(sysfs, mode)
    try:
        answers = {}
        unavailable = [b"9-9", b"17-1", b"18-1", b"1-1", b"18-2", b"18-3", b"usbip-vudc.1", b"usbip-vudc.7"]
        for busid in WIRE_BUSIDS + unavailable + [b"18-1.2", b"usbip-vudc.0"]:
            answers[busid] = _ask(live.port, _raw_import(busid))
        assert live.tap.alarms == []
    finally:
        live.stop()
    in_use = b"18-1.2" if mode == "host" else b"usbip-vudc.0"
    for busid, answer in answers.items():
        if busid == in_use:
            assert answer == BUSY
        elif b"\0" not in busid.ljust(32, b"\0")[:32] or any(c > 0x7E or c < 0x20 for c in busid.split(b"\0")[0]):
            assert answer == b"", busid  # not a busid field at all: dropped as a protocol error
        else:
            assert answer == NODEV, busid
    guard.assert_untouched()
