"""Emulated USB hardware on a real host controller: export rules on hotplug, and the C tools as peers.

The devices of :data:`lab.usbhw.BENCH` sit on QEMU's xHCI controller (a hub,
a disk and an FTDI serial adapter behind it, a keyboard and a CCID reader on
the root ports) and on its EHCI controller (a high-speed disk). They are
driven by the guest's ordinary drivers, and the tests unplug and plug them
back through the host's QMP broker, as a person pulling a cable would.

- Export rules: ``usbipd`` binds what its rules match at start, and again
  after a replug. With pyudev the kernel's ``add`` uevent must lead to the
  bind (the periodic rescan does not even run then), timed from that uevent;
  without pyudev the rescan does it, within its period.
- The disk behind the hub, exported by a rule of ours, is attached by the C
  client and read back; the high-speed disk, exported by the C daemon, is
  attached by our client and read back.
- Our ``usbip list -l``/``-p``/``-r`` and ``port`` print what the C tool
  prints on the same kernel state, byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import tempfile
import time
from typing import Dict

import pytest

from lab import usbhw
from lab.guestkit import (
    DEVICES,
    STACK,
    VUDC_INSTANCES,
    bench_device,
    block_device_of,
    driver_of,
    hotplug,
    imported_device,
    load_usb_hardware,
    ours,
    read_disk,
    running,
    sh,
    wait_for,
)
from usbip.net import client

PORT = 3281
C_PORT = 3282
#: The rescan without uevents runs every RULES_POLL_SECONDS (5); a bind after it takes a little more.
POLL_BOUND = 15.0
#: From the ``add`` uevent to usbip-host holding the device: the daemon's 0.5 s settle time and one bind.
UEVENT_BOUND = 5.0


@pytest.fixture(scope="module")
def hardware(kernel) -> Dict[str, str]:
    """busid of every emulated device but the hub, once the drivers hold them."""
    load_usb_hardware()
    return {d.id: bench_device(d.id) for d in usbhw.BENCH if d.driver != "usb-hub"}


def vhci_port() -> int:
    ports = json.loads(sh(*ours("usbip"), "port", "--json").stdout)
    assert len(ports) == 1, ports
    return ports[0]["port"]


@contextlib.contextmanager
def our_daemon(tmp_path, rules: str, port: int = PORT, hide_pyudev: bool = False):
    """Our usbipd with ``rules`` as its exports; yields the path of its log."""
    config = tmp_path / "usbipd.yml"
    config.write_text("exports:\n%s" % rules)
    env = dict(os.environ)
    if hide_pyudev:
        # Readable by the unprivileged network process too: an unreadable directory on the path is
        # skipped, and the real pyudev behind it would be found after all.
        shadow = tempfile.mkdtemp(prefix="no-pyudev-")
        os.chmod(shadow, 0o755)
        os.mkdir(os.path.join(shadow, "pyudev"), 0o755)
        with open(os.path.join(shadow, "pyudev", "__init__.py"), "w") as f:
            f.write('raise ImportError("pyudev hidden by the test")\n')
        os.chmod(os.path.join(shadow, "pyudev", "__init__.py"), 0o644)
        env["PYTHONPATH"] = os.pathsep.join([shadow, STACK])
    with running([*ours("usbipd"), "--debug", "--config", str(config), "--tcp-port", str(port)], port,
                 str(tmp_path / "usbipd.log"), env) as log_path:
        yield pathlib.Path(log_path)


def replug_timed(device_id: str, busid: str, bound: float) -> float:
    """Unplug and plug back; seconds from the kernel's ``add`` uevent to usbip-host holding the device."""
    import pyudev

    monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
    monitor.filter_by("usb", "usb_device")
    monitor.start()
    hotplug("unplug", device_id)
    wait_for(lambda: not os.path.exists(os.path.join(DEVICES, busid)), 20, "%s gone" % busid)
    hotplug("plug", device_id)
    added = None
    deadline = time.monotonic() + 30
    while added is None and time.monotonic() < deadline:
        event = monitor.poll(timeout=1)
        if event is not None and event.action == "add" and event.sys_name == busid:
            added = time.monotonic()
    assert added is not None, "no add uevent for %s" % busid
    wait_for(lambda: driver_of(busid) == "usbip-host", bound + 10, "%s bound to usbip-host again" % busid)
    return time.monotonic() - added


@pytest.mark.parametrize("pyudev_present", [True, False], ids=["uevents", "rescan"])
def test_export_rules_bind_at_start_and_after_a_replug(hardware, tmp_path, pyudev_present):
    """The keyboard by serial, the serial adapter by its port behind the hub; both pulled out and put back."""
    keyboard, adapter = hardware["kbd1"], hardware["serial1"]
    assert "." in adapter, "the serial adapter sits behind the hub: %s" % adapter
    rules = "  - match: {serial: LABKBD1}\n  - match: {port_path: '%s'}\n" % adapter.split("-", 1)[1]
    bound = UEVENT_BOUND if pyudev_present else POLL_BOUND
    with our_daemon(tmp_path, rules, hide_pyudev=not pyudev_present) as log_path:
        wait_for(lambda: driver_of(keyboard) == driver_of(adapter) == "usbip-host", 20, "rules applied at start")
        delays = {busid: replug_timed(device_id, busid, bound)
                  for device_id, busid in (("kbd1", keyboard), ("serial1", adapter))}
        print("from the add uevent to usbip-host: %s" % {b: "%.2f s" % d for b, d in delays.items()})
        assert all(delay <= bound for delay in delays.values()), delays
        assert sorted(d.busid for d in client.list_devices("127.0.0.1", PORT)) == sorted([keyboard, adapter])
    text = log_path.read_text()
    method = "kernel uevents (pyudev)" if pyudev_present else "pyudev is not installed"
    assert method in text
    for busid in (keyboard, adapter):
        assert text.count("export rule: bound %s " % busid) == 2, busid
    for busid in (keyboard, adapter):
        sh(*ours("usbip"), "unbind", "-b", busid)


def test_a_disk_behind_the_hub_exported_by_a_rule_is_read_by_the_c_client(hardware, tmp_path):
    disk = hardware["disk1"]
    expected = usbhw.content(usbhw.by_id("disk1"))
    with our_daemon(tmp_path, "  - match: {serial: LABDISK1}\n"):
        wait_for(lambda: driver_of(disk) == "usbip-host", 20, "the disk exported by its rule")
        sh("usbip", "--tcp-port", str(PORT), "attach", "-r", "127.0.0.1", "-b", disk)
        try:
            remote = wait_for(lambda: imported_device("LABDISK1"), 30, "the disk under vhci_hcd")
            assert read_disk(block_device_of(remote), len(expected)) == expected
        finally:
            sh("usbip", "detach", "-p", str(vhci_port()))
        wait_for(lambda: imported_device("LABDISK1") is None, 20, "the disk detached")
    sh(*ours("usbip"), "unbind", "-b", disk)


def test_the_high_speed_disk_from_the_c_daemon_is_read_by_our_client(hardware, tmp_path):
    disk = hardware["disk2"]
    assert open(os.path.join(DEVICES, disk, "speed")).read().strip() == "480"
    expected = usbhw.content(usbhw.by_id("disk2"))
    sh("usbip", "bind", "-b", disk)
    try:
        with running(["usbipd", "--tcp-port", str(C_PORT)], C_PORT, str(tmp_path / "c-usbipd.log")):
            sh(*ours("usbip"), "--tcp-port", str(C_PORT), "attach", "-r", "127.0.0.1", "-b", disk)
            try:
                remote = wait_for(lambda: imported_device("LABDISK2"), 30, "the disk under vhci_hcd")
                assert open(os.path.join(DEVICES, remote, "speed")).read().strip() == "480"
                assert read_disk(block_device_of(remote), len(expected)) == expected
                # While it is attached: the port listing of both tools, byte for byte.
                assert sh(*ours("usbip"), "port").stdout == sh("usbip", "port").stdout
            finally:
                sh(*ours("usbip"), "detach", "-p", str(vhci_port()))
            wait_for(lambda: imported_device("LABDISK2") is None, 20, "the disk detached")
    finally:
        sh("usbip", "unbind", "-b", disk, check=False)


@pytest.mark.parametrize("argv", [("list", "-l"), ("list", "-p", "-l")], ids=["list-l", "list-p-l"])
def test_local_listing_is_the_c_tools_byte_for_byte(hardware, argv):
    """Every device of both controllers, the hub's and the dummy_hcd gadgets' included."""
    ours_out, c_out = sh(*ours("usbip"), *argv).stdout, sh("usbip", *argv).stdout
    assert hardware["disk1"] in c_out and hardware["ccid1"] in c_out
    assert ours_out == c_out


def test_remote_listing_is_the_c_tools_byte_for_byte(hardware, tmp_path):
    """``list -r`` of both clients against one daemon exporting devices behind and beside the hub."""
    rules = "  - match: {serial: LABKBD1}\n  - match: {serial: LABSER1}\n  - match: {serial: LABCCID1}\n"
    with our_daemon(tmp_path, rules):
        exported = [hardware[d] for d in ("kbd1", "serial1", "ccid1")]
        wait_for(lambda: all(driver_of(b) == "usbip-host" for b in exported), 20, "the rules applied")
        argv = ("--tcp-port", str(PORT), "list", "-r", "127.0.0.1")
        ours_out, c_out = sh(*ours("usbip"), *argv).stdout, sh("usbip", *argv).stdout
        assert all(b in c_out for b in exported)
        assert ours_out == c_out
    for busid in exported:
        sh(*ours("usbip"), "unbind", "-b", busid)


def _ids_masked(text: str, ids: str) -> str:
    """``text`` with the vendor:product of each header line (``- busid X (ids)``, ``usbid=ids``) as ``IDS``."""
    text = re.sub(r"(- busid \S+ \()%s\)" % ids, r"\1IDS)", text)
    return re.sub(r"(usbid=)%s" % ids, r"\1IDS", text)


def test_gadget_listing_is_the_c_tools_but_for_two_chosen_differences(kernel, gadgets):
    """``list -d`` and ``list -p -d``, with a gadget on every usbip-vudc instance.

    Two differences are chosen, and asserted as such: with an instance free,
    the C tool fails on it ("problem getting device attributes: No such
    device") while ours lists the gadgets that are there; and the C tool's
    header shows ``0x12:0x12`` (not the gadget's IDs) where ours shows the
    vendor:product that its second line and ``list -r`` show. Everything
    else is the same bytes.
    """
    gadgets("listd0", "usbip-vudc.0", 0x1209, 0x0D00, "LISTD-0", "acm")
    c_run = sh("usbip", "list", "-d", check=False)
    assert c_run.returncode != 0 and "No such device" in c_run.stderr
    assert " - busid usbip-vudc.0 (1209:0d00)\n" in sh(*ours("usbip"), "list", "-d").stdout
    for n in range(1, VUDC_INSTANCES):
        gadgets("listd%d" % n, "usbip-vudc.%d" % n, 0x1209, 0x0D00 + n, "LISTD-%d" % n, "acm")
    for argv in (("list", "-d"), ("list", "-p", "-d")):
        ours_out, c_out = sh(*ours("usbip"), *argv).stdout, sh("usbip", *argv).stdout
        assert "usbip-vudc.%d" % (VUDC_INSTANCES - 1) in c_out
        assert "1209:0d0%d" % (VUDC_INSTANCES - 1) in ours_out
        assert _ids_masked(ours_out, "[0-9a-f]{4}:[0-9a-f]{4}") == _ids_masked(c_out, "0x[0-9a-f]{2}:0x[0-9a-f]{2}")
