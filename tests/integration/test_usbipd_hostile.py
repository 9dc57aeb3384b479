"""Our usbipd, on the real kernel, outlives hostile clients and keeps serving.

After each garbage, truncated or unknown request (and a client that hangs up
mid-message), a normal DEVLIST still lists the bound device.
"""

from __future__ import annotations

import socket

from lab.guestkit import find_usb_device, ours, sh
from usbip.net import client

PORT = 3270
HOSTILE = [
    b"\xff" * 100,
    bytes.fromhex("0111"),                            # truncated header, then hang up
    bytes.fromhex("0111800300000000") + b"17-",       # truncated import
    bytes.fromhex("0111800200000000"),                # DEVINFO: defined, never implemented
    bytes.fromhex("01118099") + b"\0" * 4,            # unknown opcode
    bytes.fromhex("0106800500000000"),                # wrong version
    bytes.fromhex("0111800300000000") + b"../../../sys/x".ljust(32, b"\0"),  # path-like busid
    bytes.fromhex("0111800300000000") + b"A" * 32,    # busid without NUL
    bytes.fromhex("0111800500000000") + b"trailing",  # bytes past the request
]


def test_hostile_requests_then_devlist(kernel, gadgets, daemons):
    gadgets("hostile", "dummy_udc.0", 0x1209, 0x0042, "HOSTILE-1", "acm")
    busid = find_usb_device(0x1209, 0x0042, serial="HOSTILE-1")
    sh(*ours("usbip"), "bind", "-b", busid)
    try:
        daemons(*ours("usbipd"), port=PORT)
        for payload in HOSTILE:
            with socket.create_connection(("127.0.0.1", PORT), timeout=5) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(15)
                reply = s.recv(4096)
                # Only a well-formed import of a bad busid gets an answer: ST_NODEV, no device.
                assert reply in (b"", bytes.fromhex("0111000300000004")), (payload, reply)
            devices = client.list_devices("127.0.0.1", PORT)
            assert [d.busid for d in devices] == [busid], payload
        with open("/sys/bus/usb/devices/%s/usbip_status" % busid) as f:
            assert f.read().strip() == "1"  # nothing was exported by any of it
    finally:
        sh(*ours("usbip"), "unbind", "-b", busid)
