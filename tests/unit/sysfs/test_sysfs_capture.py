# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fake tree against the real-kernel captures in ``data/``, both ways.

Three checks keep the fakes honest:

* every directory, link and attribute the fake has, the kernel has too, with
  the same link target and the same content;
* every attribute, directory and link the kernel shows in a directory the
  fake has, the fake has too (a driver that starts reading one then reads it
  from the fake as from the kernel), except the kinds the fakes do not model
  (``NOT_MODELED``: endpoints, ``power``, hub ports, the SCSI host, tty and
  HID devices below an interface...) and links to devices the fake does not
  have;
* the drivers describe the captured devices exactly as they describe the
  fake ones.

Each part of the fake is compared with the capture of the state it models:
the standard tree is ``01-loaded.json`` (nothing bound or attached), except
the devices it shows imported through vhci (``1-1``, ``1-2``), which are
those of ``02-attached.json``, and the xHCI bus 18 with the drivers only its
devices use, which is ``03-hardware.json``; a simulated bind and attach of
``17-1`` is compared with ``02-attached.json``, a simulated bind of the disk
``18-1.2`` behind the hub with ``04-hardware-bound.json`` and its unbind with
``05-hardware-unbound.json``; fake_vhci's controller after an attach with an unconnected socket,
with its root hubs, is ``06-vhci-unconnected.json``. The hardware captures come
from a boot whose xHCI bus was 17: ``fake_usb.load_capture`` renumbers them
(bus N >= 17 as N + 1) so that their paths and contents name the fake's bus
18. What cannot be compared is listed below, each entry with its reason; the
lists are checked to be needed.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Tuple, Union

import pytest
from fake_usb import (
    ACM,
    DEVICES,
    DRIVERS,
    DUMMY_HCD,
    HARDWARE_RELEASE,
    HOST,
    STORAGE,
    VHCI,
    XHCI,
    FakeTree,
    capture_tree,
    load_capture,
    standard_tree,
)
from fake_vhci import RECORDS, FakeVhci

from usbip.device import DeviceStatus, Speed
from usbip.sysfs.errors import NotExportable
from usbip.sysfs.host import HostDriver
from usbip.sysfs.usb import UsbBus
from usbip.sysfs.vhci import VhciDriver
from usbip.sysfs.vudc import VudcDriver

LOADED, ATTACHED = "01-loaded.json", "02-attached.json"
HARDWARE, BOUND, UNBOUND, UNCONNECTED = (
    "03-hardware.json", "04-hardware-bound.json", "05-hardware-unbound.json", "06-vhci-unconnected.json")

#: Parts of the fake that no capture holds, by path prefix (or part), and why.
NOT_CAPTURED: Dict[str, str] = {
    "/sys/devices/platform/dummy_udc.0": "outside the captured roots: the job captures /sys/class/udc, not the"
                                         " platform directory of dummy_udc.0",
}
#: Kernel attributes the fake leaves out on purpose, by path, and why.
NOT_IN_THE_FAKE: Dict[str, str] = {
    VHCI + "/" + name: "vhci_hcd's own attributes are fake_vhci.FakeVhci's (compared with the capture below);"
                       " the standard tree models only the buses below the controller"
    for name in ["attach", "detach", "nports", "usbip_debug", "status"] + ["status.%d" % n for n in range(1, 8)]
}
#: Directories and links the kernel shows that the fakes do not model, by name (a regular expression), and why.
NOT_MODELED: Dict[str, str] = {
    r"ep_[0-9a-f]{2}": "endpoint directories: no driver here reads them",
    r"power": "runtime power management: nothing here reads it",
    r"subsystem": "the link to the bus or class: the drivers find devices through their bus links",
    r"(usb)?[0-9]+(-[0-9.]+)?-port[0-9]+": "hub ports (with their device and peer links): nothing here reads"
                                           " them, and vhci's 30 would slow every tree",
    r"port": "a device's link to its hub port (see the hub ports)",
    r"host[0-9]+|ttyUSB[0-9]+|[0-9A-F]{4}:[0-9A-F]{4}:[0-9A-F]{4}\.[0-9A-F]{4}":
        "what an interface's driver creates below it (a SCSI host, a tty, a HID device): the drivers here stop"
        " at the interface",
    r"gadget(\.[0-9]+)?": "a UDC's gadget device, numbered by boot: the drivers here read the UDC's attributes",
}
#: Attributes whose content is the moment's, not the device's: compared for presence only.
VOLATILE: Dict[str, str] = {
    "urbnum": "the number of URBs submitted since enumeration",
}

#: Parts of the standard tree in the state of ``02-attached.json`` (the rest is in that of ``01-loaded.json``).
IMPORTED = (VHCI + "/usb1/1-", DEVICES + "/1-1", DEVICES + "/1-2", DRIVERS + "/usb/1-", STORAGE + "/1-2")
#: Parts in the state of a hardware capture: bus 18 (and, by the busid part ``/18-``, its bus links and the
#: drivers' links to its devices), and the drivers the hardware job captured or only bus 18's devices use.
HARDWARE_PARTS = (os.path.dirname(XHCI), HOST, STORAGE, DRIVERS + "/usbhid", DRIVERS + "/ftdi_sio")
#: What the hardware job captured besides the xHCI bus (and, for the bound and unbound states, of that
#: bus only the hub's subtree).
HARDWARE_ROOTS = (XHCI, HOST, STORAGE)
HUB_ROOTS = (XHCI + "/usb18/18-1", HOST, STORAGE)


def fake_entries(tree) -> Dict[str, dict]:
    """Every path of the fake tree, as the capture script records it."""
    root = str(tree.root)
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            host = os.path.join(dirpath, name)
            path = "/" + os.path.relpath(host, root)
            if os.path.islink(host):
                entries[path] = {"type": "link", "target": os.readlink(host)}
            elif os.path.isdir(host):
                entries[path] = {"type": "dir"}
            else:
                with open(host, "rb") as f:
                    entries[path] = {"type": "file", "data": f.read()}
    return entries


def _not_captured(path: str) -> bool:
    return any(part in path for part in NOT_CAPTURED)


def _above_the_captured_roots(path: str, capture: Dict[str, dict]) -> bool:
    """A directory the fake needs to hold the captured trees (``/sys``, ``/sys/bus``...): never captured itself."""
    return path not in capture and any(other.startswith(path + "/") for other in capture)


def _bus_link_confirmed(path: str, fake: dict, capture: Dict[str, dict]) -> bool:
    """A ``/sys/bus/usb/devices`` link, in a capture that did not record that directory, to a device or
    interface directory the capture has under the link's name (the kernel keeps one for each)."""
    if fake["type"] != "link" or os.path.dirname(path) != DEVICES:
        return False
    if any(other.startswith(DEVICES + "/") for other in capture):
        return False
    target = os.path.normpath(os.path.join(DEVICES, fake["target"]))
    return capture.get(target, {}).get("type") == "dir" and os.path.basename(target) == os.path.basename(path)


def _driver_dir_confirmed(path: str, fake: dict, capture: Dict[str, dict]) -> bool:
    """A USB driver's directory the capture did not record, holding a device the capture shows bound to it."""
    if fake["type"] != "dir" or os.path.dirname(path) != DRIVERS:
        return False
    suffix = "/bus/usb/drivers/" + os.path.basename(path)
    return any(entry.get("target", "").endswith(suffix) for entry in capture.values())


def _back_link_confirmed(path: str, fake: dict, capture: Dict[str, dict]) -> bool:
    """A driver's link to a device that the capture shows bound to that driver from the device's side.

    ``02-attached.json`` captures ``/sys/bus/usb/drivers/usbip-host`` only;
    the other drivers' links to the imported devices are the reverse of each
    device's ``driver`` link, which it has.
    """
    parts = path.split("/")
    if fake["type"] != "link" or not path.startswith(DRIVERS + "/") or len(parts) != 7:
        return False
    device = os.path.normpath(os.path.join(os.path.dirname(path), fake["target"]))
    driver = capture.get(device + "/driver")
    return driver is not None and driver.get("target", "").endswith("/drivers/" + parts[5])


#: What makes a path the kernel's though its capture lacks it.
_CONFIRMED = (lambda path, fake, capture: _above_the_captured_roots(path, capture),
              _bus_link_confirmed, _driver_dir_confirmed, _back_link_confirmed)


def disagreements(tree, capture_of, under: Union[str, Tuple[str, ...]] = "/",
                  exempt: Dict[str, str] = NOT_IN_THE_FAKE) -> Tuple[List[str], int]:
    """What the fake and the kernel disagree on below ``under`` (a prefix or several); and how many paths
    were compared.

    ``capture_of(path)`` is the capture of the state the fake models at ``path``; ``exempt``: kernel
    attributes the fake may lack.
    """
    problems, compared = [], 0
    ours = fake_entries(tree)
    for path, fake in sorted(ours.items()):
        if not path.startswith(under) or _not_captured(path):
            continue
        capture = capture_of(path)
        real = capture.get(path)
        if real is None:
            if not any(confirmed(path, fake, capture) for confirmed in _CONFIRMED):
                problems.append("%s: a %s the kernel does not have" % (path, fake["type"]))
            continue
        compared += 1
        if real["type"] != fake["type"]:
            problems.append("%s: %s, kernel has a %s" % (path, fake["type"], real["type"]))
        elif fake["type"] == "link" and real["target"] != fake["target"]:
            problems.append("%s -> %s, kernel -> %s" % (path, fake["target"], real["target"]))
        elif fake["type"] == "file" and ("text" in real or "hex" in real) \
                and os.path.basename(path) not in VOLATILE:
            kernel = bytes.fromhex(real["hex"]) if "hex" in real else real["text"].encode("ascii")
            if kernel != fake["data"]:
                problems.append("%s: %r, kernel %r" % (path, fake["data"], kernel))
    for capture in {id(c): c for c in map(capture_of, ours)}.values():
        for path, real in sorted(capture.items()):
            if path in ours or not path.startswith(under) or capture_of(path) is not capture:
                continue
            if ours.get(os.path.dirname(path), {}).get("type") != "dir" or path in exempt:
                continue
            if real["type"] == "file":
                problems.append("%s: the fake lacks this kernel attribute" % path)
            elif not (_not_modeled(path) or _leads_out_of_the_fake(path, real, ours)):
                problems.append("%s: the fake lacks this kernel %s" % (path, real["type"]))
    return problems, compared


def _not_modeled(path: str) -> bool:
    return any(re.fullmatch(pattern, os.path.basename(path)) for pattern in NOT_MODELED)


def _leads_out_of_the_fake(path: str, real: dict, ours: Dict[str, dict]) -> bool:
    """A bus's or driver's link to a device the fake does not have (another vhci_hcd controller's root hub,
    a disk on another controller)."""
    if real["type"] != "link" or not (os.path.dirname(path) == DEVICES or path.startswith(DRIVERS + "/")):
        return False
    return os.path.normpath(os.path.join(os.path.dirname(path), real["target"])) not in ours


@pytest.fixture(scope="module")
def captures():
    return {name: load_capture(name) for name in (LOADED, ATTACHED, HARDWARE, BOUND, UNBOUND, UNCONNECTED)}


def standard_states(captures, hardware: str = HARDWARE):
    """The capture of the state the standard tree models at a path; ``hardware``: that of bus 18."""
    def capture_of(path: str) -> Dict[str, dict]:
        if path.startswith(IMPORTED):
            return captures[ATTACHED]
        if path.startswith(HARDWARE_PARTS) or "/18-" in path or path.endswith("/usb18"):
            return captures[hardware]
        return captures[LOADED]
    return capture_of


def comparison(captures, state: str):
    """How a hardware state is compared: the capture of each path, and the attributes the fake may lack.

    fake_vhci's controller has all of the kernel's: the exemptions of the standard tree are not its.
    """
    if state == UNCONNECTED:
        return (lambda path: captures[UNCONNECTED]), {}
    return standard_states(captures, state), NOT_IN_THE_FAKE


def test_the_standard_tree_agrees_with_the_captures_both_ways(tmp_path, captures):
    problems, compared = disagreements(standard_tree(tmp_path), standard_states(captures))
    assert problems == []
    assert compared > 750


def test_the_xhci_bus_agrees_with_the_hardware_capture_both_ways(tmp_path, captures):
    """Bus 18 (the root hub, the hub, the devices behind it and beside it) against ``03-hardware.json``."""
    problems, compared = disagreements(standard_tree(tmp_path), standard_states(captures),
                                       under=HARDWARE_ROOTS + (DEVICES + "/18-", DRIVERS + "/usbhid"))
    assert problems == []
    assert compared > 300


def bound_tree(root) -> FakeTree:
    """The standard tree after ``usbip bind -b 18-1.2`` (the disk behind the hub), the kernel's part played."""
    tree = standard_tree(root)
    tree.kernel_host_bind("18-1.2")
    return tree


def test_a_simulated_bind_behind_the_hub_agrees_with_the_bound_capture_both_ways(tmp_path, captures):
    tree = bound_tree(tmp_path)
    problems, compared = disagreements(tree, standard_states(captures, BOUND), under=HUB_ROOTS)
    assert problems == []
    assert compared > 140
    assert tree.read(HOST + "/match_busid") == captures[BOUND][HOST + "/match_busid"]["text"] == "18-1.2 \n"


def unbound_tree(root) -> FakeTree:
    """The standard tree after ``usbip bind`` and ``usbip unbind`` of ``18-1.2``: back on usb, and its
    interface on usb-storage."""
    tree = bound_tree(root)
    tree.kernel_host_unbind("18-1.2")
    return tree


def test_a_simulated_unbind_agrees_with_the_unbound_capture_both_ways(tmp_path, captures):
    problems, compared = disagreements(unbound_tree(tmp_path), standard_states(captures, UNBOUND), under=HUB_ROOTS)
    assert problems == []
    assert compared > 150


def unconnected_vhci(root) -> FakeVhci:
    """fake_vhci's controller, with the root hubs of its first two buses, after an attach of an unconnected socket.

    The kernel takes the write (no error) and lets the port go at once: the
    driver reports a port that is free again by the time anyone looks.
    """
    fake = FakeVhci(root)
    tree = FakeTree(root)
    tree.root_hub(VHCI, 1, "vhci_hcd", maxchild=15, release=HARDWARE_RELEASE)
    tree.root_hub(VHCI, 2, "vhci_hcd", superspeed=True, maxchild=15, release=HARDWARE_RELEASE)
    fake.drop = 1
    port = VhciDriver(fake.sysfs()).attach(5, 0x00010002, Speed.FULL)
    assert VhciDriver(fake.sysfs()).ports()[port].free
    return fake


def test_the_fake_vhci_after_an_unconnected_attach_agrees_with_the_capture_both_ways(tmp_path, captures):
    """The whole of ``vhci_hcd.0`` (controller attributes and root hubs) as the kernel left it: every port free."""
    fake = unconnected_vhci(tmp_path)
    capture_of, exempt = comparison(captures, UNCONNECTED)
    problems, compared = disagreements(fake, capture_of, under=VHCI, exempt=exempt)
    assert problems == []
    assert compared > 110
    assert sorted(fake.host(RECORDS).glob("port*")) == []  # no record of a port it never had
    ports = VhciDriver(fake.sysfs()).ports()
    assert ports == VhciDriver(capture_tree(UNCONNECTED, tmp_path / "real").sysfs()).ports()
    assert len(ports) == 240 and all(port.free for port in ports)


def test_simulated_bind_and_attach_agree_with_the_attached_capture_both_ways(tmp_path, captures):
    tree = standard_tree(tmp_path)
    tree.kernel_host_bind("17-1")
    tree.kernel_host_attach("17-1", ACM)
    attached = captures[ATTACHED]
    problems, compared = disagreements(tree, lambda path: attached, under=DUMMY_HCD + "/usb17/17-1")
    assert problems == []
    assert compared > 70
    assert tree.read(HOST + "/match_busid") == attached[HOST + "/match_busid"]["text"]


def test_the_fake_vhci_controller_agrees_with_the_attached_capture_both_ways(tmp_path, captures):
    """fake_vhci's controller attributes: the kernel's set exactly, with the kernel's content."""
    fake = FakeVhci(tmp_path)
    fake.use(0, spd=3, devid=0x00110002, sockfd=3)  # 17-1 from usbipd, as in the capture
    fake.use(1, spd=3, devid=0, sockfd=3)  # usbip-vudc.0
    kernel = {path: entry for path, entry in captures[ATTACHED].items()
              if os.path.dirname(path) == VHCI and entry["type"] == "file"}
    ours = {"%s/%s" % (VHCI, f.name): f.read_bytes() for f in fake.host(VHCI).iterdir() if f.is_file()}
    assert sorted(ours) == sorted(kernel)
    assert {path: ours[path] for path, entry in kernel.items() if "text" in entry} == {
        path: entry["text"].encode("ascii") for path, entry in kernel.items() if "text" in entry}
    assert len([entry for entry in kernel.values() if "text" in entry]) >= 12


# -- the comparison itself --------------------------------------------------------------------
def test_an_attribute_the_fake_lacks_is_found(tmp_path, captures):
    tree = standard_tree(tmp_path)
    tree.remove(DUMMY_HCD + "/usb17/17-1/removable")
    tree.remove(VHCI + "/usb1/1-2/1-2:1.0/interface")  # in the part compared with the attached capture
    problems, _compared = disagreements(tree, standard_states(captures))
    assert problems == [
        DUMMY_HCD + "/usb17/17-1/removable: the fake lacks this kernel attribute",
        VHCI + "/usb1/1-2/1-2:1.0/interface: the fake lacks this kernel attribute",
    ]


def test_a_directory_or_link_the_kernel_lacks_is_found(tmp_path, captures):
    tree = standard_tree(tmp_path)
    tree.dir(DUMMY_HCD + "/usb17/17-1/17-1:1.0/not-in-the-kernel")
    tree.link(DUMMY_HCD + "/usb17/17-1/companion", VHCI)
    tree.link(DRIVERS + "/usb-storage/17-1:1.1", DUMMY_HCD + "/usb17/17-1/17-1:1.1")  # a back link of no bind
    problems, _compared = disagreements(tree, standard_states(captures))
    assert problems == [
        DRIVERS + "/usb-storage/17-1:1.1: a link the kernel does not have",
        DUMMY_HCD + "/usb17/17-1/17-1:1.0/not-in-the-kernel: a dir the kernel does not have",
        DUMMY_HCD + "/usb17/17-1/companion: a link the kernel does not have",
    ]


def test_a_content_or_target_that_differs_is_found(tmp_path, captures):
    tree = standard_tree(tmp_path)
    tree.attrs(DUMMY_HCD + "/usb17/17-1", removable="removable", urbnum="99")  # urbnum: volatile, not compared
    tree.link(DUMMY_HCD + "/usb17/17-1/driver", DRIVERS + "/usbfs")
    problems, _compared = disagreements(tree, standard_states(captures))
    assert problems == [
        DUMMY_HCD + "/usb17/17-1/driver -> ../../../../../bus/usb/drivers/usbfs,"
                    " kernel -> ../../../../../bus/usb/drivers/usb",
        DUMMY_HCD + "/usb17/17-1/removable: b'removable\\n', kernel b'unknown\\n'",
    ]


DISK = XHCI + "/usb18/18-1/18-1.2"


def _plant_in_the_loaded_bus(fake):
    fake.remove(XHCI + "/usb18/18-3/18-3:1.0/interface")
    fake.dir(XHCI + "/usb18/18-2/18-2:1.1")
    fake.attrs(XHCI + "/usb18/18-1", speed="480")


def _plant_in_the_bound_disk(fake):
    fake.remove(DISK + "/usbip_debug")
    fake.dir(DISK + "/18-1.2:1.0")  # an interface the generic driver's release took away
    fake.attrs(DISK, bMaxPower="0mA")  # configuration 1's, shown empty while unconfigured


def _plant_in_the_unbound_disk(fake):
    fake.remove(DISK + "/18-1.2:1.0/bInterfaceProtocol")
    fake.attrs(DISK, usbip_status="1")  # left behind by usbip-host
    fake.link(DISK + "/driver", HOST)


def _plant_in_the_unconnected_vhci(fake):
    fake.host(VHCI + "/usbip_debug").unlink()
    fake.host(VHCI + "/usb1/1-1").mkdir()  # a device on a port the kernel left free
    fake.use(0)


PLANTED = {
    HARDWARE: (standard_tree, HARDWARE_ROOTS, _plant_in_the_loaded_bus, [
        XHCI + "/usb18/18-1/speed: b'480\\n', kernel b'12\\n'",
        XHCI + "/usb18/18-2/18-2:1.1: a dir the kernel does not have",
        XHCI + "/usb18/18-3/18-3:1.0/interface: the fake lacks this kernel attribute",
    ]),
    BOUND: (bound_tree, HUB_ROOTS, _plant_in_the_bound_disk, [
        DISK + "/18-1.2:1.0: a dir the kernel does not have",
        DISK + "/bMaxPower: b'0mA\\n', kernel b''",
        DISK + "/usbip_debug: the fake lacks this kernel attribute",
    ]),
    UNBOUND: (unbound_tree, HUB_ROOTS, _plant_in_the_unbound_disk, [
        DISK + "/driver -> ../../../../../../bus/usb/drivers/usbip-host,"
               " kernel -> ../../../../../../bus/usb/drivers/usb",
        DISK + "/usbip_status: a file the kernel does not have",
        DISK + "/18-1.2:1.0/bInterfaceProtocol: the fake lacks this kernel attribute",
    ]),
    UNCONNECTED: (unconnected_vhci, (VHCI,), _plant_in_the_unconnected_vhci, [
        VHCI + "/status: the content differs",
        VHCI + "/usb1/1-1: a dir the kernel does not have",
        VHCI + "/usbip_debug: the fake lacks this kernel attribute",
    ]),
}


@pytest.mark.parametrize("state", sorted(PLANTED))
def test_each_hardware_comparison_finds_what_differs(tmp_path, captures, state):
    """A lacking attribute, an extra entry and a differing content planted in each state's fake are found."""
    build, under, plant, expected = PLANTED[state]
    fake = build(tmp_path)
    plant(fake)
    capture_of, exempt = comparison(captures, state)
    problems, _compared = disagreements(fake, capture_of, under=under, exempt=exempt)
    assert [p if not p.startswith(VHCI + "/status:") else VHCI + "/status: the content differs"
            for p in problems] == expected


def test_every_listed_exception_is_needed(tmp_path, captures):
    """An exception the fakes no longer need is one to remove."""
    ours = fake_entries(standard_tree(tmp_path))
    for part in NOT_CAPTURED:
        assert any(part in path for path in ours), part
    for path in NOT_IN_THE_FAKE:
        assert path in captures[LOADED] and path not in ours, path
    for pattern in NOT_MODELED:
        assert any(re.fullmatch(pattern, os.path.basename(path)) and path not in ours
                   for capture in captures.values() for path in capture), pattern
    for name in VOLATILE:
        values = {c[p]["text"] for c in captures.values() for p in c if os.path.basename(p) == name}
        assert len(values) > 1, name


def _attached_tree(root) -> FakeTree:
    tree = standard_tree(root)
    tree.kernel_host_bind("17-1")
    tree.kernel_host_attach("17-1", ACM)
    return tree


#: Each capture of USB devices: the fake in its state, and the devices ``usbip list -l`` shows there.
READ_ALIKE = {
    LOADED: (standard_tree, ["17-1"]),
    ATTACHED: (_attached_tree, ["17-1"]),
    HARDWARE: (standard_tree, ["18-1.2", "18-1.3", "18-2", "18-3"]),
    BOUND: (bound_tree, ["18-1.2", "18-1.3"]),  # the hub's subtree only
    UNBOUND: (unbound_tree, ["18-1.2", "18-1.3"]),
}


@pytest.mark.parametrize("capture", sorted(READ_ALIKE))
def test_drivers_read_the_capture_as_they_read_the_fake(tmp_path, capture):
    build, bindable = READ_ALIKE[capture]
    real = UsbBus(capture_tree(capture, tmp_path / "real").sysfs())
    fake = UsbBus(build(tmp_path / "fake").sysfs())

    assert [d.busid for d in real.devices(bindable_only=True)] == bindable
    for device in real.devices():
        assert device == fake.describe(device.busid)


def test_the_host_driver_reads_the_hardware_captures_as_the_fake(tmp_path):
    """Bound behind the hub (``04``): available; unbound again (``05``): nothing bound, usb-storage back."""
    bound = HostDriver(capture_tree(BOUND, tmp_path / "bound").sysfs())
    unbound = HostDriver(capture_tree(UNBOUND, tmp_path / "unbound").sysfs())
    fake_bound = HostDriver(bound_tree(tmp_path / "fake-bound").sysfs())
    fake_unbound = HostDriver(unbound_tree(tmp_path / "fake-unbound").sysfs())

    assert [(b.local.busid, b.status) for b in bound.bound()] == [("18-1.2", DeviceStatus.AVAILABLE)]
    assert bound.bound() == fake_bound.bound()
    assert bound.status("18-1.2") is fake_bound.status("18-1.2") is DeviceStatus.AVAILABLE
    assert unbound.bound() == fake_unbound.bound() == []
    assert unbound.bus.describe("18-1.2").driver == fake_unbound.bus.describe("18-1.2").driver == "usb"


def test_capture_states_seen_by_the_host_and_vudc_drivers(tmp_path):
    loaded = capture_tree("01-loaded.json", tmp_path / "loaded").sysfs()
    attached = capture_tree("02-attached.json", tmp_path / "attached").sysfs()
    fake = VudcDriver(standard_tree(tmp_path / "fake").sysfs())

    assert HostDriver(loaded).bound() == []
    assert HostDriver(loaded).status("17-1") is None
    assert [(b.local.busid, b.status) for b in HostDriver(attached).bound()] == [("17-1", DeviceStatus.USED)]

    vudc = VudcDriver(loaded)
    assert vudc.instances() == ["usbip-vudc.0", "usbip-vudc.1"]
    assert vudc.describe("usbip-vudc.0") == fake.describe("usbip-vudc.0")
    with pytest.raises(NotExportable):
        vudc.describe("usbip-vudc.1")
    assert VudcDriver(attached).status("usbip-vudc.0") is DeviceStatus.USED
