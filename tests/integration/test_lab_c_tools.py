"""The lab proves itself with the reference peer: Debian's C usbipd/usbip.

One device-mode gadget (usbip-vudc) and one host-mode device (a gadget on
dummy_hcd, bound to usbip-host) are exported by the C daemons, attached over
127.0.0.1 by the C client, read through as disks, detached and unbound; the
kernel must end where it started.
"""

from __future__ import annotations

import os
import re

from lab.guestkit import block_device_of, find_usb_device, read_disk, sh, wait_for

VHCI = "/sys/devices/platform/vhci_hcd.0"
STUB = "/sys/bus/usb/drivers/usbip-host"


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def kernel_state(busid: str) -> dict:
    """What attach/bind touch: every vhci status file, match_busid, the device's driver, vudc status."""
    state = {name: read(os.path.join(VHCI, name)) for name in sorted(os.listdir(VHCI)) if name.startswith("status")}
    state["match_busid"] = read(os.path.join(STUB, "match_busid"))
    state["driver"] = os.path.basename(os.readlink("/sys/bus/usb/devices/%s/driver" % busid))
    state["vudc0"] = read("/sys/devices/platform/usbip-vudc.0/usbip_status")
    return state


def imported_ports() -> dict:
    """Port -> (local busid, remote URL) parsed from the C ``usbip port``.

    The C tool fails now and then ("open vhci_driver") while a device is
    still being attached; callers poll, so a failed run reads as no ports.
    """
    out = sh("usbip", "port", check=False).stdout
    ports = {}
    for m in re.finditer(r"Port (\d+): <Port in Use>.*?\n.*?\n\s+(\S+) -> (usbip://\S+)", out):
        ports[int(m.group(1))] = (m.group(2), m.group(3))
    return ports


def test_c_tools_export_attach_read_detach(kernel, gadgets, backing_file, daemons):
    dev_disk = backing_file("vudc", seed=11)
    host_disk = backing_file("dummy", seed=22)
    gadgets("labvudc", "usbip-vudc.0", 0x1d6b, 0x0104, "LAB-VUDC-0", "mass_storage", dev_disk)
    gadgets("labhost", "dummy_udc.0", 0x1209, 0x0001, "LAB-HOST-0", "mass_storage", host_disk)
    busid = find_usb_device(0x1209, 0x0001, serial="LAB-HOST-0")
    before = kernel_state(busid)
    assert before["match_busid"].strip() == ""
    assert before["driver"] == "usb"

    # device mode: the vudc gadget is exported as usbip-vudc.0
    daemons("usbipd", "--device", port=3240)
    listing = sh("usbip", "--tcp-port", "3240", "list", "-r", "127.0.0.1").stdout
    assert "usbip-vudc.0: Linux Foundation" in listing and "(1d6b:0104)" in listing

    # host mode: the dummy_hcd device is bound to usbip-host and exported
    sh("usbip", "bind", "-b", busid)
    assert read(os.path.join(STUB, "match_busid")).split() == [busid]
    daemons("usbipd", port=3241)
    listing = sh("usbip", "--tcp-port", "3241", "list", "-r", "127.0.0.1").stdout
    assert "%s: " % busid in listing and "(1209:0001)" in listing

    sh("usbip", "--tcp-port", "3240", "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.0")
    sh("usbip", "--tcp-port", "3241", "attach", "-r", "127.0.0.1", "-b", busid)
    ports = wait_for(lambda: len(imported_ports()) == 2 and imported_ports(), 20, "two imported ports")
    remotes = sorted(url for _, url in ports.values())
    assert remotes == ["usbip://127.0.0.1:3240/usbip-vudc.0", "usbip://127.0.0.1:3241/%s" % busid]
    assert read("/sys/devices/platform/usbip-vudc.0/usbip_status").strip() == "2"
    assert read("/sys/bus/usb/devices/%s/usbip_status" % busid).strip() == "2"

    # the data path: each attached disk reads back its backing file
    for local_busid, url in ports.values():
        expected = dev_disk if url.endswith("usbip-vudc.0") else host_disk
        disk = block_device_of(local_busid)
        assert read_disk(disk, len(expected.data)) == expected.data, "data mismatch through %s" % url

    for port in sorted(ports, reverse=True):
        sh("usbip", "detach", "-p", str(port))
    wait_for(lambda: not imported_ports(), 20, "all ports free")
    sh("usbip", "unbind", "-b", busid)
    wait_for(lambda: kernel_state(busid) == before, 20, "the kernel's starting state")
