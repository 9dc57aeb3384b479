# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this client has attached from a given server, and waiting for it to enumerate.

The vhci ports say which ports are in use and the ``port<N>`` records say
where each device comes from; joined with the local device an attachment
became, they answer "is that device already attached from that server?"
without asking the server (which no longer lists a device it exports).
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import time
from typing import Collection, FrozenSet, List, Optional

from . import validate
from .device import PortStatus
from .errors import InvalidArgument, UsbipError
from .sysfs import udev
from .sysfs.errors import DeviceNotFound
from .sysfs.fs import Sysfs
from .sysfs.usb import LocalDevice, UsbBus
from .sysfs.vhci import ImportedDevice, VhciDriver

_POLL = 0.1


@dataclasses.dataclass(frozen=True)
class Attachment:
    """An imported device, with the local device once it has enumerated."""

    imported: ImportedDevice
    local: Optional[LocalDevice]


@functools.lru_cache(maxsize=64)
def _addresses(host: str) -> FrozenSet[str]:
    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        return frozenset()


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
    """The device a vhci port became; None while it has not enumerated."""
    try:
        return bus.describe(validate.usb_busid(busid))
    except (InvalidArgument, DeviceNotFound):
        return None
    except UsbipError:
        return None  # half-enumerated: attributes still appearing


def attachments(vhci: VhciDriver, host: str, tcp_port: int, busid: Optional[str] = None) -> List[Attachment]:
    """Ports attached from ``host``:``tcp_port`` (and, if given, from that remote busid)."""
    bus = UsbBus(vhci.sysfs)
    found = []
    for imported in vhci.imported():
        if imported.remote_port != tcp_port or not same_host(imported.host, host):
            continue
        if busid is not None and imported.remote_busid != busid:
            continue
        found.append(Attachment(imported, local_device(bus, imported.local_busid)))
    return found


def wait_enumerated(vhci: VhciDriver, port: int, timeout: float, need_driver: bool = False,
                    sysfs: Optional[Sysfs] = None) -> str:
    """Wait until the device on vhci ``port`` exists locally (and, optionally, has drivers).

    Returns its local busid. The status file names the busid only once the
    hub has addressed the device, so that is awaited first.
    """
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
