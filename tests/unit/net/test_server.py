"""The asyncio server against a scripted backend, over 127.0.0.1.

The backend stands in for the sysfs drivers (their own tests cover sysfs);
here the subject is the connection handling: replies byte-exact, and no
client input that can stop the server from answering the next client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import threading
import time

import pytest

from tests.fuzz.server import receive_all
from usbip.daemon.catalog import Catalog
from usbip.device import DeviceStatus, Speed, UsbDevice, UsbInterface
from usbip.net.server import ServerOptions, UsbipServer
from usbip.sysfs.errors import DeviceBusy, DeviceNotFound
from usbip.sysfs.uevents import UeventWatcher

DEVICE = UsbDevice(
    path="/sys/devices/platform/dummy_hcd.0/usb17/17-1", busid="17-1", busnum=17, devnum=2, speed=Speed.HIGH,
    id_vendor=0x1209, id_product=0x0001, bcd_device=0x0100, device_class=0, device_subclass=0, device_protocol=0,
    configuration_value=1, num_configurations=1, num_interfaces=1, interfaces=(UsbInterface(8, 6, 0x50),))


class ScriptedBackend:
    mode = "host"

    def __init__(self):
        self.devices = {"17-1": DEVICE}
        self.statuses = {"17-1": DeviceStatus.AVAILABLE}
        self.exported = []
        self.scans = 0

    def scan(self):
        self.scans += 1
        return list(self.devices.values())

    def status(self, busid):
        return self.statuses.get(busid)

    def export(self, busid, sockfd):
        if busid not in self.devices:
            raise DeviceNotFound(busid)
        if self.statuses[busid] is DeviceStatus.USED:
            raise DeviceBusy(busid)
        self.exported.append((busid, sockfd))
        self.statuses[busid] = DeviceStatus.USED


def _devlist_request() -> bytes:
    return bytes.fromhex("0111800500000000")


def _import_request(busid: str) -> bytes:
    return bytes.fromhex("0111800300000000") + busid.encode().ljust(32, b"\0")


def _exchange(port: int, data: bytes, shutdown: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        return receive_all(s)


class Harness:
    """The server on its own loop thread, so tests talk to it with plain sockets."""

    def __init__(self, options: ServerOptions, backend=None):
        self.backend = backend or ScriptedBackend()
        # As usbipd builds it: the catalog over the drivers, kept current by kernel uevents.
        self.server = UsbipServer(Catalog(self.backend), options, watcher=UeventWatcher)
        self.loop = asyncio.new_event_loop()
        self.server.bind()
        self.port = self.server.listening[0].getsockname()[1]
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self):
        async def close():
            self.server.close()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def served():
    harness = Harness(ServerOptions(port=0, addresses=["127.0.0.1"], read_timeout=1.0))
    yield harness
    harness.stop()


def _devlist_ok(port: int) -> bytes:
    reply = _exchange(port, _devlist_request())
    assert reply[:8] == bytes.fromhex("0111000500000000")
    return reply


def test_devlist_reply_is_the_wire_record(served):
    reply = _devlist_ok(served.port)
    (ndev,) = struct.unpack(">I", reply[8:12])
    assert ndev == 1
    record = reply[12:]
    assert len(record) == 312 + 4
    assert record[:44].rstrip(b"\0") == b"/sys/devices/platform/dummy_hcd.0/usb17/17-1"
    assert record[256:288].rstrip(b"\0") == b"17-1"
    # busnum, devnum, speed, idVendor, idProduct, bcdDevice, class triple, config, nconfigs, nifs
    assert record[288:312] == bytes.fromhex("00000011" "00000002" "00000003" "1209" "0001" "0100" "000000" "010101")
    assert record[312:] == bytes.fromhex("08065000")


def test_devlist_hides_devices_in_use(served):
    served.backend.statuses["17-1"] = DeviceStatus.USED
    assert _devlist_ok(served.port)[8:] == b"\0\0\0\0"


def test_import_exports_the_socket_and_replies_with_the_record(served):
    reply = _exchange(served.port, _import_request("17-1"))
    assert reply[:8] == bytes.fromhex("0111000300000000")
    assert len(reply) == 8 + 312
    assert reply[8 + 256:8 + 288].rstrip(b"\0") == b"17-1"
    assert [b for b, _ in served.backend.exported] == ["17-1"]


@pytest.mark.parametrize("busid, status", [("17-1", 2), ("9-9", 4), ("../../x", 4), ("", 4)])
def test_import_refusals_use_the_c_status_codes(served, busid, status):
    served.backend.statuses["17-1"] = DeviceStatus.USED
    reply = _exchange(served.port, _import_request(busid))
    assert reply == bytes.fromhex("01110003") + struct.pack(">I", status)
    assert served.backend.exported == []


HOSTILE = [
    pytest.param(b"\xff" * 64, id="garbage"),
    pytest.param(bytes.fromhex("0111"), id="truncated-header"),
    pytest.param(bytes.fromhex("01118003000000001712"), id="truncated-import"),
    pytest.param(bytes.fromhex("0111800200000000"), id="devinfo-unimplemented"),
    pytest.param(bytes.fromhex("0111802a00000000"), id="unknown-opcode"),
    pytest.param(bytes.fromhex("0106800500000000"), id="wrong-version"),
    pytest.param(bytes.fromhex("0111800500000001"), id="nonzero-request-status"),
    pytest.param(_devlist_request() + b"\x00", id="bytes-past-request"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_input_closes_that_connection_only(served, payload):
    reply = _exchange(served.port, payload, shutdown=True)
    assert reply == b""
    _devlist_ok(served.port)
    assert served.backend.exported == []


def test_a_stalled_client_is_closed_at_the_read_timeout_and_others_are_served(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as stalled:
        stalled.sendall(_devlist_request()[:3])
        _devlist_ok(served.port)
        stalled.settimeout(5)
        assert stalled.recv(10) == b""  # closed by the server after read_timeout
    assert served.server.stats["bad"] >= 1


def test_allow_list_refuses_before_reading():
    harness = Harness(ServerOptions(port=0, addresses=["127.0.0.1"],
                                    allow=(ipaddress.ip_network("10.0.0.0/8"),)))
    try:
        assert _exchange(harness.port, _devlist_request()) == b""
        assert harness.server.stats["refused"] == 1
        assert harness.server.stats["devlist"] == 0
    finally:
        harness.stop()
    harness = Harness(ServerOptions(port=0, addresses=["127.0.0.1"],
                                    allow=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))))
    try:
        _devlist_ok(harness.port)
    finally:
        harness.stop()


def test_per_client_limit():
    harness = Harness(ServerOptions(port=0, addresses=["127.0.0.1"], max_per_client=2, read_timeout=5))
    try:
        held = [socket.create_connection(("127.0.0.1", harness.port)) for _ in range(2)]
        time.sleep(0.2)
        assert _exchange(harness.port, _devlist_request()) == b""
        for s in held:
            s.close()
        time.sleep(0.2)
        _devlist_ok(harness.port)
    finally:
        harness.stop()


def test_device_list_is_not_rescanned_per_request_when_uevents_are_watched(served):
    assert served.server.watcher.watching, served.server.watcher.method
    for _ in range(5):
        _devlist_ok(served.port)
    assert served.backend.scans == 1
    served.server.catalog.invalidate()  # what a uevent does
    _devlist_ok(served.port)
    assert served.backend.scans == 2


def test_without_pyudev_the_list_is_rescanned_per_request(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyudev(name, *args, **kwargs):
        if name == "pyudev":
            raise ImportError("no pyudev")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyudev)
    harness = Harness(ServerOptions(port=0, addresses=["127.0.0.1"]))
    try:
        assert not harness.server.watcher.watching
        assert "pyudev is not installed" in harness.server.watcher.method
        for _ in range(3):
            _devlist_ok(harness.port)
        assert harness.backend.scans == 3
    finally:
        harness.stop()
