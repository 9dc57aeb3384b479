# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The USB device description shared by the wire format and the sysfs drivers.

The wire protocol's device record and what the drivers read from sysfs are the
same facts; keeping one type for both means the server can put a sysfs scan on
the wire without translation, and the client can compare a remote record with
a local vhci port.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Tuple


class Speed(enum.IntEnum):
    """The kernel's ``enum usb_device_speed``, as carried on the wire."""

    UNKNOWN = 0
    LOW = 1
    FULL = 2
    HIGH = 3
    WIRELESS = 4
    SUPER = 5
    SUPER_PLUS = 6

    @classmethod
    def from_sysfs(cls, text: str) -> "Speed":
        """Map a device's ``speed`` attribute (Mbit/s as text) to the enum."""
        return _SYSFS_SPEED.get(text.strip(), cls.UNKNOWN)

    @classmethod
    def from_udc(cls, text: str) -> "Speed":
        """Map a UDC's ``current_speed``/``maximum_speed`` name to the enum."""
        return _UDC_SPEED.get(text.strip(), cls.UNKNOWN)

    @property
    def description(self) -> str:
        """The wording the C tools print, e.g. ``High Speed(480Mbps)``."""
        return _DESCRIPTION[self]

    @property
    def is_superspeed(self) -> bool:
        """Super-speed devices need a vhci ``ss`` port, all others an ``hs`` one."""
        return self >= Speed.SUPER


_SYSFS_SPEED = {
    "1.5": Speed.LOW,
    "12": Speed.FULL,
    "480": Speed.HIGH,
    "53.3-480": Speed.WIRELESS,
    "5000": Speed.SUPER,
    "10000": Speed.SUPER_PLUS,
    "20000": Speed.SUPER_PLUS,
}

_UDC_SPEED = {
    "low-speed": Speed.LOW,
    "full-speed": Speed.FULL,
    "high-speed": Speed.HIGH,
    "wireless": Speed.WIRELESS,
    "super-speed": Speed.SUPER,
    "super-speed-plus": Speed.SUPER_PLUS,
}

_DESCRIPTION = {
    Speed.UNKNOWN: "Unknown Speed",
    Speed.LOW: "Low Speed(1.5Mbps)",
    Speed.FULL: "Full Speed(12Mbps)",
    Speed.HIGH: "High Speed(480Mbps)",
    Speed.WIRELESS: "Wireless",
    Speed.SUPER: "Super Speed(5000Mbps)",
    Speed.SUPER_PLUS: "Super Speed Plus(10000Mbps)",
}


@dataclasses.dataclass(frozen=True)
class UsbInterface:
    """One interface's class triple, as the 4-byte wire record carries it."""

    interface_class: int
    interface_subclass: int
    interface_protocol: int


@dataclasses.dataclass(frozen=True)
class UsbDevice:
    """One exportable device: the 312-byte wire record plus its interfaces.

    ``interfaces`` is empty where the wire carries none (OP_REP_IMPORT, and
    device-mode records whose ``num_interfaces`` is 0).
    """

    path: str
    busid: str
    busnum: int
    devnum: int
    speed: Speed
    id_vendor: int
    id_product: int
    bcd_device: int
    device_class: int
    device_subclass: int
    device_protocol: int
    configuration_value: int
    num_configurations: int
    num_interfaces: int
    interfaces: Tuple[UsbInterface, ...] = ()

    @property
    def devid(self) -> int:
        """The id vhci and the URB headers use: ``busnum << 16 | devnum``."""
        return (self.busnum << 16) | self.devnum

    @property
    def usbid(self) -> str:
        """``vvvv:pppp`` in lower-case hex, as ``usbip list -p`` prints it."""
        return "%04x:%04x" % (self.id_vendor, self.id_product)


class DeviceStatus(enum.IntEnum):
    """``usbip_status`` of a usbip-host or usbip-vudc device (server side)."""

    AVAILABLE = 1
    USED = 2
    ERROR = 3


class PortStatus(enum.IntEnum):
    """``sta`` column of the vhci status files (client side)."""

    NULL = 4
    NOT_ASSIGNED = 5
    USED = 6
    ERROR = 7
