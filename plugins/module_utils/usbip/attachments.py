# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client's use case, in one place: find, resolve, attach, wait.

``usbip attach``, ``usbip-attachd`` and the ``usbip_attach`` module are thin
callers of these functions, so that they agree on what counts as already
attached (the same server under another name, see :func:`same_host`), on how
a device named by a match is chosen from a server's list (one by
:func:`resolve`, every one for an ``all`` declaration by :func:`resolve_all`),
on the default ports and on the TLS endpoint.

The vhci ports say which ports are in use and the ``port<N>`` records say
where each device comes from; joined with the local device an attachment
became, they answer "is that device already attached from that server?"
without asking the server (which no longer lists a device it exports).

Values arrive validated from the front ends (command line, module arguments,
configuration file); nothing here checks them again. Heavy imports (the
codec, ssl, udev) are made on use: ``usbip port`` imports this module too and
is benchmarked against the C tool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Collection, Dict, FrozenSet, Iterator, List, Optional, Tuple

from . import validate
from .device import PortStatus, UsbDevice
from .errors import InvalidArgument, UsbipError
from .sysfs.errors import DeviceNotFound
from .sysfs.fs import Change, LockUnavailable, Sysfs
from .sysfs.vhci import ImportedDevice, Record, VhciDriver

if TYPE_CHECKING:
    from .matching import Match
    from .sysfs.usb import LocalDevice, UsbBus

_POLL = 0.1

#: The lock every attach on this host holds across "is it attached? / attach" (see :func:`attach_lock`).
ATTACH_LOCK = "/run/usbip/attach.lock"
#: How long :func:`attach_lock` waits for another holder: the module holds it for one find, resolve and
#: attach; usbip-attachd only around its attempts' imports (connecting and listing come before), at most
#: ``cli.attachd.JOIN_FOR`` plus one attempt's timeout (20 s by default) at a time.
LOCK_WAIT = 60.0
_LOCK_POLL = 0.05


def default_port(tls: bool) -> int:
    """The server's TCP port when none is given: 3240, or 3241 for USB/IP inside TLS."""
    from .protocol.constants import USBIP_PORT, USBIP_TLS_PORT  # noqa: PLC0415 - see the module docstring

    return USBIP_TLS_PORT if tls else USBIP_PORT


def tls_endpoint(ca: str, cert: str, key: str, server_name: Optional[str] = None) -> Any:
    """The client TLS endpoint for these certificates; ``server_name`` defaults to the server as given."""
    from .net.tls import TlsConfig, TlsEndpoint  # noqa: PLC0415 - ssl is slow to import

    return TlsEndpoint(TlsConfig(cert=cert, key=key, ca=ca, server_name=server_name), server_side=False)


@dataclasses.dataclass(frozen=True)
class Attachment:
    """An imported device, with the local device once it has enumerated."""

    imported: ImportedDevice
    local: Optional[LocalDevice]


@dataclasses.dataclass(frozen=True)
class Attached:
    """Outcome of :func:`attach`: where the remote device now lives."""

    port: int
    device: UsbDevice
    host: str
    tcp_port: int
    busid: str


#: How long a name's addresses are trusted: usbip-attachd runs for months, and a server's address may change.
ADDRESSES_TTL = 300.0
#: Addresses by name, with the time they were looked up; only successful lookups are kept.
_RESOLVED: Dict[str, Tuple[float, FrozenSet[str]]] = {}


def _addresses(host: str, clock: Callable[[], float] = time.monotonic) -> FrozenSet[str]:
    """The addresses ``host`` resolves to, cached for :data:`ADDRESSES_TTL`.

    A failed lookup is not cached, so a name that did not resolve once (DNS
    down at boot) is looked up again at the next comparison.
    """
    now = clock()
    cached = _RESOLVED.get(host)
    if cached is not None and now - cached[0] < ADDRESSES_TTL:
        return cached[1]
    try:
        found = frozenset(info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        _RESOLVED.pop(host, None)
        return frozenset()
    if len(_RESOLVED) >= 256:
        _RESOLVED.clear()
    _RESOLVED[host] = (now, found)
    return found


def same_host(a: Optional[str], b: str) -> bool:
    """Whether two server names (as given to attach) designate the same host.

    Equal names match without a lookup; otherwise both are resolved and match
    when they share an address (``localhost`` and ``127.0.0.1`` do).
    """
    if a is None:
        return False
    if a.lower() == b.lower():
        return True
    return bool(_addresses(a) & _addresses(b))


def local_device(bus: UsbBus, busid: str) -> Optional[LocalDevice]:
    """The device a vhci port became; None while it has not enumerated.

    ``busid`` is what the kernel's status file shows: ``0-0`` until the hub
    has addressed the device, and attributes may still be appearing after.
    """
    try:
        return bus.describe(busid)  # InvalidArgument for 0-0 too
    except UsbipError:
        return None


@contextlib.contextmanager
def attach_lock(sysfs: Optional[Sysfs] = None, wait: float = LOCK_WAIT) -> Iterator[bool]:
    """Hold the host's attach lock, an exclusive ``flock`` on :data:`ATTACH_LOCK`; yields whether it is held.

    ``usbip-attachd`` and the ``usbip_attach`` module hold it across "is it
    attached? / attach", so neither sees the other's attach half done (the
    device gone from the server's list, not yet on a vhci port) and neither
    attaches a device the other just attached. The path is taken under the
    root of ``sysfs`` (as the vhci records are), a dry run takes no lock, and
    where the directory or the file cannot be made (not root) the caller runs
    without it: only root can attach anyway. A holder that keeps it past
    ``wait`` seconds is an error, not a hang.
    """
    sysfs = sysfs or Sysfs()
    with contextlib.ExitStack() as held:
        try:
            # /run/usbip is 0755 whatever the umask: others read their state there.
            locked = held.enter_context(sysfs.flock(
                ATTACH_LOCK, wait, "another attach",
                "usbip-attachd or usbip_attach is attaching; 'fuser %s' shows the holder" % ATTACH_LOCK,
                poll=_LOCK_POLL, directory_mode=0o755))
        except LockUnavailable as err:
            import logging  # noqa: PLC0415 - see the module docstring

            logging.getLogger(__name__).debug("attaching without the attach lock: %s", err)
            locked = False
        yield locked


def find(vhci: VhciDriver, host: str, tcp_port: int, busid: Optional[str] = None,
         match: Optional[Match] = None) -> List[Attachment]:
    """Ports attached from ``host``:``tcp_port``: every one, or those of ``busid``, or those ``match`` accepts.

    A busid decides alone; a match's IDs are checked against the local device,
    so a port whose device has not enumerated yet does not count for it, and
    its port path against the server's busid the port records (its devpath:
    the record does not say which of the server's controllers, see
    :meth:`Match.may_have_come_from`).
    """
    from .sysfs.usb import UsbBus  # noqa: PLC0415

    bus = UsbBus(vhci.sysfs)
    found = []
    for imported in vhci.imported():
        if imported.remote_port != tcp_port or not same_host(imported.host, host):
            continue
        if busid is not None and imported.remote_busid != busid:
            continue
        local = local_device(bus, imported.local_busid)
        if busid is None and match is not None and (
                local is None or not match.accepts_ids(local.device)
                or not match.may_have_come_from(imported.remote_busid)):
            continue
        found.append(Attachment(imported, local))
    return found


def resolve(host: str, tcp_port: int, busid: Optional[str] = None, match: Optional[Match] = None,
            timeout: Optional[float] = None, tls: Any = None) -> UsbDevice:
    """The server's available device to attach: the one of ``busid``, or the one ``match`` selects.

    ``timeout`` bounds the whole exchange with the server (None: the client's default, 20 s).
    """
    from .matching import describe_remote, select_remote  # noqa: PLC0415
    from .net import client  # noqa: PLC0415

    where = "on %s:%d" % (host, tcp_port)
    available = client.list_devices(host, tcp_port, timeout=timeout, tls=tls)
    if match is not None:
        return select_remote(available, match, where)
    for device in available:
        if device.busid == busid:
            return device
    raise DeviceNotFound(
        "%s:%d offers no device %s; available: %s" % (
            host, tcp_port, busid, ", ".join(describe_remote(d) for d in available) or "none"),
        hint="bind it on the server (usbip.usbip.usbip_bind); a device in use by a client is not listed")


def resolve_all(host: str, tcp_port: int, match: Optional[Match] = None, timeout: Optional[float] = None,
                tls: Any = None) -> List[UsbDevice]:
    """Every available device of the server that ``match`` takes (every one without a match), in its order.

    An ``all`` declaration attaches each of them; none is no error (the
    server may offer one later). ``timeout`` as for :func:`resolve`.
    """
    from .matching import select_remote_all  # noqa: PLC0415
    from .net import client  # noqa: PLC0415

    return select_remote_all(client.list_devices(host, tcp_port, timeout=timeout, tls=tls), match)


def attach(host: str, tcp_port: int, busid: str, vhci: VhciDriver, timeout: Optional[float] = None,
           tls: Any = None) -> Attached:
    """Import ``busid`` from ``host`` and attach it to a free vhci port.

    vhci is checked before connecting, so a client without vhci-hcd does not
    take the device from the server. ``timeout`` bounds the whole exchange
    with the server (None: the client's default, 20 s). The port is chosen
    under the host-wide lock, and an EBUSY from a racing peer makes it choose
    again (see :meth:`VhciDriver.attach`).
    """
    with prepare_attach(host, tcp_port, vhci, timeout, tls) as prepared:
        return prepared.attach(busid)


class PreparedAttach:
    """An attach from one server with the waiting on the network done: connected, TLS established.

    :meth:`attach` then imports and hands the socket to vhci, which is all a
    caller needs to keep under the attach lock (``usbip-attachd``); closing
    it without attaching leaves the server as it was (no request was sent).
    """

    def __init__(self, host: str, tcp_port: int, vhci: VhciDriver, connection: Any) -> None:
        self.host, self.tcp_port, self.vhci = host, tcp_port, vhci
        self._connection = connection

    def attach(self, busid: str) -> Attached:
        sock, device = self._connection.import_device(busid)
        with sock:
            # After attach the kernel holds its own reference; ours is closed.
            port = self.vhci.attach(sock.fileno(), device.devid, device.speed,
                                    record=Record(self.host, self.tcp_port, busid))
        return Attached(port=port, device=device, host=self.host, tcp_port=self.tcp_port, busid=busid)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> PreparedAttach:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepare_attach(host: str, tcp_port: int, vhci: VhciDriver, timeout: Optional[float] = None,
                   tls: Any = None) -> PreparedAttach:
    """Check vhci, then connect to ``host`` (and shake hands) for an attach; ``timeout`` bounds it and the import."""
    from .net import client  # noqa: PLC0415

    vhci.check_loaded()
    return PreparedAttach(host, tcp_port, vhci, client.open_import(host, tcp_port, timeout, tls=tls))


def plan_attach(vhci: VhciDriver, host: str, tcp_port: int, busid: str) -> Change:
    """What :func:`attach` would write, journaled as a change (check mode).

    Importing would take the device from the server, so a dry run stops
    before it: the port and the socket are not known, and the journal shows
    the one ``attach`` the driver would make (see :meth:`VhciDriver.plan_attach`).
    """
    change = vhci.plan_attach(Record(host, tcp_port, busid))
    vhci.sysfs.plan(change)
    return change


def wait_enumerated(vhci: VhciDriver, port: int, timeout: float, need_driver: bool = False,
                    sysfs: Optional[Sysfs] = None) -> str:
    """Wait until the device on vhci ``port`` exists locally (and, optionally, has drivers).

    Returns its local busid. The status file names the busid only once the
    hub has addressed the device, so that is awaited first.
    """
    from .sysfs import udev  # noqa: PLC0415

    sysfs = sysfs or vhci.sysfs
    deadline = time.monotonic() + timeout
    while True:
        row = next((p for p in vhci.ports() if p.port == port), None)
        if row is None or row.status == PortStatus.NULL:
            raise UsbipError("vhci port %d was released before its device enumerated" % port,
                             hint="the server closed the connection; see its log")
        try:
            busid = validate.usb_busid(row.local_busid)
            break
        except InvalidArgument:
            pass
        if time.monotonic() >= deadline:
            raise DeviceNotFound("the device on vhci port %d did not enumerate within %.0f s" % (port, timeout))
        time.sleep(_POLL)
    remaining = max(deadline - time.monotonic(), 0.1)
    udev.wait_for_usb_device(busid, timeout=remaining, need_driver=need_driver, sysfs=sysfs)
    return busid


def wait_released(vhci: VhciDriver, ports: Collection[int], timeout: float = 5.0) -> bool:
    """Wait until detached ports show free; the kernel releases them shortly after the detach write.

    Returns False when some port is still in use at the bound (the caller
    reports what it sees rather than failing: the detach itself succeeded).
    """
    deadline = time.monotonic() + timeout
    while True:
        busy = {p.port for p in vhci.ports() if p.port in ports and p.status != PortStatus.NULL}
        if not busy:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
