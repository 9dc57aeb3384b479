# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The channel between usbipd's two processes, and the closed set of requests it carries.

Started as root, usbipd splits in two (see :mod:`usbip.daemon.process`): a
privileged monitor, the only process that writes sysfs, and a network process
that binds, drops to an unprivileged account and speaks to clients. They talk
over one ``SOCK_SEQPACKET`` socket pair: one request, one reply, printable
ASCII, at most :data:`MAX_MESSAGE` bytes.

The network process is the one a hostile client could take over, so the
monitor believes nothing it is told: every request is parsed and checked
again where it is carried out (operation, arity, busid and the mode that
serves it, the kind of descriptor passed). Anything else is answered
``ERR invalid <why>``, its descriptors are closed and nothing changes.

Replies carry no sequence number: the two ends stay in step because each
request waits for its reply. A request that is not answered within
:data:`CALL_TIMEOUT` (or a reply nobody asked for, or a malformed one)
breaks the channel for good instead of being skipped, since a late reply
would otherwise be read as the answer to the next request. The network
process then stops with one log line, the monitor exits with a failure
status when it sees it go, and the service manager restarts the service
(exports live in the kernel and stay).

The module has three parts:

* the codec, without I/O: :func:`encode_request`, :func:`parse_request`,
  :func:`encode_reply`, :func:`parse_reply`, and the error kinds that carry a
  driver's refusal across (so the client still gets the right ST_* status);
* :class:`Dispatcher`, the monitor's end: receives one message, checks it,
  acts, replies;
* :class:`Channel` and :class:`ProxyExporter`, the network process's end:
  the catalog's exporter whose reads go to the read-only drivers and whose
  ``export`` asks the monitor.

A new operation is one entry in :data:`OPERATIONS`, one branch in
:meth:`Dispatcher.carry_out` that validates its arguments, and one caller.
"""

from __future__ import annotations

import array
import dataclasses
import logging
import os
import select
import socket
import stat
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type

from .. import validate
from ..device import DeviceStatus, UsbDevice
from ..errors import InvalidArgument, UsbipError
from ..sysfs.errors import DeviceBusy, DeviceError, DeviceNotFound, NotExportable
from ..throttle import LogThrottle
from .ownership import tls_name as valid_tls_name

log = logging.getLogger("usbipd")

#: The longest message either side sends or accepts, in bytes.
MAX_MESSAGE = 256
#: Descriptors read from one message at most (more are dropped by the kernel); any count
#: other than the operation's is refused, and every descriptor received is closed.
MAX_RECEIVED_FDS = 8
#: Seconds the network process waits for a reply before it answers its client ST_NA and breaks the channel.
CALL_TIMEOUT = 10.0
#: The monitor applies the export rules at most once in this many seconds, whatever the network process asks.
RULES_INTERVAL = 1.0

EXPORT = "EXPORT"
RULES = "RULES"
READY = "READY"
PING = "PING"
#: The closed set of requests: operation -> (number of arguments, number of descriptors).
OPERATIONS: Dict[str, Tuple[int, int]] = {
    EXPORT: (1, 1),  # EXPORT <busid> [<tls-name>] + the client's connected TCP socket
    RULES: (0, 0),  # re-apply the export rules (the network process saw a hotplug)
    READY: (0, 0),  # the network process listens on every socket and serves
    PING: (0, 0),  # the network process's event loop is alive (the monitor feeds systemd's watchdog)
}
#: Optional trailing arguments an operation may carry beyond its arity (EXPORT: the client's TLS name).
OPTIONAL_ARGUMENTS: Dict[str, int] = {EXPORT: 1}

#: Error kinds of an ``ERR`` reply, most specific first, and the class raised again on the network side.
KINDS: Tuple[Tuple[str, Type[UsbipError]], ...] = (
    ("not-found", DeviceNotFound),
    ("busy", DeviceBusy),
    ("not-exportable", NotExportable),
    ("error", DeviceError),
    ("invalid", InvalidArgument),
    ("failed", UsbipError),
)
_CLASS_OF = dict(KINDS)

_ANCILLARY_SPACE = socket.CMSG_SPACE(MAX_RECEIVED_FDS * array.array("i").itemsize)


class ChannelError(UsbipError):
    """The channel itself failed: the other process is gone, silent, or answered nonsense."""


class Refused(Exception):
    """A request the monitor will not carry out; the text says why (it goes into ``ERR invalid``)."""


@dataclasses.dataclass(frozen=True)
class Request:
    """A request that passed the codec's checks: a known operation with its number of arguments."""

    op: str
    args: Tuple[str, ...] = ()


# -- the codec ----------------------------------------------------------------------------------
def encode_request(op: str, *args: str) -> bytes:
    """The bytes of one request; a caller's mistake (unknown op, wrong arity, bad text) raises ValueError."""
    if op not in OPERATIONS or not _arity_ok(op, len(args)):
        raise ValueError("not a request of the channel: %r %r" % (op, args))
    data = " ".join((op,) + args).encode("ascii")
    if len(data) > MAX_MESSAGE or not _printable(data) or any(not a or " " in a for a in args):
        raise ValueError("not a request of the channel: %r" % (data,))
    return data


def parse_request(data: bytes, descriptors: int) -> Request:
    """Check one received message (``descriptors`` came with it); :class:`Refused` says why not."""
    if not data:
        raise Refused("empty message")
    if len(data) > MAX_MESSAGE:
        raise Refused("message longer than %d bytes" % MAX_MESSAGE)
    if not _printable(data):
        raise Refused("message is not printable ASCII")
    words = data.decode("ascii").split(" ")
    if "" in words:
        raise Refused("words must be separated by single spaces")
    op, args = words[0], tuple(words[1:])
    if op not in OPERATIONS:
        raise Refused("unknown operation %s" % _clip(op))
    arity, fds = OPERATIONS[op]
    if not _arity_ok(op, len(args)):
        optional = OPTIONAL_ARGUMENTS.get(op, 0)
        raise Refused("%s takes %s argument%s, got %d" % (
            op, "%d to %d" % (arity, arity + optional) if optional else "%d" % arity,
            "" if arity + optional == 1 else "s", len(args)))
    if descriptors != fds:
        raise Refused("%s carries %d descriptor%s, got %d" % (op, fds, "" if fds == 1 else "s", descriptors))
    return Request(op, args)


def _arity_ok(op: str, count: int) -> bool:
    arity = OPERATIONS[op][0]
    return arity <= count <= arity + OPTIONAL_ARGUMENTS.get(op, 0)


def kind_of(error: BaseException) -> str:
    """The ``ERR`` kind of an error (``failed`` for anything the list does not name)."""
    for kind, cls in KINDS:
        if isinstance(error, cls):
            return kind
    return "failed"


def encode_reply(error: Optional[BaseException] = None, kind: Optional[str] = None) -> bytes:
    """``OK``, or ``ERR <kind> <one line>`` for ``error`` (its kind unless ``kind`` is given)."""
    if error is None:
        return b"OK"
    kind = kind or kind_of(error)
    text = " ".join(str(error).split()) or type(error).__name__
    data = ("ERR %s %s" % (kind, text)).encode("ascii", "replace")
    data = bytes(b if 0x20 <= b < 0x7F else 0x3F for b in data)
    return data[:MAX_MESSAGE]


def parse_reply(data: bytes) -> Optional[UsbipError]:
    """None for ``OK``; the error to raise for ``ERR`` (the class its kind names); ChannelError if malformed."""
    if data == b"OK":
        return None
    if len(data) > MAX_MESSAGE or not _printable(data) or not data.startswith(b"ERR "):
        raise ChannelError("malformed reply from the privileged process: %r" % data[:64])
    _err, kind, message = (data.decode("ascii").split(" ", 2) + [""])[:3]
    cls = _CLASS_OF.get(kind)
    if cls is None:
        raise ChannelError("reply of an unknown kind from the privileged process: %s" % _clip(kind))
    return cls(message or kind)


def _printable(data: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in data)


def _clip(word: str, most: int = 32) -> str:
    return repr(word if len(word) <= most else word[:most] + "...")


# -- the monitor's end --------------------------------------------------------------------------
class Dispatcher:
    """The monitor's end of one network process's channel: check each request again, carry it out, reply.

    ``exporter`` is the real driver (or both); ``modes`` the modes served, so
    that a busid of another mode is refused before any sysfs path is built;
    ``peer_allowed(address)`` is the daemon's allow-list as the monitor's
    configuration has it (the server's own check, handed in by the command
    line), so that an exported socket's peer is judged again here;
    ``apply_rules``, ``on_ready`` and ``on_ping`` carry out ``RULES``,
    ``READY`` and ``PING``; ``ownership`` (a
    :class:`usbip.daemon.ownership.Ownership`, or None) records who each
    exported device went to, and is pruned on each ``RULES``. Nothing a
    message holds can raise out of :meth:`receive`.

    ``RULES`` rescans sysfs, and a network process that was taken over could
    ask for it in a loop. So the monitor (:class:`usbip.daemon.process.Monitor`)
    gives a ``rules_interval`` (:data:`RULES_INTERVAL`; 0, the default, is no
    limit) and the rules are applied at most once per
    ``rules_interval``: a request after that long is carried out at once and
    answered with its outcome; a request inside the interval is answered
    ``OK`` at once and coalesced with any others into one pass when the
    interval ends (:meth:`due`, :meth:`run_due`, called by the monitor's
    loop), whose failure is logged. A device plugged in during the interval
    is therefore still bound, one interval later at most.
    """

    def __init__(self, exporter, modes: Sequence[str], apply_rules: Callable[[], object],
                 on_ready: Callable[[], object], clock: Callable[[], float] = time.monotonic,
                 on_ping: Callable[[], object] = lambda: None,
                 peer_allowed: Callable[[Tuple], bool] = lambda address: True,
                 rules_interval: float = 0.0, ownership=None) -> None:
        self.exporter = exporter
        self.ownership = ownership
        self.modes = frozenset(modes)
        self.apply_rules = apply_rules
        self.on_ready = on_ready
        self.on_ping = on_ping
        self.peer_allowed = peer_allowed
        self.clock = clock
        self.rules_interval = rules_interval
        #: When the rules were last applied on a request, and when a coalesced pass is due (None: none is).
        self.rules_applied: Optional[float] = None
        self.rules_due: Optional[float] = None
        #: Refusals are logged five at most every ten seconds: a taken-over network process must not fill the journal.
        self.throttle = LogThrottle(log, interval=10.0, burst=5, clock=clock)
        self.stats = {"handled": 0, "refused": 0, "exported": 0, "rules": 0, "rules_coalesced": 0}

    def receive(self, sock: socket.socket) -> bool:
        """Serve the message waiting on ``sock``; False once the other end is gone."""
        try:
            data, ancdata, flags, _address = sock.recvmsg(
                MAX_MESSAGE + 1, _ANCILLARY_SPACE, socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        fds, foreign = _descriptors(ancdata)
        try:
            if not data and not fds and not foreign and not flags & socket.MSG_TRUNC and _hung_up(sock):
                return False
            reply = self.answer(data, fds, flags, foreign)
        finally:
            for fd in fds:
                _close(fd)
        try:
            sock.send(reply)
        except OSError:
            return False
        return True

    def answer(self, data: bytes, fds: Sequence[int], flags: int = 0, foreign: int = 0) -> bytes:
        """The reply to one message; ``fds`` stay open (the caller closes them)."""
        self.stats["handled"] += 1
        try:
            if flags & socket.MSG_TRUNC:
                raise Refused("message longer than %d bytes" % MAX_MESSAGE)
            if flags & socket.MSG_CTRUNC:
                raise Refused("more than %d descriptors" % MAX_RECEIVED_FDS)
            if foreign:
                raise Refused("ancillary data other than descriptors")
            request = parse_request(data, len(fds))
            return self.carry_out(request, fds)
        except Refused as why:
            self.stats["refused"] += 1
            self.throttle.event("refused requests on the channel were not logged", logging.WARNING,
                                "refused a request from the network process: %s", why)
            return encode_reply(Refused(str(why)), kind="invalid")
        except Exception as err:  # the monitor must outlive any one message
            self.stats["refused"] += 1
            self.throttle.event("internal errors serving the network process were not logged", logging.WARNING,
                                "internal error serving the network process: %s", err, exc_info=True)
            return encode_reply(UsbipError("internal error"), kind="failed")

    def carry_out(self, request: Request, fds: Sequence[int]) -> bytes:
        """Each operation checks its own arguments here, then acts."""
        if request.op == EXPORT:
            busid = self._served_busid(request.args[0])
            name = self._tls_name(request.args[1]) if len(request.args) > 1 else None
            peer = check_tcp_connection(fds[0])
            if not self.peer_allowed(peer):
                raise Refused("the socket's peer %s is not in the allowed client networks" % (peer[0],))
            try:
                self.exporter.export(busid, fds[0])
            except UsbipError as err:
                log.debug("export of %s refused: %s", busid, err)
                return encode_reply(err)
            self.stats["exported"] += 1
            self._record(busid, peer, name)
            return encode_reply()
        if request.op == RULES:
            now = self.clock()
            if self.rules_due is None and self.rules_applied is not None and \
                    now - self.rules_applied < self.rules_interval:
                self.rules_due = self.rules_applied + self.rules_interval
            if self.rules_due is not None:
                self.stats["rules_coalesced"] += 1
                return encode_reply()  # carried out with the others when the interval ends
            error = self._apply_rules(now)
            self.prune()
            return encode_reply(error)
        if request.op == READY:
            self.on_ready()
            return encode_reply()
        if request.op == PING:
            self.on_ping()
            return encode_reply()
        raise Refused("unknown operation %s" % _clip(request.op))  # an OPERATIONS entry without its branch

    def due(self) -> Optional[float]:
        """When a coalesced ``RULES`` pass is due (a :func:`time.monotonic` time), or None."""
        return self.rules_due

    def run_due(self) -> None:
        """Carry out the coalesced ``RULES`` pass if its time has come."""
        if self.rules_due is not None and self.clock() >= self.rules_due:
            self.rules_due = None
            try:
                self._apply_rules(self.clock())
                self.prune()
            except Exception as err:  # noqa: BLE001 - the monitor must outlive a bug in the rules
                self.throttle.event("internal errors serving the network process were not logged", logging.WARNING,
                                    "internal error applying the export rules: %s", err, exc_info=True)

    def cancel_due(self) -> None:
        """Forget a coalesced pass (the network process that asked for it is being replaced)."""
        self.rules_due = None

    def _apply_rules(self, now: float) -> Optional[UsbipError]:
        self.rules_applied = now
        self.stats["rules"] += 1
        try:
            self.apply_rules()
        except UsbipError as err:
            self.throttle.event("failures of the export rules were not logged", logging.WARNING,
                                "export rules: %s", err)
            return err
        return None

    def prune(self) -> None:
        """Drop the ownership records of devices the kernel shows free again (never raises)."""
        if self.ownership is None:
            return
        try:
            self.ownership.prune()
        except Exception as err:  # noqa: BLE001 - the records are a report; the monitor must go on
            self.throttle.event("failures of the export records were not logged", logging.WARNING,
                                "export records not pruned: %s", err)

    def _record(self, busid: str, peer: Tuple, name: Optional[str]) -> None:
        if self.ownership is None:
            return
        try:
            self.ownership.record(busid, peer, name)
        except Exception as err:  # noqa: BLE001 - the export is done; a failed record must not undo its OK
            self.throttle.event("failures of the export records were not logged", logging.WARNING,
                                "export of %s to %s not recorded: %s", busid, peer[0], err)

    @staticmethod
    def _tls_name(value: str) -> str:
        try:
            return valid_tls_name(value)
        except InvalidArgument as err:
            raise Refused(str(err)) from None

    def _served_busid(self, value: str) -> str:
        try:
            busid = validate.busid(value)
        except InvalidArgument as err:
            raise Refused(str(err)) from None
        mode = "device" if busid.startswith("usbip-vudc.") else "host"
        if mode not in self.modes:
            raise Refused("%s is a %s-mode device, and %s mode is not served" % (busid, mode, mode))
        return busid


def check_tcp_connection(fd: int) -> Tuple:
    """Refuse anything but a connected TCP socket (IPv4 or IPv6): what the kernel may serve a device on.

    Returns the socket's peer address (``getpeername``).
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError as err:
        raise Refused("unusable descriptor: %s" % err.strerror) from None
    if not stat.S_ISSOCK(mode):
        raise Refused("the descriptor is not a socket")
    try:
        sock = socket.socket(fileno=fd)
    except OSError as err:
        raise Refused("unusable socket: %s" % err.strerror) from None
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise Refused("the socket is not an IPv4 or IPv6 one")
        if sock.type != socket.SOCK_STREAM or sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) != \
                socket.IPPROTO_TCP:
            raise Refused("the socket is not a TCP one")
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise Refused("the socket is a listening one")
        try:
            return sock.getpeername()
        except OSError:
            raise Refused("the socket is not connected") from None
    except OSError as err:
        raise Refused("unusable socket: %s" % err.strerror) from None
    finally:
        sock.detach()


def _descriptors(ancdata: List[Tuple[int, int, bytes]]) -> Tuple[List[int], int]:
    """The descriptors received (to check, then close), and how many other control messages came."""
    fds: List[int] = []
    foreign = 0
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            numbers = array.array("i")
            numbers.frombytes(data[: len(data) - len(data) % numbers.itemsize])
            fds.extend(numbers)
        else:
            foreign += 1
    return fds, foreign


def _hung_up(sock: socket.socket) -> bool:
    """Whether an empty read was the end of the stream (the peer closed), not an empty message."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return any(events & (select.POLLHUP | select.POLLERR) for _fd, events in poller.poll(0))


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# -- the network process's end ------------------------------------------------------------------
class Channel:
    """The network process's end: one request at a time, its reply awaited at most ``timeout`` seconds.

    The event loop is single-threaded and each call blocks it briefly (an
    export is one sysfs write in the monitor), so requests never overlap.

    Replies carry no sequence number, so a reply can only be matched to its
    request while the two processes are in step. A call that times out
    breaks that: the monitor may still answer it later, and that late reply
    would read as the answer to the next request. So a timeout (like the end
    of the stream, a failed send or a malformed reply) breaks the channel for
    good: every later call raises :class:`ChannelError` without sending,
    :meth:`check` returns False, and ``on_broken(why)`` is called once. The
    network process then stops; the monitor sees it exit and exits with a
    failure status, and the service manager restarts both.
    """

    def __init__(self, sock: socket.socket, timeout: float = CALL_TIMEOUT,
                 on_broken: Optional[Callable[[str], object]] = None) -> None:
        self.sock = sock
        self.timeout = timeout
        self.on_broken = on_broken
        #: Why the channel is broken (None while it works).
        self.broken: Optional[str] = None

    @property
    def gone(self) -> bool:
        return self.broken is not None

    def fileno(self) -> int:
        return self.sock.fileno()

    def call(self, op: str, *args: str, fd: Optional[int] = None) -> None:
        """Send one request and wait for its reply; an ``ERR`` reply is raised as its error class."""
        data = encode_request(op, *args)
        if self.broken is not None:
            raise ChannelError(self.broken)
        try:
            if fd is None:
                self.sock.send(data)
            else:
                self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        except OSError as err:
            raise self._break("the privileged process is gone (%s)" % (err.strerror or err)) from None
        reply = self._receive(self.timeout)
        if reply is None:
            raise self._break("the privileged process did not answer %s within %g s" % (op, self.timeout))
        try:
            error = parse_reply(reply)
        except ChannelError as err:
            raise self._break(str(err)) from None
        if error is not None:
            raise error

    def check(self) -> bool:
        """Called when the socket is readable between calls: False if the channel is broken or the monitor gone.

        Between calls nothing may arrive but the end of the stream: any
        message there is out of step, and breaks the channel too.
        """
        if self.broken is not None:
            return False
        try:
            data = self.sock.recv(MAX_MESSAGE + 1, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        self._break("the privileged process is gone" if not data else
                    "unexpected message from the privileged process between requests")
        return False

    def _break(self, why: str) -> ChannelError:
        """Mark the channel broken (the first reason stays), tell ``on_broken`` once; the error to raise."""
        if self.broken is None:
            self.broken = why
            if self.on_broken is not None:
                self.on_broken(why)
        return ChannelError(why)

    def _receive(self, timeout: float) -> Optional[bytes]:
        """The next message, None if none came in ``timeout`` seconds; ChannelError at the end of the stream."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            if poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                try:
                    data = self.sock.recv(MAX_MESSAGE + 1, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    raise self._break("the privileged process is gone")
                return data
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        self.sock.close()


class ProxyExporter:
    """The catalog's exporter in the network process: the driver's export interface, exports by the monitor.

    ``scan``, ``status``, ``status_file`` and ``check_loaded`` read sysfs
    (read-only attributes are world-readable); ``export`` passes the client's
    socket to the monitor, and a refusal comes back as the driver's own error
    class, so that :meth:`usbip.daemon.catalog.Catalog.refusal` answers the
    same ST_* status as in one process.
    """

    def __init__(self, driver, channel: Channel) -> None:
        self.driver = driver
        self.channel = channel
        self.mode = driver.mode

    def check_loaded(self) -> None:
        self.driver.check_loaded()

    def scan(self) -> List[UsbDevice]:
        return self.driver.scan()

    def status(self, busid: str) -> Optional[DeviceStatus]:
        return self.driver.status(busid)

    def status_file(self, busid: str) -> str:
        return self.driver.status_file(busid)

    def export(self, busid: str, sockfd: int, tls_name: Optional[str] = None) -> None:
        """Ask the monitor to export; ``tls_name`` (the client certificate's name) goes into its records."""
        args: Tuple[str, ...] = (validate.busid(busid),)
        if tls_name:
            try:
                args += (valid_tls_name(tls_name),)
            except InvalidArgument:
                log.debug("TLS name %r not recorded for %s: not a token of 64 characters or fewer", tls_name, busid)
        self.channel.call(EXPORT, *args, fd=sockfd)
