"""Our usbipd keeps its device list current from kernel uevents (no udevd in the guest).

The daemon starts with nothing to offer; a device bound afterwards must show
in the next DEVLIST, and leave it when unbound, without a restart. Its log
says which method it uses.
"""

from __future__ import annotations

import subprocess

from lab.guestkit import find_usb_device, listening, ours, sh, wait_for
from usbip.net import client

PORT = 3275


def busids() -> list:
    return [d.busid for d in client.list_devices("127.0.0.1", PORT)]


def test_bind_after_start_is_seen_through_uevents(kernel, gadgets, tmp_path):
    gadgets("events", "dummy_udc.0", 0x1209, 0x0043, "EVENTS-1", "acm")
    busid = find_usb_device(0x1209, 0x0043, serial="EVENTS-1")
    log = open(tmp_path / "usbipd.log", "w+")
    daemon = subprocess.Popen([*ours("usbipd"), "--debug", "--tcp-port", str(PORT)], stderr=log)
    try:
        wait_for(lambda: listening(PORT), 60, "usbipd listening")
        assert busids() == []
        sh(*ours("usbip"), "bind", "-b", busid)
        wait_for(lambda: busids() == [busid], 10, "the bound device in DEVLIST")
        sh(*ours("usbip"), "unbind", "-b", busid)
        wait_for(lambda: busids() == [], 10, "the unbound device gone from DEVLIST")
    finally:
        daemon.terminate()
        daemon.wait(10)
    log.seek(0)
    text = log.read()
    print(text)
    assert "device list kept current by kernel uevents (pyudev)" in text
    assert text.count("device list rebuilt") >= 2  # rebuilt on events, not per request
