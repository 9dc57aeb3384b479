# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who holds each exported device: the monitor's records, written on EXPORT, dropped once the kernel frees it."""

from __future__ import annotations

import array
import json
import os
import socket
import stat

import pytest

from usbip.daemon import ownership
from usbip.daemon.ownership import Holder, Ownership
from usbip.daemon.privsep import MAX_MESSAGE, Dispatcher, parse_request
from usbip.device import DeviceStatus
from usbip.errors import InvalidArgument
from usbip.sysfs.errors import DeviceNotFound

SINCE = "2026-01-02T03:04:05Z"


class Kernel:
    """usbip_status per busid, as the driver's ``status`` reads it; ``export`` makes a device USED."""

    mode = "host"

    def __init__(self) -> None:
        self.statuses = {"17-1": DeviceStatus.AVAILABLE, "18-2": DeviceStatus.AVAILABLE}
        self.reads = 0

    def status(self, busid):
        self.reads += 1
        if busid not in self.statuses:
            raise DeviceNotFound("device with bus ID %s does not exist" % busid)
        return self.statuses[busid]

    def export(self, busid, sockfd):
        self.statuses[busid] = DeviceStatus.USED


@pytest.fixture
def kernel():
    return Kernel()


@pytest.fixture
def records(tmp_path, kernel):
    return Ownership(kernel.status, str(tmp_path / "run" / "exports.json"), clock=lambda: SINCE)


def test_a_record_is_written_atomically_root_only_and_read_back(records, kernel, tmp_path):
    kernel.statuses["17-1"] = DeviceStatus.USED
    assert records.record("17-1", ("10.0.0.5", 40000), "dns:client.example") == \
        Holder("10.0.0.5", 40000, "dns:client.example", SINCE)
    mode = os.stat(records.path).st_mode
    assert stat.S_IMODE(mode) == 0o600 and stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o700
    assert os.listdir(tmp_path / "run") == ["exports.json"]  # no temporary file left
    assert json.loads(open(records.path).read()) == {"exports": {"17-1": {
        "host": "10.0.0.5", "port": 40000, "tls_name": "dns:client.example", "since": SINCE}}}
    assert ownership.read(records.path) == {"17-1": Holder("10.0.0.5", 40000, "dns:client.example", SINCE)}


def test_records_of_freed_or_gone_devices_are_pruned(records, kernel):
    kernel.statuses["17-1"] = kernel.statuses["18-2"] = DeviceStatus.USED
    records.record("17-1", ("10.0.0.5", 1), None)
    records.record("18-2", ("::1", 2, 0, 0), None)
    assert set(ownership.read(records.path)) == {"17-1", "18-2"}
    kernel.statuses["17-1"] = DeviceStatus.AVAILABLE  # detached: the kernel shows it free again
    assert set(records.prune()) == {"18-2"}
    del kernel.statuses["18-2"]  # unplugged
    assert records.prune() == {} and ownership.read(records.path) == {}


def test_a_prune_with_nothing_to_drop_does_not_write(records, kernel):
    kernel.statuses["17-1"] = DeviceStatus.USED
    records.record("17-1", ("10.0.0.5", 1), None)
    before = os.stat(records.path).st_ino
    records.prune()
    assert os.stat(records.path).st_ino == before
    assert Ownership(kernel.status, records.path + ".none").prune() == {}
    assert not os.path.exists(records.path + ".none")  # no file made for no record


@pytest.mark.parametrize("content", ["", "{", "[]", '{"exports": []}', '{"exports": {"../x": {}}}',
                                     '{"exports": {"17-1": {"host": "a b", "port": 1, "since": "x"}}}',
                                     '{"exports": {"17-1": {"host": "h", "port": 70000, "since": "x"}}}',
                                     '{"exports": {"17-1": {"host": "h", "port": 1, "since": "x", "tls_name": 5}}}'])
def test_a_malformed_file_reads_as_no_record(tmp_path, content):
    path = tmp_path / "exports.json"
    path.write_text(content)
    assert ownership.read(str(path)) == {}


def test_an_unwritable_file_is_one_warning_and_no_failure(tmp_path, kernel, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    records = Ownership(kernel.status, str(blocker / "exports.json"))
    kernel.statuses["17-1"] = DeviceStatus.USED
    records.record("17-1", ("10.0.0.5", 1))
    records.record("17-1", ("10.0.0.5", 1))
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("export records not written")]
    assert len(warned) == 1 and records.path in warned[0]


@pytest.mark.parametrize("value", ["", "a b", "x" * 65, "caf\u00e9", "tab\tname", "nl\n", None, 5])
def test_hostile_tls_names_are_refused(value):
    with pytest.raises(InvalidArgument):
        ownership.tls_name(value)


def test_the_path_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(ownership.PATH_ENV, raising=False)
    assert ownership.default_path() == "/run/usbip/exports.json"
    monkeypatch.setenv(ownership.PATH_ENV, "/tmp/x.json")
    assert ownership.default_path() == "/tmp/x.json"


# -- through the monitor's end of the channel ---------------------------------------------------
class Pair:
    def __init__(self, kernel, records) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.rules = 0
        self.dispatcher = Dispatcher(kernel, ["host"], self._rules, lambda: None, ownership=records)

    def _rules(self):
        self.rules += 1

    def exchange(self, data: bytes, fd=None) -> bytes:
        if fd is None:
            self.ours.sendmsg([data])
        else:
            self.ours.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        assert self.dispatcher.receive(self.theirs)
        return self.ours.recv(MAX_MESSAGE + 1)


@pytest.fixture
def connection():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _peer = listener.accept()
    yield client, accepted
    for sock in (listener, client, accepted):
        sock.close()


def test_export_records_the_peer_and_tls_name_and_rules_prune(kernel, records, connection):
    client, accepted = connection
    pair = Pair(kernel, records)
    assert pair.exchange(b"EXPORT 17-1 dns:client.example", accepted.fileno()) == b"OK"
    host, port = client.getsockname()
    assert ownership.read(records.path) == {"17-1": Holder(host, port, "dns:client.example", SINCE)}
    assert pair.exchange(b"EXPORT 18-2", accepted.fileno()) == b"OK"  # without a name: still valid
    assert ownership.read(records.path)["18-2"] == Holder(host, port, None, SINCE)
    kernel.statuses["17-1"] = DeviceStatus.AVAILABLE
    assert pair.exchange(b"RULES") == b"OK" and pair.rules == 1
    assert set(ownership.read(records.path)) == {"18-2"}


@pytest.mark.parametrize("name", [b"x" * 65, b"caf\xc3\xa9", b"a\x00b", b"../../etc/passwd" + b"x" * 60])
def test_export_with_a_hostile_tls_name_is_refused_and_changes_nothing(kernel, records, connection, name):
    _client, accepted = connection
    pair = Pair(kernel, records)
    reply = pair.exchange(b"EXPORT 17-1 " + name, accepted.fileno())
    assert reply.startswith(b"ERR invalid "), reply
    assert kernel.statuses["17-1"] is DeviceStatus.AVAILABLE and not os.path.exists(records.path)


def test_the_codec_takes_export_with_and_without_a_name():
    assert parse_request(b"EXPORT 17-1", 1).args == ("17-1",)
    assert parse_request(b"EXPORT 17-1 ip:10.0.0.5", 1).args == ("17-1", "ip:10.0.0.5")


# -- the monitor's timer ------------------------------------------------------------------------
class CountingRecords:
    def __init__(self) -> None:
        self.prunes = 0

    def prune(self):
        self.prunes += 1
        return {}


def test_the_monitor_prunes_at_start_and_on_its_timer(monkeypatch):
    import signal
    import threading
    import time

    from usbip.daemon import process
    from usbip.daemon.privsep import Channel

    def network(channel_socket, ready_fd, ping_seconds) -> int:
        Channel(channel_socket, timeout=5).call("READY")
        while True:
            time.sleep(1)

    class Notifier:
        def notify(self, *assignments):
            return True

        def reloading(self):
            return True

    monkeypatch.setattr(process, "PRUNE_SECONDS", 0.05)
    records = CountingRecords()
    service = process.Service(exporter=Kernel(), modes=("host",), apply_rules=lambda: None, network=network,
                              ownership=records)
    seen = []

    def watch():
        deadline = time.monotonic() + 10
        while records.prunes < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(records.prunes)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert process.Monitor(lambda: service, Notifier(), stop_seconds=2).run(service) == 0
    thread.join(5)
    assert seen and seen[0] >= 4  # one at start, then one every period


def test_the_proxy_sends_a_valid_tls_name_and_drops_a_hostile_one():
    from usbip.daemon.privsep import ProxyExporter

    class Recorder:
        def __init__(self) -> None:
            self.calls = []

        def call(self, op, *args, fd=None):
            self.calls.append((op, args, fd))

    channel = Recorder()
    proxy = ProxyExporter(Kernel(), channel)
    proxy.export("17-1", 7)
    proxy.export("17-1", 7, tls_name="dns:client.example")
    proxy.export("17-1", 7, tls_name="a b")  # not a token: the export goes on, unrecorded by name
    proxy.export("17-1", 7, tls_name="x" * 65)
    assert channel.calls == [("EXPORT", ("17-1",), 7), ("EXPORT", ("17-1", "dns:client.example"), 7),
                             ("EXPORT", ("17-1",), 7), ("EXPORT", ("17-1",), 7)]
