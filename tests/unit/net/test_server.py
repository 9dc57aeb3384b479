"""The asyncio server against a scripted backend, over 127.0.0.1.

The backend stands in for the sysfs drivers (their own tests cover sysfs);
here the subject is the connection handling: replies byte-exact, and no
client input that can stop the server from answering the next client.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import resource
import selectors
import socket
import struct
import threading
import time
from types import SimpleNamespace

import pytest

from tests.fuzz.server import LogTap, receive_all
from usbip.daemon.catalog import Catalog
from usbip.device import DeviceStatus, Speed, UsbDevice, UsbInterface
from usbip.net import limits
from usbip.net import server as server_module
from usbip.net.server import ServerOptions, UsbipServer
from usbip.net.tls import TlsError
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


# -- connections seen from the protocol side, without sockets -------------------------------------
class FakeTransport:
    """What a connection uses of its asyncio transport: the peer's address, and abort()."""

    def __init__(self, peer) -> None:
        self.peer = peer
        self.aborted = False

    def get_extra_info(self, name, default=None):
        return self.peer if name == "peername" else default

    def abort(self) -> None:
        self.aborted = True


class BusyEndpoint:
    """A TLS endpoint whose handshake cap is reached: session() raises, as net.tls does past max_handshakes."""

    config = SimpleNamespace(max_handshakes=1, allow_names=frozenset())

    def session(self):
        raise TlsError("too many TLS handshakes in progress (1)")


def test_a_refused_tls_session_is_counted_logged_and_leaves_nothing_behind(caplog):
    server = UsbipServer(Catalog(ScriptedBackend()), ServerOptions(tls=BusyEndpoint()))

    async def connect_twice():
        for port in (5001, 5002):
            connection = server_module._TlsConnection(server)  # noqa: SLF001
            transport = FakeTransport(("10.0.0.7", port))
            connection.connection_made(transport)
            assert transport.aborted and connection.session is None
            connection.data_received(b"\x16\x03\x01")  # nothing may reach a missing session
            connection.connection_lost(None)  # what asyncio calls after abort()
        server.throttle.flush()

    caplog.set_level(logging.INFO, logger="usbipd")
    asyncio.run(connect_twice())
    assert server.stats["tls_refused"] == 2 and server.stats["accepted"] == 2
    assert server.active == 0 and server.connections == {}
    assert [r.getMessage() for r in caplog.records] == [
        "connection from 10.0.0.7:5001 refused: too many TLS handshakes in progress (1)",
        "1 more connections from 10.0.0.7 refused: too many TLS handshakes in progress (1)",
    ]


def test_failed_accepts_are_one_warning_and_a_count_not_a_traceback_each(served):
    tap = LogTap()
    log = logging.getLogger("usbipd")
    log.addHandler(tap)
    passed_on = []
    try:
        async def fail_accepts():
            loop = asyncio.get_running_loop()
            error = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
            for _ in range(1000):
                loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": error})
            # Anything else goes to the handler that was there before the server started.
            loop.default_exception_handler = lambda context: passed_on.append(context["message"])
            loop.call_exception_handler({"message": "something else"})
            del loop.default_exception_handler
            served.server.throttle.flush()

        asyncio.run_coroutine_threadsafe(fail_accepts(), served.loop).result(5)
    finally:
        log.removeHandler(tap)
    assert served.server.stats["accept_failed"] == 1000
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert list(tap.recent) == [
        "WARNING: cannot accept connections: Too many open files (descriptor limit %d); new clients wait" % limit,
        "WARNING: 999 more failed accepts: Too many open files",
    ]
    assert passed_on == ["something else"]
    _devlist_ok(served.port)


def test_the_listen_queue_stays_deep_while_accepts_are_few_per_pass(served):
    """200 clients connect while the loop is busy: the kernel completes every handshake at once.

    asyncio accepts ``ACCEPTS_PER_PASS`` per pass; had that number stayed the
    listen() backlog, the kernel would queue 17 and leave the others to retry
    their SYN a second later.
    """
    assert served.server.servers[0]._backlog == limits.ACCEPTS_PER_PASS  # noqa: SLF001
    busy = threading.Event()
    served.loop.call_soon_threadsafe(lambda: (busy.set(), time.sleep(1.0)))
    assert busy.wait(5)
    clients = []
    selector = selectors.DefaultSelector()
    try:
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", served.port))
            clients.append(s)
            selector.register(s, selectors.EVENT_WRITE)
        connected, deadline = 0, time.monotonic() + 0.6
        while connected < len(clients) and time.monotonic() < deadline:
            for key, _events in selector.select(0.05):
                selector.unregister(key.fileobj)
                connected += 1
    finally:
        selector.close()
        for s in clients:
            s.close()
    assert connected == 200
    _devlist_ok(served.port)
