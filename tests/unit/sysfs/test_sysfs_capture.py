# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fake tree against the real-kernel captures in ``data/``, both ways.

Three checks keep the fakes honest:

* every directory, link and attribute the fake has, the kernel has too, with
  the same link target and the same content;
* every attribute the kernel shows in a directory the fake has, the fake has
  too (a driver that starts reading one then reads it from the fake as from
  the kernel); directories the fake does not model (endpoints, ``power``, hub
  ports) are not required, nor their contents;
* the drivers describe the captured devices exactly as they describe the
  fake ones.

Each part of the fake is compared with the capture of the state it models:
the standard tree is ``01-loaded.json`` (nothing bound or attached), except
the devices it shows imported through vhci (``1-1``, ``1-2``), which are
those of ``02-attached.json``; a simulated bind and attach of ``17-1`` is
compared with ``02-attached.json``. What cannot be compared is listed below,
each entry with its reason; the lists are checked to be needed.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import pytest
from fake_usb import ACM, DEVICES, DRIVERS, DUMMY_HCD, HOST, VHCI, capture_tree, load_capture, standard_tree
from fake_vhci import FakeVhci

from usbip.device import DeviceStatus
from usbip.sysfs.errors import NotExportable
from usbip.sysfs.host import HostDriver
from usbip.sysfs.usb import UsbBus
from usbip.sysfs.vudc import VudcDriver

LOADED, ATTACHED = "01-loaded.json", "02-attached.json"

#: Parts of the fake that no capture holds, by path prefix (or part), and why.
NOT_CAPTURED: Dict[str, str] = {
    "/usb18": "bus 18 (an xHCI on PCI, a hub, a flash drive, a receiver) is synthetic: the lab machine has none",
    "/18-": "bus 18 is synthetic (see /usb18)",
    "/sys/devices/pci0000:00": "bus 18's controller is synthetic (see /usb18)",
    "/sys/devices/platform/dummy_udc.0": "outside the captured roots: the job captures /sys/class/udc, not the"
                                         " platform directory of dummy_udc.0",
}
#: Kernel attributes the fake leaves out on purpose, by path, and why.
NOT_IN_THE_FAKE: Dict[str, str] = {
    VHCI + "/" + name: "vhci_hcd's own attributes are fake_vhci.FakeVhci's (compared with the capture below);"
                       " the standard tree models only the buses below the controller"
    for name in ["attach", "detach", "nports", "usbip_debug", "status"] + ["status.%d" % n for n in range(1, 8)]
}
#: Attributes whose content is the moment's, not the device's: compared for presence only.
VOLATILE: Dict[str, str] = {
    "urbnum": "the number of URBs submitted since enumeration",
}

#: Parts of the standard tree in the state of ``02-attached.json`` (the rest is in that of ``01-loaded.json``).
IMPORTED = (VHCI + "/usb1/1-", DEVICES + "/1-1", DEVICES + "/1-2", DRIVERS + "/usb/1-", DRIVERS + "/usb-storage/1-2")


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


def disagreements(tree, capture_of, under: str = "/") -> Tuple[List[str], int]:
    """What the fake and the kernel disagree on below ``under``; and how many paths were compared.

    ``capture_of(path)`` is the capture of the state the fake models at ``path``.
    """
    problems, compared = [], 0
    ours = fake_entries(tree)
    for path, fake in sorted(ours.items()):
        if not path.startswith(under) or _not_captured(path):
            continue
        capture = capture_of(path)
        real = capture.get(path)
        if real is None:
            if not (_above_the_captured_roots(path, capture) or _back_link_confirmed(path, fake, capture)):
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
            if real["type"] != "file" or path in ours or not path.startswith(under) or capture_of(path) is not capture:
                continue
            parent = os.path.dirname(path)
            if ours.get(parent, {}).get("type") == "dir" and path not in NOT_IN_THE_FAKE:
                problems.append("%s: the fake lacks this kernel attribute" % path)
    return problems, compared


@pytest.fixture(scope="module")
def captures():
    return {name: load_capture(name) for name in (LOADED, ATTACHED)}


def standard_states(captures):
    """The capture of the state the standard tree models at a path."""
    return lambda path: captures[ATTACHED] if path.startswith(IMPORTED) else captures[LOADED]


def test_the_standard_tree_agrees_with_the_captures_both_ways(tmp_path, captures):
    problems, compared = disagreements(standard_tree(tmp_path), standard_states(captures))
    assert problems == []
    assert compared > 450


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


def test_every_listed_exception_is_needed(tmp_path, captures):
    """An exception the fakes no longer need is one to remove."""
    ours = fake_entries(standard_tree(tmp_path))
    for part in NOT_CAPTURED:
        assert any(part in path for path in ours), part
    for path in NOT_IN_THE_FAKE:
        assert path in captures[LOADED] and path not in ours, path
    for name in VOLATILE:
        values = {c[p]["text"] for c in captures.values() for p in c if os.path.basename(p) == name}
        assert len(values) > 1, name


@pytest.mark.parametrize("capture", ["01-loaded.json", "02-attached.json"])
def test_drivers_read_the_capture_as_they_read_the_fake(tmp_path, capture):
    real = UsbBus(capture_tree(capture, tmp_path / "real").sysfs())
    fake_tree = standard_tree(tmp_path / "fake")
    if capture.startswith("02"):
        fake_tree.kernel_host_bind("17-1")
        fake_tree.kernel_host_attach("17-1", ACM)
    fake = UsbBus(fake_tree.sysfs())

    assert [d.busid for d in real.devices(bindable_only=True)] == ["17-1"]
    for device in real.devices():
        assert device == fake.describe(device.busid)


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
