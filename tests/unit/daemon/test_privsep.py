# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The channel between usbipd's monitor and its network process, in one test process.

The monitor's end (:class:`Dispatcher`) is fed over a real SOCK_SEQPACKET
socket pair, with real descriptors of every kind: only a connected TCP
socket with a well-formed ``EXPORT`` of a served busid reaches the
exporter; everything else is answered ``ERR invalid``, its descriptors are
closed (the test counts this process's open descriptors) and the next valid
request is still served. The network process's end (:class:`Channel`,
:class:`ProxyExporter`) turns a refusal back into the driver's own error,
so the client gets the same ST_* status as from one process.
"""

from __future__ import annotations

import array
import functools
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usbip.daemon import privsep, process
from usbip.daemon.catalog import Catalog, status_for
from usbip.daemon.privsep import (
    MAX_MESSAGE,
    Channel,
    ChannelError,
    Dispatcher,
    ProxyExporter,
    Refused,
    encode_reply,
    encode_request,
    parse_reply,
    parse_request,
)
from usbip.daemon.process import Monitor, Service, unprivileged_problem
from usbip.device import DeviceStatus, Speed, UsbDevice
from usbip.errors import InvalidArgument, UsbipError
from usbip.net.server import allows
from usbip.protocol import Status
from usbip.sysfs.errors import DeviceBusy, DeviceError, DeviceNotFound, NotExportable, SysfsError

DEVICE = UsbDevice(path="/sys/devices/platform/dummy_hcd.0/usb17/17-1", busid="17-1", busnum=17, devnum=2,
                   speed=Speed.HIGH, id_vendor=0x1209, id_product=0x0001, bcd_device=0x0100, device_class=0,
                   device_subclass=0, device_protocol=0, configuration_value=1, num_configurations=1,
                   num_interfaces=0)


class FakeDriver:
    """The export interface; ``export`` records what the kernel would be handed (the peer of the socket)."""

    mode = "host"

    def __init__(self) -> None:
        self.exports: List[tuple] = []
        self.refuse: Optional[UsbipError] = None

    def check_loaded(self) -> None:
        pass

    def scan(self):
        return [DEVICE]

    def status(self, busid):
        return DeviceStatus.AVAILABLE

    def status_file(self, busid):
        raise UsbipError("no status file")

    def export(self, busid, sockfd):
        if self.refuse is not None:
            raise self.refuse
        with socket.socket(fileno=os.dup(sockfd)) as sock:
            self.exports.append((busid, sock.getpeername()))


class Pair:
    """A socket pair: the test plays the network process on ``ours``, the dispatcher serves ``theirs``."""

    def __init__(self, modes=("host",), **kw) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.driver = FakeDriver()
        self.rules = 0
        self.ready = 0
        self.pings = 0
        self.dispatcher = Dispatcher(self.driver, modes, self._rules, self._ready, on_ping=self._ping, **kw)

    def _rules(self):
        self.rules += 1

    def _ready(self):
        self.ready += 1

    def _ping(self):
        self.pings += 1

    def exchange(self, data: bytes, fds=()) -> bytes:
        """Send one message (with ``fds``), let the dispatcher serve it, return the reply."""
        if fds:
            self.ours.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", list(fds)))])
        else:
            self.ours.sendmsg([data])
        assert self.dispatcher.receive(self.theirs) is True
        return self.ours.recv(MAX_MESSAGE + 1)

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


class Descriptors:
    """Sockets, pipes and files of every kind, on 127.0.0.1 only; :meth:`close_made` closes those made so far."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.client = socket.create_connection(self.listener.getsockname())
        self.accepted, _peer = self.listener.accept()
        self.made: List[int] = []

    def make(self, kind: str) -> int:
        """A descriptor of ``kind`` (``tcp`` and ``listening`` are the fixture's own, the others new)."""
        if kind == "tcp":
            return self.accepted.fileno()
        if kind == "listening":
            return self.listener.fileno()
        if kind == "pipe":
            read_end, write_end = os.pipe()
            self.made += [read_end, write_end]
            return read_end
        if kind == "file":
            self.made.append(os.open(os.devnull, os.O_RDONLY))
            return self.made[-1]
        if kind == "udp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.connect(self.listener.getsockname())  # even connected, not a stream
        elif kind == "unconnected":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        elif kind == "unix":
            sock, other = socket.socketpair()
            self.made.append(other.detach())
        else:
            raise AssertionError(kind)
        self.made.append(sock.detach())
        return self.made[-1]

    def close_made(self) -> None:
        for fd in self.made:
            os.close(fd)
        self.made = []

    def close(self) -> None:
        self.close_made()
        for sock in (self.listener, self.client, self.accepted):
            sock.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def pair():
    made = Pair()
    yield made
    made.close()


@pytest.fixture
def descriptors():
    made = Descriptors()
    yield made
    made.close()


# -- the codec ----------------------------------------------------------------------------------
def test_requests_round_trip():
    assert encode_request("EXPORT", "17-1") == b"EXPORT 17-1"
    assert parse_request(b"EXPORT 17-1", 1) == privsep.Request("EXPORT", ("17-1",))
    assert parse_request(b"RULES", 0) == privsep.Request("RULES")
    assert parse_request(b"READY", 0) == privsep.Request("READY")
    assert encode_request("PING") == b"PING" and parse_request(b"PING", 0) == privsep.Request("PING")


@pytest.mark.parametrize("call", [("EXPORT",), ("EXPORT", "1-1", "x", "y"), ("RULES", "x"), ("DROP",),
                                  ("EXPORT", "a b"), ("EXPORT", "x" * 300), ("EXPORT", "\u00e9")])
def test_a_request_the_network_side_cannot_encode(call):
    with pytest.raises((ValueError, UnicodeEncodeError)):
        encode_request(*call)


@pytest.mark.parametrize("data, fds, why", [
    (b"", 0, "empty message"),
    (b"X" * 257, 0, "longer than 256 bytes"),
    (b"EXPORT 17-1\n", 1, "not printable ASCII"),
    (b"EXPORT\x0017-1", 1, "not printable ASCII"),
    (b"EXPORT \xc3\xa9", 1, "not printable ASCII"),
    (b"EXPORT  17-1", 1, "single spaces"),
    (b" RULES", 0, "single spaces"),
    (b"RULES ", 0, "single spaces"),
    (b"rules", 0, "unknown operation 'rules'"),
    (b"UNBIND 17-1", 0, "unknown operation 'UNBIND'"),
    (b"EXPORT", 1, "EXPORT takes 1 to 2 arguments, got 0"),
    (b"EXPORT 17-1 dns:a b", 1, "EXPORT takes 1 to 2 arguments, got 3"),
    (b"RULES now", 0, "RULES takes 0 arguments, got 1"),
    (b"EXPORT 17-1", 0, "EXPORT carries 1 descriptor, got 0"),
    (b"EXPORT 17-1", 2, "EXPORT carries 1 descriptor, got 2"),
    (b"READY", 1, "READY carries 0 descriptors, got 1"),
    (b"PING now", 0, "PING takes 0 arguments, got 1"),
    (b"PING", 1, "PING carries 0 descriptors, got 1"),
    (b"ping", 0, "unknown operation 'ping'"),
])
def test_the_codec_refuses_with_a_reason(data, fds, why):
    with pytest.raises(Refused, match=re.escape(why)):
        parse_request(data, fds)


@pytest.mark.parametrize("error, kind, cls", [
    (DeviceNotFound("requested device not found: 9-9"), "not-found", DeviceNotFound),
    (DeviceBusy("device 17-1 is already exported"), "busy", DeviceBusy),
    (NotExportable("no gadget is bound to usbip-vudc.1"), "not-exportable", NotExportable),
    (DeviceError("device 17-1 is in error state"), "error", DeviceError),
    (InvalidArgument("invalid busid"), "invalid", InvalidArgument),
    (SysfsError("write", "/sys/x", OSError(22, "Invalid argument")), "failed", UsbipError),
])
def test_a_refusal_crosses_the_channel_as_its_class_and_status(error, kind, cls):
    reply = encode_reply(error)
    assert reply.startswith(b"ERR %s " % kind.encode())
    again = parse_reply(reply)
    assert again.__class__ is cls and str(again) == str(error)  # that class exactly, not a subclass
    assert status_for(again) == status_for(error)


def test_a_reply_is_one_clipped_printable_line():
    reply = encode_reply(DeviceError("line one\nline\ttwo \u00e9 " + "x" * 400))
    assert reply.startswith(b"ERR error line one line two ? x") and len(reply) == MAX_MESSAGE
    assert all(0x20 <= b < 0x7F for b in reply)
    assert parse_reply(b"OK") is None


@pytest.mark.parametrize("reply", [b"", b"ok", b"ERR", b"ERR \xff x", b"ERR nonsense x", b"OK\n", b"E" * 300])
def test_a_malformed_reply_is_a_channel_error(reply):
    with pytest.raises(ChannelError):
        error = parse_reply(reply)
        if error is not None:
            raise AssertionError("parsed %r as %r" % (reply, error))


# -- the monitor's end --------------------------------------------------------------------------
def test_export_hands_the_connected_socket_and_closes_the_received_copy(pair, descriptors):
    before = open_fds()
    assert pair.exchange(b"EXPORT 17-1", [descriptors.make("tcp")]) == b"OK"
    assert pair.driver.exports == [("17-1", descriptors.client.getsockname())]
    assert open_fds() == before
    assert pair.exchange(b"RULES") == b"OK" and pair.rules == 1
    assert pair.exchange(b"READY") == b"OK" and pair.ready == 1


@pytest.mark.parametrize("kind, why", [
    ("pipe", "not a socket"),
    ("file", "not a socket"),
    ("udp", "not a TCP one"),
    ("listening", "a listening one"),
    ("unconnected", "not connected"),
    ("unix", "not an IPv4 or IPv6 one"),
])
def test_export_refuses_every_descriptor_but_a_connected_tcp_socket(pair, descriptors, kind, why):
    fd = descriptors.make(kind)
    before = open_fds()
    reply = pair.exchange(b"EXPORT 17-1", [fd])
    assert reply.startswith(b"ERR invalid ") and why.encode() in reply, reply
    assert pair.driver.exports == []
    assert open_fds() == before
    assert pair.exchange(b"EXPORT 17-1", [descriptors.make("tcp")]) == b"OK"  # and it still serves


@pytest.mark.parametrize("message, why", [
    (b"EXPORT ../x", "invalid busid '../x'"),
    (b"EXPORT 17-1/../../..", "invalid busid"),
    (b"EXPORT usbip-vudc.0", "usbip-vudc.0 is a device-mode device, and device mode is not served"),
    (b"EXPORT usbip-vudc.99999", "invalid busid"),
])
def test_export_refuses_busids_that_are_not_served_devices(pair, descriptors, message, why):
    reply = pair.exchange(message, [descriptors.make("tcp")])
    assert reply.startswith(b"ERR invalid ") and why.encode() in reply, reply
    assert pair.driver.exports == []


def test_device_mode_busids_pass_when_device_mode_is_served(descriptors):
    pair = Pair(modes=("device",))
    try:
        assert pair.exchange(b"EXPORT usbip-vudc.0", [descriptors.make("tcp")]) == b"OK"
        assert pair.exchange(b"EXPORT 17-1", [descriptors.make("tcp")]).startswith(b"ERR invalid 17-1 is a host")
    finally:
        pair.close()


def test_zero_two_and_too_many_descriptors_are_refused_and_all_closed(pair, descriptors):
    before = open_fds()
    assert pair.exchange(b"EXPORT 17-1").startswith(b"ERR invalid EXPORT carries 1 descriptor, got 0")
    tcp = descriptors.make("tcp")
    assert pair.exchange(b"EXPORT 17-1", [tcp, tcp]).startswith(b"ERR invalid EXPORT carries 1 descriptor, got 2")
    assert pair.exchange(b"EXPORT 17-1", [tcp] * 20).startswith(b"ERR invalid more than 8 descriptors")
    assert pair.exchange(b"RULES", [tcp]).startswith(b"ERR invalid RULES carries 0 descriptors, got 1")
    assert open_fds() == before
    assert pair.driver.exports == [] and pair.rules == 0
    assert pair.exchange(b"EXPORT 17-1", [tcp]) == b"OK"


def test_an_oversized_message_is_refused_whole(pair, descriptors):
    reply = pair.exchange(b"EXPORT 17-1" + b" " * 300, [descriptors.make("tcp")])
    assert reply == b"ERR invalid message longer than 256 bytes"
    assert pair.driver.exports == []


def test_a_driver_refusal_is_answered_with_its_kind(pair, descriptors):
    pair.driver.refuse = DeviceBusy("device 17-1 is already exported")
    assert pair.exchange(b"EXPORT 17-1", [descriptors.make("tcp")]) == b"ERR busy device 17-1 is already exported"


def test_an_unexpected_exception_is_an_answer_too(pair, descriptors):
    pair.driver.refuse = RuntimeError("planted")  # not a UsbipError: a bug in the driver
    assert pair.exchange(b"EXPORT 17-1", [descriptors.make("tcp")]) == b"ERR failed internal error"
    pair.driver.refuse = None
    assert pair.exchange(b"EXPORT 17-1", [descriptors.make("tcp")]) == b"OK"


def test_the_end_of_the_stream_is_told_apart_from_an_empty_message(pair):
    pair.ours.send(b"")
    assert pair.dispatcher.receive(pair.theirs) is True
    assert pair.ours.recv(MAX_MESSAGE) == b"ERR invalid empty message"
    pair.ours.close()
    assert pair.dispatcher.receive(pair.theirs) is False


def test_refusals_are_logged_at_a_bounded_rate(pair, caplog):
    caplog.set_level(logging.WARNING, logger="usbipd")
    clock = [0.0]
    pair.dispatcher.throttle.clock = lambda: clock[0]
    for _round in range(50):
        pair.exchange(b"NONSENSE")
    assert len(caplog.records) == 5
    assert all("refused a request from the network process: unknown operation" in r.getMessage()
               for r in caplog.records)
    clock[0] = 11.0
    pair.exchange(b"NONSENSE")
    assert [r.getMessage() for r in caplog.records[5:]] == [
        "45 more refused requests on the channel were not logged",
        "refused a request from the network process: unknown operation 'NONSENSE'"]


def test_ping_is_answered_and_told_to_the_monitor(pair):
    assert pair.exchange(b"PING") == b"OK" and pair.pings == 1
    assert pair.exchange(b"PING PING").startswith(b"ERR invalid PING takes 0 arguments") and pair.pings == 1


def test_export_refuses_a_socket_whose_peer_the_allow_list_refuses(descriptors):
    """A taken-over network process cannot hand in a connection from a network the configuration denies."""
    pair = Pair(peer_allowed=functools.partial(allows, (ipaddress.ip_network("127.0.0.2/32"),)))
    other = socket.create_connection(descriptors.listener.getsockname(), source_address=("127.0.0.2", 0))
    admitted, _peer = descriptors.listener.accept()
    try:
        before = open_fds()
        reply = pair.exchange(b"EXPORT 17-1", [descriptors.make("tcp")])  # from 127.0.0.1
        assert reply == b"ERR invalid the socket's peer 127.0.0.1 is not in the allowed client networks"
        assert pair.driver.exports == [] and open_fds() == before
        assert pair.dispatcher.stats["refused"] == 1
        assert pair.exchange(b"EXPORT 17-1", [admitted.fileno()]) == b"OK"
        assert pair.driver.exports == [("17-1", other.getsockname())]
    finally:
        for sock in (other, admitted):
            sock.close()
        pair.close()


def test_the_allow_check_the_monitor_shares_with_the_server():
    assert allows((), ("192.0.2.1", 3240)) and allows((), ("::1", 3240, 0, 0))
    assert allows((ipaddress.ip_network("10.0.0.0/8"),), ("::ffff:10.1.2.3", 1, 0, 0))  # mapped: judged as IPv4
    assert not allows((ipaddress.ip_network("10.0.0.0/8"),), ("::ffff:11.1.2.3", 1, 0, 0))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rules_requests_are_coalesced_into_one_pass_per_interval():
    """One pass at once, then at most one per interval: the requests inside it are answered OK and share a pass."""
    clock = Clock()
    pair = Pair(clock=clock, rules_interval=1.0)
    try:
        assert pair.exchange(b"RULES") == b"OK" and pair.rules == 1  # carried out at once
        assert pair.dispatcher.due() is None
        clock.now += 0.3
        for _request in range(50):
            assert pair.exchange(b"RULES") == b"OK"  # answered at once, carried out later
        assert pair.rules == 1 and pair.dispatcher.due() == 101.0
        clock.now = 100.9
        pair.dispatcher.run_due()
        assert pair.rules == 1  # not yet
        clock.now = 101.0
        pair.dispatcher.run_due()
        pair.dispatcher.run_due()
        assert pair.rules == 2 and pair.dispatcher.due() is None  # once for the 50
        clock.now = 101.5
        assert pair.exchange(b"RULES") == b"OK" and pair.rules == 2 and pair.dispatcher.due() == 102.0
        pair.dispatcher.cancel_due()  # its network process is being replaced
        clock.now = 103.0
        pair.dispatcher.run_due()
        assert pair.rules == 2
        assert pair.exchange(b"RULES") == b"OK" and pair.rules == 3  # an interval after the last pass: at once
        assert pair.dispatcher.stats["rules"] == 3 and pair.dispatcher.stats["rules_coalesced"] == 51
    finally:
        pair.close()


def test_a_rules_pass_that_fails_is_answered_at_once_and_logged_when_coalesced(caplog):
    caplog.set_level(logging.WARNING, logger="usbipd")
    clock = Clock()
    pair = Pair(clock=clock, rules_interval=1.0)
    calls = []

    def failing():
        calls.append(clock.now)
        raise DeviceError("planted")

    pair.dispatcher.apply_rules = failing
    try:
        assert pair.exchange(b"RULES") == b"ERR error planted"
        clock.now += 0.5
        assert pair.exchange(b"RULES") == b"OK"
        clock.now += 0.5
        pair.dispatcher.run_due()
        assert calls == [100.0, 101.0]
        assert [r.getMessage() for r in caplog.records] == ["export rules: planted"] * 2
    finally:
        pair.close()


# -- fuzzing the monitor's end ------------------------------------------------------------------
_VALID_USB_BUSID = re.compile(rb"[1-9][0-9]{0,2}-[1-9][0-9]{0,2}(\.[1-9][0-9]{0,2}){0,6}")


def _valid(data: bytes, kinds: List[str]) -> bool:
    """An oracle written apart from the codec: the only requests a host-mode monitor carries out."""
    if data in (b"RULES", b"READY", b"PING"):
        return not kinds
    if data.startswith(b"EXPORT ") and _VALID_USB_BUSID.fullmatch(data[7:]):
        return kinds == ["tcp"]
    return False


_WORDS = st.sampled_from([b"EXPORT", b"RULES", b"READY", b"PING", b"export", b"17-1", b"../x", b"usbip-vudc.0",
                          b"1-1.2.3", b"0-1", b"17-1/..", b" ", b"", b"\x00", b"\xff", b"\n", b"X" * 250])
_MESSAGES = st.one_of(
    st.sampled_from([b"EXPORT 17-1", b"EXPORT 1-1.2.3", b"RULES", b"READY", b"PING"]),  # valid, if the descriptors are
    st.binary(max_size=300),
    st.lists(_WORDS, min_size=1, max_size=4).map(b" ".join),
    st.builds(lambda busid: b"EXPORT " + busid, st.from_regex(rb"\A[0-9a-z./-]{1,40}\Z")),
)
_KINDS = st.lists(st.sampled_from(["tcp", "pipe", "udp", "listening", "unconnected", "unix"]), max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_MESSAGES, kinds=_KINDS)
def test_fuzzed_messages_change_nothing_and_the_monitor_keeps_serving(pair, descriptors, data, kinds):
    pair.driver.exports.clear()
    pair.rules = pair.ready = pair.pings = 0
    fds = [descriptors.make(kind) for kind in kinds]
    before = open_fds()
    try:
        reply = pair.exchange(data, fds)
        assert open_fds() == before  # what came with the message was closed
    finally:
        descriptors.close_made()
    if _valid(data, kinds):
        assert reply == b"OK", (data, kinds, reply)
    else:
        assert reply.startswith(b"ERR invalid "), (data, kinds, reply)
        assert pair.driver.exports == [] and pair.rules == 0 and pair.ready == 0 and pair.pings == 0
    assert pair.exchange(b"EXPORT 17-1", [descriptors.make("tcp")]) == b"OK"


def test_fuzzing_leaks_no_descriptor(pair, descriptors):
    """Every descriptor a refused message carried is closed: the process's table does not grow."""
    made = [descriptors.make(kind) for kind in ("tcp", "pipe", "udp", "listening", "unconnected", "unix")]
    before = open_fds()
    for round_no in range(200):
        pair.exchange(b"EXPORT ../x" if round_no % 2 else b"RULES", made[: 1 + round_no % len(made)])
    assert open_fds() == before


# -- the network process's end ------------------------------------------------------------------
class Served:
    """A dispatcher answering on a thread, as the monitor does in its own process."""

    def __init__(self, pair: Pair, answer: bool = True) -> None:
        self.pair = pair
        self.answer = answer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import select

        while not self.stop.is_set():
            readable = select.select([self.pair.theirs], [], [], 0.05)[0]
            if readable and self.answer:
                if not self.pair.dispatcher.receive(self.pair.theirs):
                    return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def test_the_proxy_exports_through_the_channel_and_reads_through_the_driver(pair, descriptors):
    served = Served(pair)
    try:
        proxy = ProxyExporter(pair.driver, Channel(pair.ours, timeout=5))
        catalog = Catalog(proxy)
        assert proxy.mode == "host" and [d.busid for d in catalog.available()] == ["17-1"]
        assert catalog.export("17-1", descriptors.make("tcp")) == DEVICE
        assert pair.driver.exports == [("17-1", descriptors.client.getsockname())]
        pair.driver.refuse = DeviceBusy("device 17-1 is already exported")
        with pytest.raises(DeviceBusy) as refused:
            catalog.export("17-1", descriptors.make("tcp"))
        assert catalog.refusal(refused.value) is Status.DEV_BUSY
        pair.driver.refuse = None
        with pytest.raises(InvalidArgument):  # validated on this side before it is sent
            proxy.export("../x", descriptors.make("tcp"))
    finally:
        served.close()


def test_a_silent_monitor_times_out_and_its_late_reply_answers_nothing(pair, descriptors):
    channel = Channel(pair.ours, timeout=0.2)
    with pytest.raises(ChannelError, match="did not answer EXPORT within 0.2 s"):
        channel.call("EXPORT", "17-1", fd=descriptors.make("tcp"))
    pair.driver.refuse = DeviceBusy("late")
    assert pair.dispatcher.receive(pair.theirs)  # the late reply: ERR busy late
    pair.driver.refuse = None
    served = Served(pair)
    try:
        with pytest.raises(ChannelError, match="did not answer EXPORT"):  # broken for good, not answered by it
            channel.call("RULES")
        assert pair.rules == 0 and channel.check() is False
    finally:
        served.close()


class SlowFirst(Served):
    """A monitor that answers its first request only after ``delay`` seconds, then at once."""

    def __init__(self, pair: Pair, delay: float) -> None:
        self.delay = delay
        self.answered = 0
        super().__init__(pair)

    def _run(self) -> None:
        import select

        while not self.stop.is_set():
            if select.select([self.pair.theirs], [], [], 0.05)[0]:
                if self.answered == 0:
                    time.sleep(self.delay)
                self.answered += 1
                if not self.pair.dispatcher.receive(self.pair.theirs):
                    return


def test_a_reply_that_comes_after_the_next_request_is_sent_never_answers_it(pair, descriptors):
    """The late reply arrives while the next call waits: only a broken channel keeps it from answering RULES."""
    pair.driver.refuse = DeviceBusy("device 17-1 is already exported")  # what the late reply says
    broken = []
    channel = Channel(pair.ours, timeout=0.2, on_broken=broken.append)
    served = SlowFirst(pair, delay=0.3)
    try:
        with pytest.raises(ChannelError, match="did not answer EXPORT within 0.2 s"):
            channel.call("EXPORT", "17-1", fd=descriptors.make("tcp"))
        with pytest.raises(ChannelError, match="did not answer EXPORT within 0.2 s"):
            channel.call("RULES")  # not sent: the ERR busy of the EXPORT cannot be taken as its answer
        time.sleep(0.4)
        assert pair.rules == 0 and served.answered == 1
        assert broken == ["the privileged process did not answer EXPORT within 0.2 s"]  # told once
        assert channel.check() is False
    finally:
        served.close()


def test_a_message_between_requests_or_a_malformed_reply_breaks_the_channel(pair):
    channel = Channel(pair.ours, timeout=1)
    pair.theirs.send(b"OK")  # nothing was asked
    assert channel.check() is False and channel.broken == \
        "unexpected message from the privileged process between requests"
    other = Pair()
    try:
        channel = Channel(other.ours, timeout=1)
        threading.Timer(0.05, lambda: other.theirs.send(b"ERR nonsense x")).start()
        with pytest.raises(ChannelError, match="unknown kind"):
            channel.call("RULES")
        with pytest.raises(ChannelError, match="unknown kind"):
            channel.call("RULES")
    finally:
        other.close()


def test_a_gone_monitor_is_a_channel_error_and_is_seen_between_calls(pair):
    channel = Channel(pair.ours, timeout=1)
    assert channel.check() is True
    pair.theirs.close()
    assert channel.check() is False and channel.gone
    with pytest.raises(ChannelError, match="gone"):
        channel.call("RULES")


# -- the dropped privileges, read back ----------------------------------------------------------
ROOT_STATUS = """Name:\tpython3
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
Groups:\t0 1
CapInh:\t0000000000000000
CapPrm:\t000001ffffffffff
CapEff:\t000001ffffffffff
CapBnd:\t000001ffffffffff
CapAmb:\t0000000000000000
"""
DROPPED_STATUS = """Name:\tpython3
Uid:\t65534\t65534\t65534\t65534
Gid:\t65534\t65534\t65534\t65534
Groups:\t
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000000
CapBnd:\t000001ffffffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t1
"""


def test_the_status_check_sees_every_privilege_left():
    assert unprivileged_problem(DROPPED_STATUS) is None
    problem = unprivileged_problem(ROOT_STATUS)
    for part in ("Uid 0 0 0 0", "Gid 0 0 0 0", "supplementary groups 0 1", "CapEff 000001ffffffffff",
                 "CapPrm 000001ffffffffff"):
        assert part in problem
    saved_uid = DROPPED_STATUS.replace("Uid:\t65534\t65534\t65534\t65534", "Uid:\t65534\t65534\t0\t65534")
    assert unprivileged_problem(saved_uid) == "Uid 65534 65534 0 65534"
    one_cap = DROPPED_STATUS.replace("CapEff:\t0000000000000000", "CapEff:\t0000000000000400")
    assert unprivileged_problem(one_cap) == "CapEff 0000000000000400"
    assert "Uid missing" in unprivileged_problem("Name:\tx\n")


def test_the_status_check_requires_no_new_privs():
    """Without no_new_privs a set-uid program the network process ran would give back what the drop took."""
    assert unprivileged_problem(DROPPED_STATUS.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0")) == "NoNewPrivs 0"
    assert unprivileged_problem(DROPPED_STATUS.replace("NoNewPrivs:\t1\n", "")) == "NoNewPrivs missing"
    assert "NoNewPrivs missing" in unprivileged_problem(ROOT_STATUS)


def test_a_late_reply_then_the_end_of_the_stream_is_seen_as_a_gone_monitor(pair, descriptors):
    channel = Channel(pair.ours, timeout=0.05)
    with pytest.raises(ChannelError, match="did not answer"):
        channel.call("RULES")
    pair.theirs.close()
    assert channel.check() is False


# -- the monitor's lifecycle, in this process ------------------------------------------------------
class Notifier:
    def __init__(self) -> None:
        self.sent: List[str] = []

    def notify(self, *assignments: str) -> bool:
        self.sent.append("\n".join(assignments))
        return True

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def count(self, assignment: str) -> int:
        return sum(1 for message in self.sent if assignment in message.split("\n"))


def _network(channel_socket, ready_fd, ping_seconds) -> int:
    """The network process of these tests: READY, then idle (or PING on time) until signalled."""
    channel = Channel(channel_socket, timeout=5)
    channel.call("READY")
    while True:
        time.sleep(ping_seconds or 1)
        if ping_seconds:
            channel.call("PING")


def _service(**kw) -> Service:
    released = []
    service = Service(exporter=FakeDriver(), modes=("host",), apply_rules=lambda: None, network=_network,
                      close=lambda: released.append(True), **kw)
    service.released_calls = released
    return service


def _drive(steps) -> threading.Thread:
    """Run ``steps`` (callables) one after the other on a thread, beside the monitor's loop.

    A step that fails stops the monitor (SIGTERM), so that a failing test ends; ``thread.failed`` holds the error.
    """
    def run():
        try:
            for step in steps:
                step()
        except BaseException as err:  # noqa: B036 - reported by the test, after the monitor stopped
            thread.failed.append(err)
            os.kill(os.getpid(), signal.SIGTERM)
    thread = threading.Thread(target=run, daemon=True)
    thread.failed = []
    thread.start()
    return thread


def _until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _children() -> List[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_a_reload_whose_rules_fail_keeps_the_network_process_and_releases_the_new_configuration():
    notifier, seen = Notifier(), {}
    first = _service()

    def broken_rules():
        raise UsbipError("planted")

    second = _service()
    second.apply_rules = broken_rules
    monitor = Monitor(lambda: second, notifier, stop_seconds=2)
    thread = _drive([
        lambda: _until(lambda: notifier.count("READY=1") == 1),
        lambda: seen.setdefault("before", _children()),
        lambda: os.kill(os.getpid(), signal.SIGHUP),
        lambda: _until(lambda: notifier.count("READY=1") == 2),
        lambda: seen.setdefault("after", _children()),
        lambda: os.kill(os.getpid(), signal.SIGTERM),
    ])
    assert monitor.run(first) == 0
    thread.join(5)
    assert len(seen["before"]) == 1 and seen["after"] == seen["before"]
    assert notifier.sent[1] == "RELOADING=1" and second.released_calls == [True]
    assert first.released_calls == [True]  # at the end, once


def test_a_reload_hands_over_to_a_new_network_process():
    notifier, seen = Notifier(), {}
    first, second = _service(), _service()
    monitor = Monitor(lambda: second, notifier, stop_seconds=2)
    thread = _drive([
        lambda: _until(lambda: notifier.count("READY=1") == 1),
        lambda: seen.setdefault("before", _children()),
        lambda: os.kill(os.getpid(), signal.SIGHUP),
        lambda: _until(lambda: notifier.count("READY=1") == 2),
        lambda: seen.setdefault("after", _children()),
        lambda: seen.setdefault("first released", list(first.released_calls)),
        lambda: os.kill(os.getpid(), signal.SIGTERM),
    ])
    assert monitor.run(first) == 0
    thread.join(5)
    assert len(seen["after"]) == 1 and seen["after"] != seen["before"]
    assert seen["first released"] == [True]  # once its network process was gone
    assert notifier.sent[-1] == "STOPPING=1" and second.released_calls == [True]


def test_a_network_process_that_dies_fails_the_monitor():
    notifier = Notifier()
    monitor = Monitor(_service, notifier, stop_seconds=2)
    thread = _drive([
        lambda: _until(lambda: notifier.count("READY=1") == 1),
        lambda: os.kill(_children()[0], signal.SIGKILL),
    ])
    assert monitor.run(_service()) == 1
    thread.join(5)
    assert _children() == []


def test_a_reload_refused_before_the_network_process_serves_waits_for_it_to_say_ready():
    """READY=1 ends a reload for systemd: it must not come while the running process is still starting."""
    notifier = Notifier()
    go_read, go_write = os.pipe()

    def slow_network(channel_socket, ready_fd, ping_seconds) -> int:
        os.read(go_read, 1)  # READY only once the test says so
        return _network(channel_socket, ready_fd, ping_seconds)

    def broken_load():
        raise UsbipError("planted")

    first = _service()
    first.network = slow_network
    monitor = Monitor(broken_load, notifier, stop_seconds=2)
    thread = _drive([
        lambda: _until(lambda: len(_children()) == 1),
        lambda: os.kill(os.getpid(), signal.SIGHUP),
        lambda: _until(lambda: notifier.count("RELOADING=1") == 1),
        lambda: time.sleep(0.2),  # the refusal is logged by now: a premature READY=1 would be sent
        lambda: os.write(go_write, b"g"),
        lambda: _until(lambda: notifier.count("READY=1") >= 1),
        lambda: time.sleep(0.1),
        lambda: os.kill(os.getpid(), signal.SIGTERM),
    ])
    try:
        assert monitor.run(first) == 0
    finally:
        thread.join(5)
        assert thread.failed == []
        os.close(go_read)
        os.close(go_write)
    ready = [message for message in notifier.sent if "READY=1" in message.split("\n")]
    assert len(ready) == 1 and "STATUS=serving" in ready[0], notifier.sent  # told by the process that serves
    assert notifier.sent.index(ready[0]) > notifier.sent.index("RELOADING=1")


def test_a_flood_of_rules_requests_makes_one_pass_at_once_and_one_at_the_end_of_the_interval():
    passes = []

    def flooding_network(channel_socket, ready_fd, ping_seconds) -> int:
        channel = Channel(channel_socket, timeout=5)
        channel.call("READY")
        for _request in range(200):
            channel.call("RULES")
        while True:
            time.sleep(1)

    service = _service()
    service.network = flooding_network
    service.apply_rules = lambda: passes.append(time.monotonic())
    notifier = Notifier()
    monitor = Monitor(_service, notifier, stop_seconds=2, rules_interval=0.3)
    thread = _drive([
        lambda: _until(lambda: len(passes) >= 3),
        lambda: time.sleep(0.7),  # two more intervals: no pass is left to come
        lambda: os.kill(os.getpid(), signal.SIGTERM),
    ])
    assert monitor.run(service) == 0
    thread.join(5)
    assert thread.failed == []
    assert len(passes) == 3, passes  # at start, the first request, one for the 199 others
    assert passes[2] - passes[1] >= 0.3 - 0.01


def test_the_watchdog_is_fed_by_the_network_process_pings_and_starves_when_it_hangs():
    notifier = Notifier()
    monitor = Monitor(_service, notifier, stop_seconds=2, watchdog_seconds=0.3)  # a PING every 0.1 s
    seen = {}

    def hang_and_count():
        child = _children()[0]
        os.kill(child, signal.SIGSTOP)  # its loop is stuck
        try:
            time.sleep(0.15)
            before = notifier.count("WATCHDOG=1")
            time.sleep(0.6)
            seen["while hung"] = notifier.count("WATCHDOG=1") - before
        finally:
            os.kill(child, signal.SIGCONT)

    thread = _drive([
        lambda: _until(lambda: notifier.count("WATCHDOG=1") >= 3),
        hang_and_count,
        lambda: seen.setdefault("resumed", notifier.count("WATCHDOG=1")),
        lambda: _until(lambda: notifier.count("WATCHDOG=1") > seen["resumed"]),
        lambda: os.kill(os.getpid(), signal.SIGTERM),
    ])
    assert monitor.run(_service()) == 0
    thread.join(5)
    assert thread.failed == []
    assert seen["while hung"] == 0
    first_ready = next(i for i, m in enumerate(notifier.sent) if "READY=1" in m.split("\n"))
    assert all(i > first_ready for i, m in enumerate(notifier.sent) if m == "WATCHDOG=1")  # only once serving


def test_without_a_watchdog_the_network_process_does_not_ping():
    notifier = Notifier()
    monitor = Monitor(_service, notifier, stop_seconds=2)
    assert monitor.ping_seconds is None
    thread = _drive([
        lambda: _until(lambda: notifier.count("READY=1") == 1),
        lambda: time.sleep(0.3),
        lambda: os.kill(os.getpid(), signal.SIGTERM),
    ])
    assert monitor.run(_service()) == 0
    thread.join(5)
    assert thread.failed == []
    assert notifier.count("WATCHDOG=1") == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_the_drop_in_a_child_leaves_nothing_and_sets_no_new_privs_before_losing_the_standard_library():
    """In a forked child, as the network process: ctypes is not imported yet (pyudev would import it),
    and the standard library may be readable by root only (a Python installed under /root): prctl is
    looked up before the drop, so no_new_privs is set all the same."""
    target = process.account("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            for name in [n for n in sys.modules if n == "ctypes" or n.startswith("ctypes.")]:
                del sys.modules[name]
            process.drop_privileges(target)
            with open("/proc/self/status") as f:
                os.write(write_end, f.read().encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    fields = {key: value.split() for key, _sep, value in (line.partition(":") for line in text.splitlines())}
    assert fields["Uid"] == [str(target.uid)] * 4 and fields["Gid"] == [str(target.gid)] * 4
    assert fields["CapEff"] == ["0000000000000000"] and fields["NoNewPrivs"] == ["1"]
