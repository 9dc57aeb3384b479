# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fake tree against the real-kernel captures in ``data/``.

Two checks keep the fakes honest: every path the fake shares with a capture
has the kernel's content, and the drivers describe the captured devices
exactly as they describe the fake ones.
"""

from __future__ import annotations

import os

import pytest
from fake_usb import ACM, DUMMY_HCD, HOST, capture_tree, load_capture, standard_tree

from usbip.device import DeviceStatus
from usbip.sysfs.errors import NotExportable
from usbip.sysfs.host import HostDriver
from usbip.sysfs.usb import UsbBus
from usbip.sysfs.vudc import VudcDriver

# Devices the lab machine does not have.
SYNTHETIC = ("/usb18", "/18-", "/sys/devices/pci0000:00", "/sys/devices/platform/dummy_udc.0", "usbip-vudc.10")


def fake_entries(tree):
    """Every path of the fake tree, as the capture script records it."""
    root = str(tree.root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            host = os.path.join(dirpath, name)
            path = "/" + os.path.relpath(host, root)
            if os.path.islink(host):
                yield path, {"type": "link", "target": os.readlink(host)}
            elif os.path.isdir(host):
                yield path, {"type": "dir"}
            else:
                with open(host, "rb") as f:
                    yield path, {"type": "file", "data": f.read()}


def disagreements(tree, captures, under="/"):
    problems, compared = [], 0
    for path, fake in fake_entries(tree):
        if not path.startswith(under) or any(s in path for s in SYNTHETIC) or path.startswith("/sys/module/"):
            continue
        real = next((c[path] for c in captures if path in c), None)
        if real is None:
            # Links in driver directories depend on the state captured; attributes do not.
            parent = os.path.dirname(path)
            if fake["type"] == "file" and any(parent in c and c[parent]["type"] == "dir" for c in captures):
                problems.append("%s: the kernel has no such attribute" % path)
            continue
        compared += 1
        if real["type"] != fake["type"]:
            problems.append("%s: %s, kernel has a %s" % (path, fake["type"], real["type"]))
        elif fake["type"] == "link" and real["target"] != fake["target"]:
            problems.append("%s -> %s, kernel -> %s" % (path, fake["target"], real["target"]))
        elif fake["type"] == "file" and ("text" in real or "hex" in real):
            kernel = bytes.fromhex(real["hex"]) if "hex" in real else real["text"].encode("ascii")
            if kernel != fake["data"]:
                problems.append("%s: %r, kernel %r" % (path, fake["data"], kernel))
    return problems, compared


def test_fake_tree_agrees_with_the_loaded_capture(tmp_path):
    tree = standard_tree(tmp_path)
    problems, compared = disagreements(tree, [load_capture("01-loaded.json"), load_capture("02-attached.json")])
    assert problems == []
    assert compared > 250


def test_simulated_bind_and_attach_agree_with_the_attached_capture(tmp_path):
    tree = standard_tree(tmp_path)
    tree.kernel_host_bind("17-1")
    tree.kernel_host_attach("17-1", ACM)
    attached = load_capture("02-attached.json")
    problems, compared = disagreements(tree, [attached], under=DUMMY_HCD + "/usb17/17-1")
    assert problems == []
    assert compared > 30
    assert tree.read(HOST + "/match_busid") == attached[HOST + "/match_busid"]["text"]


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
