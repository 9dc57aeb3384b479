"""Shared pools on real hardware: usbip-attachd attaches every device a declaration takes, and tells apart by port.

The emulated hardware of :data:`lab.usbhw.BENCH` has two disks of one model
(46f4:0001): ``disk1`` behind the hub on the xHCI controller (devpath 1.2) and
``disk2`` on a root port of the EHCI controller. A server exports them from
this guest (our usbipd, or the C one), and our supervisor, ``usbip-attachd``,
attaches them over 127.0.0.1 as a client would:

- ``all: true`` with a match on the model attaches both;
- a match with the port path of ``disk1`` (as the server computes it from
  its sysfs path) attaches ``disk1`` and never ``disk2``, from either daemon:
  the C usbipd's device list carries the same sysfs path as ours;
- ``all: true`` without a match picks up a device the server starts
  exporting after the supervisor started (the keyboard, bound later),
  within a few of its passes.

Every device attached is recognised under vhci_hcd by the serial number the
guest reads from it. Each test stops the supervisor, detaches and unbinds in
``finally`` blocks.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Dict, Iterator, List

import pytest

from lab import usbhw
from lab.guestkit import bench_device, imported_device, load_usb_hardware, ours, running, sh, wait_for
from usbip.matching import port_path
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.usb import UsbBus
from usbip.sysfs.vhci import VhciDriver

PORT = 3310
C_PORT = 3311
#: The supervisor's pass interval here: a new device is attached within a pass or two of being exported.
INTERVAL = 0.5
#: From the bind on the server to the device enumerated under vhci_hcd: a pass, the import, the enumeration.
PICKUP_BOUND = 15.0


@pytest.fixture(scope="module")
def hardware(kernel) -> Dict[str, str]:
    """busid of the two disks and the keyboard, once the drivers hold them."""
    load_usb_hardware()
    return {device_id: bench_device(device_id) for device_id in ("disk1", "disk2", "kbd1")}


def attached_from(port: int) -> List[str]:
    """Server busids of the vhci ports attached from 127.0.0.1:``port``."""
    return sorted(p.remote_busid for p in VhciDriver(Sysfs()).imported() if p.remote_port == port and p.remote_busid)


class Server:
    """A server on this guest: devices bound to usbip-host with one tool, served by that tool's daemon."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = PORT if kind == "ours" else C_PORT
        self.usbip = ours("usbip") if kind == "ours" else ("usbip",)
        self.bound: List[str] = []

    def bind(self, busid: str) -> None:
        sh(*self.usbip, "bind", "-b", busid)
        self.bound.append(busid)

    def unbind_all(self) -> None:
        for busid in self.bound:
            sh(*self.usbip, "unbind", "-b", busid, check=False)
        self.bound.clear()


@contextlib.contextmanager
def exporting(tmp_path, kind: str, busids: List[str]) -> Iterator[Server]:
    """``busids`` bound and served on the server's port; unbound again after (more may be bound meanwhile)."""
    server = Server(kind)
    try:
        for busid in busids:
            server.bind(busid)
        if kind == "ours":
            config = tmp_path / "usbipd.yml"
            config.write_text("exports: []\n")
            argv = [*ours("usbipd"), "--debug", "--config", str(config), "--tcp-port", str(server.port)]
        else:
            argv = ["usbipd", "--tcp-port", str(server.port)]
        with running(argv, server.port, str(tmp_path / ("usbipd-%s.log" % kind))):
            yield server
    finally:
        server.unbind_all()


@contextlib.contextmanager
def supervising(tmp_path, port: int, declaration: str) -> Iterator[str]:
    """usbip-attachd keeping one declaration against 127.0.0.1:``port``; yields the path of its log.

    On the way out it is stopped first (it would attach again what is detached), then every port attached from
    that server is detached and the ports are awaited free.
    """
    config = tmp_path / "attachments.yml"
    config.write_text("interval: %s\nretry: {initial: 0.5, max: 2}\ntimeout: 10\nattachments:\n"
                      "  - {server: 127.0.0.1, port: %d, %s}\n" % (INTERVAL, port, declaration))
    sh(*ours("attachd"), "--check-config", "-c", str(config))
    log_path = tmp_path / "attachd.log"
    with open(log_path, "w") as log:
        supervisor = subprocess.Popen([*ours("attachd"), "--debug", "-c", str(config)], stderr=log)
    try:
        yield str(log_path)
    finally:
        supervisor.terminate()
        try:
            supervisor.wait(15)
        finally:
            print(log_path.read_text())
            for p in VhciDriver(Sysfs()).imported():
                if p.remote_port == port:
                    sh(*ours("usbip"), "detach", "-p", str(p.port), check=False)
            wait_for(lambda: not attached_from(port), 20, "the ports attached from port %d free again" % port)


DISK_MODEL = "vendor: '46f4', product: '0001'"


def test_all_with_a_match_attaches_both_identical_disks(hardware, tmp_path):
    disks = [hardware["disk1"], hardware["disk2"]]
    assert usbhw.IDS["usb-storage"] == (0x46F4, 0x0001)
    with exporting(tmp_path, "ours", disks) as server:
        with supervising(tmp_path, server.port, "all: true, match: {%s}" % DISK_MODEL) as log_path:
            started = time.monotonic()
            wait_for(lambda: imported_device("LABDISK1") and imported_device("LABDISK2"), 40,
                     "both disks under vhci_hcd")
            print("both disks under vhci_hcd %.1f s after the supervisor started" % (time.monotonic() - started))
            assert attached_from(server.port) == sorted(disks)
            log = open(log_path).read()
            for busid in disks:
                assert "attached %s on port " % busid in log, busid
    wait_for(lambda: not (imported_device("LABDISK1") or imported_device("LABDISK2")), 20,
             "both disks gone from vhci_hcd")


@pytest.mark.parametrize("kind", ["ours", "c"])
def test_a_port_path_match_attaches_the_disk_behind_the_hub_only(hardware, tmp_path, kind):
    """The full port path as the server computes it locally (``0000:00:..-1.2``) selects disk1, not its twin."""
    disk1, disk2 = hardware["disk1"], hardware["disk2"]
    where = port_path(UsbBus(Sysfs()).describe(disk1))
    assert where.endswith("-1.2") and where != port_path(UsbBus(Sysfs()).describe(disk2))
    declaration = "match: {%s, port_path: '%s'}" % (DISK_MODEL, where)
    with exporting(tmp_path, kind, [disk1, disk2]) as server:
        with supervising(tmp_path, server.port, declaration):
            wait_for(lambda: imported_device("LABDISK1"), 40, "disk1 under vhci_hcd")
            time.sleep(4 * INTERVAL)  # a few more passes: a single match attaches one device and stays at that
            assert attached_from(server.port) == [disk1]
            assert imported_device("LABDISK2") is None


def test_all_picks_up_a_device_exported_after_the_supervisor_started(hardware, tmp_path):
    disk1, keyboard = hardware["disk1"], hardware["kbd1"]
    with exporting(tmp_path, "ours", [disk1]) as server:
        with supervising(tmp_path, server.port, "all: true") as log_path:
            wait_for(lambda: imported_device("LABDISK1"), 40, "disk1 under vhci_hcd")
            assert imported_device("LABKBD1") is None
            bound = time.monotonic()
            server.bind(keyboard)
            wait_for(lambda: imported_device("LABKBD1"), PICKUP_BOUND, "the keyboard bound later, under vhci_hcd")
            print("from the bind on the server to the keyboard under vhci_hcd: %.1f s" % (time.monotonic() - bound))
            assert attached_from(server.port) == sorted([disk1, keyboard])
            assert "attached %s on port " % keyboard in open(log_path).read()
