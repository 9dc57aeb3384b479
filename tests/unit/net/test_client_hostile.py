# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client against a hostile server on 127.0.0.1: bounded memory, bounded time.

A server may claim as many devices and interfaces as the header allows, or
send its reply a byte at a time; either way the client answers within its
deadline, in memory proportional to what a real server could send, or
refuses with one line.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest

from tests.unit.net.peers import PeerServer
from usbip.net import client
from usbip.protocol.constants import MAX_DEVICES, MAX_INTERFACES

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def hostile():
    started: List[PeerServer] = []

    def start(behave) -> PeerServer:
        started.append(PeerServer(behave))
        return started[-1]

    yield start
    for server in started:
        server.close()


def devlist_reply(devices: int, interfaces: int) -> bytes:
    """A DEVLIST reply that claims ``devices`` records of ``interfaces`` interfaces each.

    Every device has interfaces of its own (no two lists alike), so that
    nothing can be shared: the worst case for the client's memory.
    """
    path = b"/sys/devices/platform/dummy_hcd.0/usb17/17-1".ljust(256, b"\0")
    records = []
    for n in range(devices):
        records.append(path + (b"17-%d" % n).ljust(32, b"\0"))
        records.append(struct.pack(">IIIHHHBBBBBB", 17, n & 0xFFFF, 3, 0x1209, 1, 0x100, 0, 0, 0, 1, 1, interfaces))
        records.append(b"".join(struct.pack(">BBBx", n & 0xFF, n >> 8 & 0xFF, i) for i in range(interfaces)))
    return struct.pack(">HHII", 0x0111, 0x0005, 0, devices) + b"".join(records)


def answer(reply: bytes):
    def behave(conn: socket.socket, _stop: threading.Event) -> None:
        conn.recv(8)
        conn.sendall(reply)

    return behave


def trickle(reply: bytes, every: float = 0.5, for_at_most: float = 10.0):
    """Send ``reply`` a byte every ``every`` s: each wait is short, the whole never ends in time."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(1024)
        end = time.monotonic() + for_at_most
        for index in range(len(reply)):
            if stop.is_set() or time.monotonic() >= end:
                return
            conn.sendall(reply[index:index + 1])
            stop.wait(every)

    return behave


# -- a reply as large as the header claims ------------------------------------------------------
#: ``usbip`` as ``python -m usbip.cli.usbip`` runs it, writing its peak RSS (``VmHWM``, KiB) to the file
#: named by its first argument when it exits.
_MEASURED = (
    "import atexit, runpy, sys\n"
    "PEAK = sys.argv.pop(1)\n"
    "def report():\n"
    "    with open('/proc/self/status') as status, open(PEAK, 'w') as out:\n"
    "        out.write(next(line for line in status if line.startswith('VmHWM:')).split()[1])\n"
    "atexit.register(report)\n"
    "sys.argv[0] = 'usbip'\n"
    "runpy.run_module('usbip.cli.usbip', run_name='__main__', alter_sys=True)\n"
)


def run_usbip(argv: List[str], tmp_path: Path, limit: float = 60.0):
    """Run ``usbip`` in a process of its own; its exit status, output, seconds and peak RSS in MiB.

    The peak is the process's own ``VmHWM``, written by the process as it
    exits: it belongs to the memory of the program after ``exec``. The
    resource usage ``wait4`` reports would not do: Linux carries the peak of
    the memory a child had before ``exec`` (a copy of the test process, large
    after a whole unit run) into its ``ru_maxrss``.
    """
    out, err, peak = tmp_path / "out", tmp_path / "err", tmp_path / "peak"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "plugins" / "module_utils"))
    started = time.monotonic()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-c", _MEASURED, str(peak)] + argv, stdout=stdout,
                                   stderr=stderr, env=env)
    watchdog = threading.Timer(limit, process.kill)
    watchdog.start()
    try:
        _pid, status, usage = os.wait4(process.pid, 0)
    finally:
        watchdog.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    del usage
    kib = float(peak.read_text()) if peak.exists() else float("inf")
    return process.returncode, out.read_text(), err.read_text(), time.monotonic() - started, kib / 1024


@pytest.mark.parametrize("output", [[], ["--json"]])
def test_the_largest_reply_a_real_server_can_send_is_listed_in_bounded_memory(hostile, tmp_path, output):
    # 8192 devices of 32 interfaces each, all different: 3.4 MiB on the wire.
    reply = devlist_reply(MAX_DEVICES, MAX_INTERFACES)
    server = hostile(answer(reply))
    rc, out, err, seconds, rss = run_usbip(["-t", str(server.port), "list", "-r", "127.0.0.1"] + output, tmp_path)
    assert (rc, err) == (0, "")
    assert out.count("17-8191") == 1 and out.count("/usb17/17-1") == MAX_DEVICES
    assert seconds < 20
    assert rss < 200, "usbip list -r used %.0f MiB for a reply of %d bytes" % (rss, len(reply))


def test_a_reply_claiming_255_interfaces_a_device_is_refused_with_one_line(hostile, tmp_path):
    # What the header allows: 8192 devices of 255 interfaces, 10.9 MB (it once cost 1 GB of RSS and 11 s).
    server = hostile(answer(devlist_reply(MAX_DEVICES, 255)))
    rc, out, err, seconds, rss = run_usbip(["-t", str(server.port), "list", "-r", "127.0.0.1"], tmp_path)
    assert (rc, out) == (1, "")
    assert err == "usbip: error: DEVLIST reply: device 17-0 claims 255 interfaces, the limit is 32\n"
    assert seconds < 20 and rss < 200


def test_list_devices_refuses_before_reading_the_rest(hostile):
    server = hostile(answer(devlist_reply(MAX_DEVICES, 255)))
    with pytest.raises(client.UsbipError, match="claims 255 interfaces, the limit is 32"):
        client.list_devices("127.0.0.1", server.port, timeout=10)


# -- a server that trickles -----------------------------------------------------------------------
def one_device_reply() -> bytes:
    return devlist_reply(1, 0)


def test_a_trickling_server_cannot_hold_list_devices_past_its_deadline(hostile):
    server = hostile(trickle(one_device_reply()))
    started = time.monotonic()
    with pytest.raises(client.NoReply, match=r"^no complete reply from 127\.0\.0\.1:%d in 3 s$" % server.port):
        client.list_devices("127.0.0.1", server.port, timeout=3)
    assert 2.9 < time.monotonic() - started < 4.0


def test_a_trickling_server_cannot_hold_an_import_past_its_deadline(hostile):
    import_reply = struct.pack(">HHI", 0x0111, 0x0003, 0) + devlist_reply(1, 0)[12:]
    server = hostile(trickle(import_reply))
    started = time.monotonic()
    with pytest.raises(client.NoReply, match="no complete reply from 127.0.0.1:%d in 1.5 s" % server.port):
        client.import_device("127.0.0.1", server.port, "17-0", timeout=1.5)
    assert 1.4 < time.monotonic() - started < 2.5


def test_a_trickling_server_cannot_hold_a_tls_handshake_past_its_deadline(hostile, tmp_path):
    from lab import pki
    from usbip.attachments import tls_endpoint

    certs = pki.make_pki(str(tmp_path))
    endpoint = tls_endpoint(ca=certs["ca"], cert=certs["client1"], key=certs["client1-key"])
    # A handshake record header announcing 16 KiB, then its body a byte at a time.
    server = hostile(trickle(bytes.fromhex("16 03 03 40 00") + b"\0" * 16384, every=0.2))
    started = time.monotonic()
    with pytest.raises(client.NoReply, match="no complete reply from 127.0.0.1:%d in 1.5 s" % server.port):
        client.list_devices("127.0.0.1", server.port, timeout=1.5, tls=endpoint)
    assert 1.4 < time.monotonic() - started < 2.5


def test_usbip_list_gives_up_on_a_trickling_server_with_one_line(hostile, tmp_path):
    server = hostile(trickle(one_device_reply()))
    rc, out, err, seconds, _rss = run_usbip(
        ["-t", str(server.port), "--timeout", "1.5", "list", "-r", "127.0.0.1"], tmp_path)
    assert (rc, out) == (1, "")
    assert err == "usbip: error: no complete reply from 127.0.0.1:%d in 1.5 s\n" % server.port
    assert seconds < 4


def test_without_a_timeout_the_exchange_has_the_default_deadline(hostile, monkeypatch):
    assert client.DEFAULT_TIMEOUT == 20.0
    monkeypatch.setattr(client, "DEFAULT_TIMEOUT", 1.0)  # the default, shortened for the test
    server = hostile(trickle(one_device_reply(), every=0.3))
    with pytest.raises(client.NoReply, match="no complete reply from 127.0.0.1:%d in 1 s" % server.port):
        client.list_devices("127.0.0.1", server.port)
