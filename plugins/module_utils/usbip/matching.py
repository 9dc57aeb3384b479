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


def port_path(device: LocalDevice) -> str:
    """``<controller>-<devpath>`` of a local device (see the module docstring)."""
    parts = device.device.path.split("/")
    root_hub = "usb%d" % device.device.busnum
    controller = parts[parts.index(root_hub) - 1] if root_hub in parts[1:] else "usb%d" % device.device.busnum
    return "%s-%s" % (controller, device.devpath)


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
    def ids_only(self) -> bool:
        """Whether a remote device list (which carries IDs only) can answer this match."""
        return self.serial is None and self.port_path is None

    def accepts(self, device: LocalDevice) -> bool:
        if not self.accepts_ids(device.device):
            return False
        if self.serial is not None and device.serial != self.serial:
            return False
        if self.port_path is not None:
            if "-" in self.port_path:
                return port_path(device) == self.port_path
            return device.devpath == self.port_path
        return True

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


def select_remote(candidates: Sequence[UsbDevice], match: Match, where: str) -> UsbDevice:
    if not match.ids_only:
        raise InvalidArgument("a server's device list carries vendor and product IDs only: "
                              "serial and port_path cannot be matched against it")
    return select_one(candidates, match.accepts_ids, describe_remote, match, where)
