# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing one device by stable identity instead of by busid.

Busids change with module load order and replug; vendor/product IDs, the
serial number and the physical port a device is plugged into do not. A
:class:`Match` holds such criteria, validated before anything is read, and
:func:`select_one` turns a list of candidates into exactly one device or an
error that lists every candidate, so that the operator can refine the match.

The physical port path is ``<controller>-<devpath>``: the sysfs name of the
host controller the bus belongs to (``0000:00:14.0``, ``dummy_hcd.0``) and the
hub port chain below its root hub (``1.4``). It stays the same across reboots
and driver reloads while the bus number in the busid does not. A bare devpath
(``1.4``) is accepted too and matches that port on every controller.

A server's device list carries each device's sysfs path and busid, which is
all :func:`port_path` reads locally: :func:`remote_port_path` computes the
same string from them, so one ``port_path`` criterion names the same
physical port on this host and on a server (ours or the C ``usbipd``, which
send the same path). The serial number is not on the wire: a remote match
cannot use it. A device-mode gadget (``usbip-vudc.N``) sits behind no host
controller's port and has no port path: a ``port_path`` criterion never
accepts it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, List, Optional, Sequence, TypeVar

from .device import UsbDevice
from .errors import InvalidArgument, UsbipError
from .sysfs.errors import DeviceNotFound
from .sysfs.usb import LocalDevice

T = TypeVar("T")

_USB_ID = re.compile(r"(?:0x)?([0-9a-f]{4})")
_DEVPATH = re.compile(r"[1-9][0-9]{0,2}(?:\.[1-9][0-9]{0,2}){0,6}")
_BUSNUM = re.compile(r"[1-9][0-9]{0,2}")
_CONTROLLER = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_TEXT_MAX = 126  # the longest USB string descriptor the kernel shows


class NoMatch(DeviceNotFound):
    """No candidate fits the match; the message lists the candidates."""


class AmbiguousMatch(UsbipError):
    """More than one candidate fits; the message lists them."""


def usb_id(value: object, what: str) -> int:
    """A vendor or product ID: an integer, or four hex digits (``"1209"``, ``"0x1209"``)."""
    if isinstance(value, bool):
        raise InvalidArgument("invalid %s %r" % (what, value))
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise InvalidArgument("invalid %s %d: must be between 0 and 0xffff" % (what, value))
        return value
    if isinstance(value, str):
        match = _USB_ID.fullmatch(value.strip().lower())
        if match:
            return int(match.group(1), 16)
    raise InvalidArgument("invalid %s %r: expected four hex digits such as '1d6b', or an integer" % (what, value))


def text_criterion(value: object, what: str) -> str:
    """A serial number (or another string criterion) as the kernel can show it: printable ASCII."""
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() \
            or len(value) > _TEXT_MAX:
        raise InvalidArgument("invalid %s %r: printable ASCII of 1 to %d characters expected"
                              % (what, value, _TEXT_MAX))
    return value


def port_path_criterion(value: object) -> str:
    """A physical port path as a match criterion: ``<controller>-<devpath>`` or a bare devpath."""
    text = text_criterion(value, "port_path")
    controller, dash, devpath = text.rpartition("-")
    if not _DEVPATH.fullmatch(devpath) or (dash and not _CONTROLLER.fullmatch(controller)):
        raise InvalidArgument(
            "invalid port_path %r: expected <controller>-<devpath> such as 0000:00:14.0-1.4 or dummy_hcd.0-1,"
            " or a devpath such as 1.4" % text)
    return text


def _port_path_of(path: str, busnum: int, devpath: str) -> str:
    """``<controller>-<devpath>``: the controller is the sysfs parent of the bus's root hub (``usb<busnum>``)."""
    parts = path.split("/")
    root_hub = "usb%d" % busnum
    controller = parts[parts.index(root_hub) - 1] if root_hub in parts[1:] else root_hub
    return "%s-%s" % (controller, devpath)


def port_path(device: LocalDevice) -> str:
    """``<controller>-<devpath>`` of a local device (see the module docstring)."""
    return _port_path_of(device.device.path, device.device.busnum, device.devpath)


def busid_devpath(busid: str, busnum: Optional[int] = None) -> Optional[str]:
    """The devpath a USB device's busid ends in (``1.4`` of ``3-1.4``); None for a busid of another form.

    The kernel names a USB device ``<busnum>-<devpath>``, so the busid a
    server sends (or a vhci record keeps) holds the devpath its ``devpath``
    attribute would show. ``usbip-vudc.0`` (a gadget) has none, and neither
    has a busid whose bus is not ``busnum`` when that is given.
    """
    bus, dash, devpath = busid.partition("-")
    if not dash or not _BUSNUM.fullmatch(bus) or not _DEVPATH.fullmatch(devpath):
        return None
    if busnum is not None and int(bus) != busnum:
        return None
    return devpath


def remote_port_path(device: UsbDevice) -> Optional[str]:
    """The port path of a device in a server's list, as :func:`port_path` computes it on the server.

    Read from the record's sysfs path (the controller) and busid (the
    devpath), which our usbipd and the C one both fill from sysfs. None for
    a device that is not behind a host controller's port: a usbip-vudc
    gadget (busid ``usbip-vudc.N``, bus number 0), or a record whose busid
    does not name its bus.
    """
    devpath = busid_devpath(device.busid, device.busnum)
    if devpath is None:
        return None
    return _port_path_of(device.path, device.busnum, devpath)


@dataclasses.dataclass(frozen=True)
class Match:
    """Criteria that must all hold; a None criterion is not checked."""

    vendor: Optional[int] = None
    product: Optional[int] = None
    serial: Optional[str] = None
    port_path: Optional[str] = None

    @classmethod
    def checked(cls, vendor: object = None, product: object = None, serial: object = None,
                port_path: object = None) -> "Match":
        """A match from untrusted values; at least one criterion is required."""
        if vendor is None and product is None and serial is None and port_path is None:
            raise InvalidArgument("a match needs at least one of vendor, product, serial, port_path")
        return cls(
            vendor=None if vendor is None else usb_id(vendor, "vendor ID"),
            product=None if product is None else usb_id(product, "product ID"),
            serial=None if serial is None else text_criterion(serial, "serial"),
            port_path=None if port_path is None else port_path_criterion(port_path),
        )

    @property
    def answerable_remotely(self) -> bool:
        """Whether a server's device list can answer this match: it carries the IDs and the port path, no serial."""
        return self.serial is None

    def accepts(self, device: LocalDevice) -> bool:
        if not self.accepts_ids(device.device):
            return False
        if self.serial is not None and device.serial != self.serial:
            return False
        if self.port_path is not None:
            return self._at_port(port_path(device))
        return True

    def accepts_remote(self, device: UsbDevice) -> bool:
        """Whether this match takes a device of a server's list; a serial criterion takes none (not on the wire)."""
        if self.serial is not None or not self.accepts_ids(device):
            return False
        if self.port_path is not None:
            found = remote_port_path(device)
            return found is not None and self._at_port(found)
        return True

    def may_have_come_from(self, remote_busid: str) -> bool:
        """Whether a device attached from the server's ``remote_busid`` can be at this match's port.

        A vhci port's record keeps the server's busid, not its sysfs path: the
        devpath half of the port path is checked, the controller half cannot
        be (it is checked when the server lists the device, before the attach).
        Without a port path criterion every busid can be.
        """
        if self.port_path is None:
            return True
        devpath = busid_devpath(remote_busid)
        return devpath is not None and devpath == self.port_path.rpartition("-")[2]

    def _at_port(self, found: str) -> bool:
        """Whether the port path ``found`` is this match's: the same string, or the same devpath for a bare one."""
        if "-" in self.port_path:
            return found == self.port_path
        return found.rpartition("-")[2] == self.port_path

    def accepts_ids(self, device: UsbDevice) -> bool:
        return (self.vendor is None or device.id_vendor == self.vendor) and (
            self.product is None or device.id_product == self.product)

    def __str__(self) -> str:
        words = []
        if self.vendor is not None:
            words.append("vendor=%04x" % self.vendor)
        if self.product is not None:
            words.append("product=%04x" % self.product)
        if self.serial is not None:
            words.append("serial=%s" % self.serial)
        if self.port_path is not None:
            words.append("port_path=%s" % self.port_path)
        return " ".join(words)


def describe_local(device: LocalDevice) -> str:
    """One line per candidate, with every criterion a match can use."""
    return "%s (%s serial=%s port_path=%s driver=%s%s)" % (
        device.busid, device.device.usbid, device.serial if device.serial is not None else "-",
        port_path(device), device.driver or "-",
        " product=%r" % device.product if device.product else "")


def describe_remote(device: UsbDevice) -> str:
    return "%s (%s)" % (device.busid, device.usbid)


def describe_remote_port(device: UsbDevice) -> str:
    """:func:`describe_remote` with the port path, for the errors of a match that uses one."""
    return "%s (%s port_path=%s)" % (device.busid, device.usbid, remote_port_path(device) or "-")


def select_one(candidates: Sequence[T], accepts: Callable[[T], bool], describe: Callable[[T], str],
               match: object, where: str) -> T:
    """The one candidate ``accepts`` takes; otherwise an error listing the candidates."""
    hits: List[T] = [c for c in candidates if accepts(c)]
    if len(hits) == 1:
        return hits[0]
    listing = "; ".join(describe(c) for c in candidates) or "none"
    if not hits:
        raise NoMatch("no device %s matches %s; candidates: %s" % (where, match, listing))
    raise AmbiguousMatch(
        "%d devices %s match %s: %s" % (len(hits), where, match, "; ".join(describe(c) for c in hits)),
        hint="narrow the match (serial, port_path) or give the busid")


def select_local(candidates: Sequence[LocalDevice], match: Match, where: str = "on this host") -> LocalDevice:
    return select_one(candidates, match.accepts, describe_local, match, where)


def _answerable_remotely(match: Match) -> None:
    if not match.answerable_remotely:
        raise InvalidArgument("a server's device list carries no serial number: serial cannot be matched against "
                              "it (match a remote device by vendor, product and port_path)")


def select_remote(candidates: Sequence[UsbDevice], match: Match, where: str) -> UsbDevice:
    """The one device of a server's list ``match`` takes; otherwise an error listing the candidates."""
    _answerable_remotely(match)
    describe = describe_remote_port if match.port_path is not None else describe_remote
    return select_one(candidates, match.accepts_remote, describe, match, where)


def select_remote_all(candidates: Sequence[UsbDevice], match: Optional[Match]) -> List[UsbDevice]:
    """Every device of a server's list ``match`` takes (every one without a match), in the server's order."""
    if match is None:
        return list(candidates)
    _answerable_remotely(match)
    return [c for c in candidates if match.accepts_remote(c)]
