# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vhci-hcd driver: the client side's virtual host controllers.

An attach hands a connected socket to the kernel by writing it to a free
root-hub port. The C tool does this without coordination, and eight of them
started together lose to each other: they choose the same port, retry it
forever on EBUSY, or give up while the status files change under them. Here
every attach and detach on the host is serialised with ``flock`` on a lock
file, an EBUSY (a peer that does not take our lock) makes us re-read the
status and choose again, and every retry is bounded in attempts and in time.

Attachments are recorded in ``/var/run/vhci_hcd/port<N>`` in the C tool's
format, so ``usbip port`` of either implementation shows where each imported
device comes from.
"""

from __future__ import annotations

import dataclasses
import errno
import re
import time
from typing import ContextManager, List, Optional, Sequence, Set, Tuple, Union

from .. import validate
from ..device import PortStatus, Speed
from ..errors import InvalidArgument, UsbipError
from .errors import DriverNotLoaded, NoFreePort, SysfsError
from .fs import Change, Sysfs
from .kmod import KernelModule

VHCI = "/sys/devices/platform/vhci_hcd.0"
#: The module that provides the virtual host controllers; the first one shows it is loaded.
KERNEL_MODULE = KernelModule("vhci-hcd", (VHCI,))
RECORDS = "/var/run/vhci_hcd"
LOCK_FILE = RECORDS + "/.lock"
STATUS_HEADER = "hub port sta spd dev      sockfd local_busid"

_STATUS_FILE = re.compile(r"status(?:\.([1-9][0-9]*))?")
_INT_MAX = 2**31 - 1
# A status file read while ports change can be caught between two states (the
# C tool gave up there); a few quick re-reads are enough to get a whole one.
_READ_ATTEMPTS = 5
_READ_DELAY = 0.05
# Each EBUSY removes one candidate port, so this only stops a pathological race.
_ATTACH_ATTEMPTS = 32
_LOCK_POLL = 0.02


@dataclasses.dataclass(frozen=True)
class VhciPort:
    """One row of a status file."""

    hub: str  # "hs" or "ss"
    port: int
    status: PortStatus
    speed: Speed
    devid: int
    sockfd: int
    local_busid: str

    @property
    def free(self) -> bool:
        return self.status == PortStatus.NULL


@dataclasses.dataclass(frozen=True)
class Record:
    """Where an attached device comes from: the C tool's ``port<N>`` file."""

    host: str
    port: int
    busid: str

    @classmethod
    def checked(cls, host: object, port: object, busid: object) -> Record:
        return cls(validate.host(host), validate.tcp_port(port), validate.busid(busid))

    @classmethod
    def parse(cls, text: str) -> Optional[Record]:
        """The record in ``text``, or None where it is not one (as ``usbip port`` treats it)."""
        fields = text.split()
        if len(fields) != 3:
            return None
        try:
            return cls.checked(*fields)
        except InvalidArgument:
            return None

    def text(self) -> str:
        return "%s %d %s\n" % (self.host, self.port, self.busid)


@dataclasses.dataclass(frozen=True)
class ImportedDevice:
    """A port in use joined with its record (None fields where there is none)."""

    port: int
    hub: str
    status: PortStatus
    speed: Speed
    devid: int
    local_busid: str
    host: Optional[str]
    remote_port: Optional[int]
    remote_busid: Optional[str]


def parse_status(text: str) -> List[VhciPort]:
    """Rows of one status file; a header or row of another shape is an error."""
    lines = text.splitlines()
    if not lines or lines[0].split() != STATUS_HEADER.split():
        raise UsbipError("unexpected vhci_hcd status header %r" % (lines[0] if lines else text))
    return [_parse_row(line) for line in lines[1:] if line.strip()]


def _parse_row(line: str) -> VhciPort:
    fields = line.split()
    if len(fields) != 7 or fields[0] not in ("hs", "ss"):
        raise UsbipError("unexpected vhci_hcd status line %r" % line)
    hub, port, sta, spd, dev, sockfd, busid = fields
    try:
        # A controller that is not ready prints a 16-digit sockfd: still a number.
        return VhciPort(hub, int(port, 10), PortStatus(int(sta, 10)), Speed(int(spd, 10)),
                        int(dev, 16), int(sockfd, 10), busid)
    except ValueError:
        raise UsbipError("unexpected vhci_hcd status line %r" % line) from None


def record_path(port: int) -> str:
    return "%s/port%d" % (RECORDS, port)


class VhciDriver:
    """Attach, detach and list through ``vhci_hcd``.

    ``timeout`` bounds both the wait for the host-wide lock and the attach
    retries, so a wedged peer turns into an error instead of a hang.
    """

    def __init__(self, sysfs: Sysfs, timeout: float = 10.0) -> None:
        self.sysfs = sysfs
        self.timeout = timeout

    def check_loaded(self) -> None:
        if not self.sysfs.isdir(VHCI):
            raise DriverNotLoaded("vhci_hcd is not loaded (%s is missing)" % VHCI, hint="modprobe vhci-hcd")

    def nports(self) -> int:
        self.check_loaded()
        return self.sysfs.read_int(VHCI + "/nports")

    def ports(self) -> List[VhciPort]:
        """Every port of every controller, indexed by port number.

        A status file caught mid-change is read again, a few times.
        """
        self.check_loaded()
        error: Optional[UsbipError] = None
        for _attempt in range(_READ_ATTEMPTS):
            if error is not None:
                time.sleep(_READ_DELAY)
            try:
                return self._read_ports()
            except UsbipError as err:
                error = err
        raise UsbipError("cannot read the vhci_hcd port status: %s" % error)

    def _read_ports(self) -> List[VhciPort]:
        nports = self.sysfs.read_int(VHCI + "/nports")
        files = self._status_files()
        if not files or nports % len(files):
            raise UsbipError("%d ports do not divide among %d vhci_hcd status files" % (nports, len(files)))
        per_controller = nports // len(files)
        ports: List[VhciPort] = []
        for index, name in files:
            # One read per file: the kernel renders it whole under its lock.
            rows = parse_status(self.sysfs.read("%s/%s" % (VHCI, name)))
            first = index * per_controller
            if [row.port for row in rows] != list(range(first, first + per_controller)):
                raise UsbipError("%s does not list ports %d-%d" % (name, first, first + per_controller - 1))
            ports.extend(rows)
        return ports

    def _status_files(self) -> List[Tuple[int, str]]:
        found = []
        for name in self.sysfs.listdir(VHCI):
            match = _STATUS_FILE.fullmatch(name)
            if match:
                found.append((int(match.group(1) or 0), name))
        return sorted(found)

    def read_record(self, port: int) -> Optional[Record]:
        text = self.sysfs.read_optional(record_path(port))
        return None if text is None else Record.parse(text)

    def imported(self) -> List[ImportedDevice]:
        """Ports with a device, as ``usbip port`` lists them (attaching ones are skipped)."""
        devices = []
        for row in self.ports():
            if row.status in (PortStatus.NULL, PortStatus.NOT_ASSIGNED):
                continue
            record = self.read_record(row.port)
            devices.append(ImportedDevice(
                row.port, row.hub, row.status, row.speed, row.devid, row.local_busid,
                record.host if record else None,
                record.port if record else None,
                record.busid if record else None,
            ))
        return devices

    def plan_attach(self, record: Union[Record, Tuple[str, int, str]]) -> Change:
        """The change :meth:`attach` of the device ``record`` names makes, as a dry run reports it.

        The port and the socket exist only once the server has handed the
        device over, so the plan names the device instead: one ``attach`` of
        ``host:port/busid`` to the controller's attach file. ``record`` is
        trusted as a :class:`Record`, checked as a tuple (as in :meth:`attach`).
        """
        entry = record if isinstance(record, Record) else Record.checked(*record)
        return Change("attach", VHCI + "/attach", "%s:%d/%s" % (entry.host, entry.port, entry.busid))

    def attach(self, sockfd: int, devid: int, speed: Speed,
               record: Union[Record, Tuple[str, int, str], None] = None) -> int:
        """Hand ``sockfd`` to a free port of the device's speed; returns the port.

        ``record`` says where the device comes from, for the ``port<N>`` file:
        a :class:`Record`, built from values validated where they entered, or
        a (host, TCP port, remote busid) tuple, checked here before anything
        is written.
        """
        sockfd = validate.integer(sockfd, "socket fd", 0, _INT_MAX)
        devid = validate.integer(devid, "devid", 0, 0xFFFFFFFF)
        speed = Speed(validate.integer(speed, "device speed", Speed.LOW, Speed.SUPER_PLUS))
        entry = record if record is None or isinstance(record, Record) else Record.checked(*record)
        self.check_loaded()
        with self._locked():
            port = self._attach(sockfd, devid, speed)
            if entry is not None:
                try:
                    self.sysfs.write_file(record_path(port), entry.text())
                except UsbipError as err:
                    raise UsbipError("device attached to port %d, but %s" % (port, err),
                                     hint="detach it with: usbip detach -p %d" % port) from None
        return port

    def _attach(self, sockfd: int, devid: int, speed: Speed) -> int:
        # vhci's super-speed root hub is USB 3.0 and the kernel refuses speed 6
        # (EINVAL): a SuperSpeedPlus device is attached as the SuperSpeed it runs at.
        value = "%d %d %d" % (sockfd, devid, min(speed, Speed.SUPER))
        deadline = time.monotonic() + self.timeout
        busy: Set[int] = set()
        for _attempt in range(_ATTACH_ATTEMPTS):
            port = _pick_port(self.ports(), speed, busy)
            try:
                self.sysfs.write(VHCI + "/attach", "%d %s" % (port, value))
                return port
            except SysfsError as err:
                # EBUSY: taken by a peer since we read the status; EAGAIN: that
                # controller is not ready. Either way another port may do.
                if err.errno not in (errno.EBUSY, errno.EAGAIN):
                    raise
            busy.add(port)
            if time.monotonic() >= deadline:
                break
        raise NoFreePort("no port could be attached: ports %s were all busy when written"
                         % ", ".join(str(p) for p in sorted(busy)),
                         hint="other attaches are racing for the ports; retry")

    def detach(self, port: int) -> bool:
        """Disconnect a port; False when it was already free (nothing written)."""
        port = validate.integer(port, "port", 0, _INT_MAX)
        nports = self.nports()
        if port >= nports:
            raise InvalidArgument("invalid port %d: vhci_hcd has ports 0-%d" % (port, nports - 1))
        with self._locked():
            if self.ports()[port].free:
                return False
            self.sysfs.unlink(record_path(port))
            try:
                self.sysfs.write(VHCI + "/detach", str(port))
            except SysfsError as err:
                # The connection may have dropped since we looked.
                if err.errno == errno.EINVAL and self.ports()[port].free:
                    return False
                raise
        return True

    def _locked(self) -> ContextManager[bool]:
        """Hold the host-wide attach lock (none in dry-run: nothing can race a journal)."""
        return self.sysfs.flock(LOCK_FILE, self.timeout, "another usbip attach or detach",
                                "retry later; 'fuser %s' shows the holder" % LOCK_FILE, poll=_LOCK_POLL)


def _pick_port(ports: Sequence[VhciPort], speed: Speed, busy: Set[int]) -> int:
    hub = "ss" if speed.is_superspeed else "hs"
    for row in ports:
        if row.hub == hub and row.free and row.port not in busy:
            return row.port
    usage = []
    for kind in ("hs", "ss"):
        rows = [row for row in ports if row.hub == kind]
        usage.append("%s %d/%d in use" % (kind, sum(not row.free for row in rows), len(rows)))
    raise NoFreePort("no free %s port for a %s device (%s)" % (hub, speed.description, ", ".join(usage)),
                     hint="detach an imported device (usbip port lists them)")
