"""Interoperability with Debian's C tools, both ways, in both modes.

Each test is one cell of the matrix: one side's client against the other
side's daemon, host mode (a disk on the guest's emulated host controllers,
bound to usbip-host: behind the xHCI hub for our daemon, on EHCI for the C
daemon) or device mode (a gadget on usbip-vudc). Every cell lists, attaches,
reads the disk through USB/IP, checks that *both* tools' ``port`` show the
attachment with host, port and busid, detaches and unbinds.
"""

from __future__ import annotations

import os
import re

import pytest

from lab import usbhw
from lab.guestkit import Backing, bench_device, block_device_of, load_usb_hardware, ours, read_disk, sh, wait_for

C = ("usbip",)
OURS = ours("usbip")
C_DAEMON = ("usbipd",)
OUR_DAEMON = ours("usbipd")


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def port_table(tool) -> dict:
    """Port -> (local busid, url) from a tool's human ``port`` output.

    The C tool fails now and then ("open vhci_driver") while a port is
    changing; callers poll, so a failed run reads as an empty table.
    """
    out = sh(*tool, "port", check=False).stdout
    found = {}
    for m in re.finditer(r"Port (\d+): <Port in Use>[^\n]*\n[^\n]*\n\s+(\S+) -> (usbip://\S+)", out):
        found[int(m.group(1))] = (m.group(2), m.group(3))
    return found


CELLS = [
    pytest.param(OURS, C_DAEMON, "host", 3250, id="our-client-c-daemon-host"),
    pytest.param(OURS, C_DAEMON, "device", 3251, id="our-client-c-daemon-device"),
    pytest.param(C, OUR_DAEMON, "host", 3252, id="c-client-our-daemon-host"),
    pytest.param(C, OUR_DAEMON, "device", 3253, id="c-client-our-daemon-device"),
]


@pytest.mark.parametrize("client, daemon, mode, tcp_port", CELLS)
def test_interop(kernel, gadgets, backing_file, daemons, client, daemon, mode, tcp_port):
    # The exporting side's own tool binds (the C daemon with C bind, ours with ours).
    binder = C if daemon == C_DAEMON else OURS
    if mode == "host":
        load_usb_hardware()
        device = usbhw.by_id("disk1" if daemon == OUR_DAEMON else "disk2")
        disk = Backing(device.backing_name(), usbhw.content(device))
        busid = bench_device(device.id)
        original_driver = os.path.basename(os.readlink("/sys/bus/usb/devices/%s/driver" % busid))
        sh(*binder, "bind", "-b", busid)
        daemons(*daemon, port=tcp_port)
    else:
        disk = backing_file(mode, seed=tcp_port)
        gadgets("ms" + mode, "usbip-vudc.1", 0x1209, 0x0003, "IOP-%d" % tcp_port, "mass_storage", disk)
        busid = "usbip-vudc.1"
        daemons(*daemon, "--device", port=tcp_port)

    listing = sh(*client, "--tcp-port", str(tcp_port), "list", "-r", "127.0.0.1").stdout
    assert "%s:" % busid in listing, listing
    sh(*client, "--tcp-port", str(tcp_port), "attach", "-r", "127.0.0.1", "-b", busid)
    url = "usbip://127.0.0.1:%d/%s" % (tcp_port, busid)
    ours_view = wait_for(lambda: port_table(OURS), 20, "our usbip port to show the attachment")
    assert [u for _, u in ours_view.values()] == [url]
    # both tools must agree on port, local busid and URL
    wait_for(lambda: port_table(C) == ours_view, 20, "the C usbip port to show %s" % ours_view)
    (port, (local_busid, _)), = ours_view.items()

    dev = block_device_of(local_busid)
    assert read_disk(dev, len(disk.data)) == disk.data

    sh(*client, "detach", "-p", str(port))
    wait_for(lambda: not port_table(C) and not port_table(OURS), 20, "the port to be free")
    status = "/sys/devices/platform/usbip-vudc.1/usbip_status" if mode == "device" else \
        "/sys/bus/usb/devices/%s/usbip_status" % busid
    wait_for(lambda: read(status) == "1", 20, "the exported device to be available again")
    if mode == "host":
        sh(*binder, "unbind", "-b", busid)
        wait_for(lambda: os.path.basename(os.readlink("/sys/bus/usb/devices/%s/driver" % busid)) == original_driver,
                 20, "the original driver to be back")
