# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors the sysfs drivers raise on purpose.

They are distinct classes so that the server can map each one to its own
protocol status (ST_NODEV, ST_DEV_BUSY, ST_DEV_ERR) and the CLI can print a
precise message instead of a bare errno.
"""

from __future__ import annotations

import errno
from typing import Optional

from ..errors import UsbipError


class DriverNotLoaded(UsbipError):
    """The kernel module behind a driver is absent; the hint names it."""


class DeviceNotFound(UsbipError):
    """No device with that busid (or instance name) exists right now."""


class DeviceBusy(UsbipError):
    """The device is already exported or attached elsewhere."""


class DeviceError(UsbipError):
    """The kernel reports the device in an error state."""


class BindLoop(UsbipError):
    """Exporting a device that is itself imported through vhci_hcd."""


class NotExportable(UsbipError):
    """The device exists but cannot be offered (hub, no gadget bound...)."""


class NoFreePort(UsbipError):
    """Every vhci_hcd port of the needed speed is taken."""


class SysfsError(UsbipError):
    """A kernel attribute could not be read or written.

    ``errno`` is kept because drivers act on it: vhci answers EBUSY for a port
    taken by a concurrent attach, usbip-vudc ENODEV when no gadget is bound.
    """

    def __init__(self, action: str, path: str, err: OSError, hint: Optional[str] = None) -> None:
        self.errno = err.errno
        self.path = path
        reason = err.strerror or str(err)
        if err.errno in (errno.EACCES, errno.EPERM) and hint is None:
            hint = "run as root"
        super().__init__("cannot %s %s: %s" % (action, path, reason), hint)
