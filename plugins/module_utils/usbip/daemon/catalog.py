# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a server offers: the exportable devices, kept current between requests.

The C daemon rescans sysfs for every request. Here the device records are
built once and rebuilt only after a kernel uevent said the USB or UDC world
changed; a request then costs one ``usbip_status`` read per offered device,
because a device going in and out of use raises no uevent. That read is a
single ``pread`` on a descriptor kept open per device (sysfs renders an
attribute afresh at every read from offset 0), and the encoded reply is
reused while the same devices are available.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence, Union

from ..device import DeviceStatus, UsbDevice
from ..errors import InvalidArgument, UsbipError
from ..protocol import Status
from ..sysfs.errors import DeviceBusy, DeviceError, DeviceNotFound, NotExportable
from ..sysfs.fs import Sysfs
from ..sysfs.host import HostDriver
from ..sysfs.vudc import VudcDriver

log = logging.getLogger("usbipd")

#: A driver with the export interface, or both of them (see :func:`exporter_for`).
Exporter = Union[HostDriver, VudcDriver, "BothModes"]


#: What the server offers in each mode, by the driver that exports it.
_DRIVERS = {"host": HostDriver, "device": VudcDriver}


class BothModes:
    """Host and device mode from one daemon: the busid says which driver owns a device.

    The C daemon serves one mode per process; one socket serving host-mode
    devices and vudc gadgets side by side is simpler to run and to firewall.
    It offers the drivers' own export interface (see :func:`exporter_for`).
    """

    mode = "host and device"

    def __init__(self, drivers: Sequence[Exporter]) -> None:
        self.drivers = list(drivers)

    def _owner(self, busid: str) -> Exporter:
        device_mode = busid.startswith("usbip-vudc.")
        for driver in self.drivers:
            if (driver.mode == "device") == device_mode:
                return driver
        raise DeviceNotFound("requested device not found: %s" % busid)

    def check_loaded(self) -> None:
        for driver in self.drivers:
            driver.check_loaded()

    def scan(self) -> List[UsbDevice]:
        return [device for driver in self.drivers for device in driver.scan()]

    def status(self, busid: str) -> Optional[DeviceStatus]:
        return self._owner(busid).status(busid)

    def status_file(self, busid: str) -> str:
        return self._owner(busid).status_file(busid)

    def export(self, busid: str, sockfd: int) -> None:
        self._owner(busid).export(busid, sockfd)


def exporter_for(modes: Sequence[str], sysfs: Sysfs) -> Exporter:
    """The driver serving ``modes`` (``host``, ``device``), or both drivers combined.

    :class:`~usbip.sysfs.host.HostDriver` and :class:`~usbip.sysfs.vudc.VudcDriver`
    share one export interface, as the kernel's libsrc gives its two drivers
    ``usbip_host_driver_ops``: ``mode``, ``check_loaded()``, ``scan()`` (the
    devices offered), ``status(busid)``, ``status_file(busid)`` (the host path
    of the ``usbip_status`` that ``status`` reads) and ``export(busid, sockfd)``.
    """
    chosen = []
    for mode in modes:
        if mode not in _DRIVERS:
            raise UsbipError("unknown mode %r: host or device" % (mode,))
        chosen.append(_DRIVERS[mode](sysfs))
    if not chosen:
        raise UsbipError("no mode to serve: host, device or both")
    return chosen[0] if len(chosen) == 1 else BothModes(chosen)


class Catalog:
    """The devices a server offers, rebuilt only when told the world changed.

    It is what :class:`~usbip.net.server.UsbipServer` serves from: ``available``,
    ``export``, ``invalidate``, ``generation`` and ``refusal`` (the ST_* answer
    to an export that failed).
    """

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self._devices: Optional[Dict[str, UsbDevice]] = None
        self._status_files: Dict[str, int] = {}
        self.rescans = 0
        #: Changes whenever the device records may have changed (callers key caches on it).
        self.generation = 0

    def invalidate(self) -> None:
        """Called on a relevant uevent (or by a caller that cannot watch them)."""
        self._devices = None
        self.generation += 1
        files, self._status_files = self._status_files, {}
        for fd in files.values():
            os.close(fd)

    def _all(self) -> Dict[str, UsbDevice]:
        if self._devices is None:
            self._devices = {d.busid: d for d in self.exporter.scan()}
            self.rescans += 1
            log.debug("device list rebuilt: %s", ", ".join(self._devices) or "(empty)")
        return self._devices

    def available(self) -> List[UsbDevice]:
        """What DEVLIST shows: offered devices not in use, as the C daemon answers."""
        found = []
        for busid, device in self._all().items():
            try:
                if self._status(busid) is DeviceStatus.AVAILABLE:
                    found.append(device)
            except UsbipError:
                self.invalidate()  # gone since the last rebuild
        return found

    def _status(self, busid: str) -> Optional[DeviceStatus]:
        """``exporter.status``, read through a descriptor kept open: one syscall per request.

        Anything unexpected (no such file, a removed device's ENODEV, an odd
        value) closes it and asks the driver, which explains or raises.
        """
        fd = self._status_files.get(busid)
        if fd is None:
            status_file = getattr(self.exporter, "status_file", None)
            if status_file is None:
                return self.exporter.status(busid)
            try:
                fd = os.open(status_file(busid), os.O_RDONLY)
            except (OSError, UsbipError):
                return self.exporter.status(busid)
            self._status_files[busid] = fd
        try:
            return _STATUS[os.pread(fd, 16, 0)]
        except (OSError, KeyError):
            del self._status_files[busid]
            os.close(fd)
            return self.exporter.status(busid)

    def export(self, busid: str, sockfd: int) -> UsbDevice:
        """Hand ``sockfd`` to the kernel for ``busid``; errors say which ST_* to answer."""
        device = self._all().get(busid)
        if device is None:
            # Possibly bound since the last uevent we saw: look once more.
            self.invalidate()
            device = self._all().get(busid)
        if device is None:
            raise DeviceNotFound("requested device not found: %s" % busid)
        self.exporter.export(busid, sockfd)
        return device

    @staticmethod
    def refusal(error: UsbipError) -> Status:
        """The ST_* code to answer for an export that raised ``error`` (see :func:`status_for`)."""
        return status_for(error)


_STATUS = {b"%d\n" % s: s for s in DeviceStatus}


def status_for(error: UsbipError) -> Status:
    """The ST_* code the C daemon answers for an export failure."""
    if isinstance(error, (DeviceNotFound, NotExportable, InvalidArgument)):
        return Status.NODEV
    if isinstance(error, DeviceBusy):
        return Status.DEV_BUSY
    if isinstance(error, DeviceError):
        return Status.DEV_ERR
    return Status.NA
