# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The usbip-host (stub) driver: offering local USB devices to the network.

A device is offered by taking it from its driver and binding it to
usbip-host; the server then hands the kernel a connected socket through
``usbip_sockfd``. The bind and unbind sequences follow the C ``usbip`` tool
step for step, because the kernel driver relies on that order (``match_busid``
must name a device before usbip-host may probe it). Unlike the C tool, binding
a bound device and unbinding an unbound one succeed without changes, so that
Ansible runs stay idempotent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
from typing import List, Optional

from .. import validate
from ..device import DeviceStatus, UsbDevice
from .errors import BindLoop, DeviceBusy, DeviceError, DeviceNotFound, DriverNotLoaded, NotExportable, SysfsError
from .fs import Sysfs
from .kmod import KernelModule
from .usb import DEVICES, LocalDevice, UsbBus, is_device_name

DRIVER_NAME = "usbip-host"
DRIVER = "/sys/bus/usb/drivers/" + DRIVER_NAME
MATCH_BUSID = DRIVER + "/match_busid"
#: The module that provides this driver; its directory shows it is loaded.
KERNEL_MODULE = KernelModule(DRIVER_NAME, (DRIVER,))


@dataclasses.dataclass(frozen=True)
class BindResult:
    """Outcome of :meth:`HostDriver.bind` / :meth:`HostDriver.unbind`.

    ``previous_driver`` is the driver the device had before the call (None if
    it had none); front ends report it and Ansible derives ``changed`` here.
    """

    busid: str
    changed: bool
    previous_driver: Optional[str]


@dataclasses.dataclass(frozen=True)
class BoundDevice:
    """A device bound to usbip-host, with the status the server answers with."""

    local: LocalDevice
    status: Optional[DeviceStatus]


class HostDriver:
    """Binds, unbinds and exports devices through usbip-host.

    Its export interface (``mode``, ``check_loaded``, ``scan``, ``status``,
    ``status_file``, ``export``) is the one :class:`~usbip.sysfs.vudc.VudcDriver`
    has too, so that the daemon serves either, or both, alike.
    """

    #: The usbipd mode that serves this driver's devices.
    mode = "host"

    def __init__(self, sysfs: Optional[Sysfs] = None) -> None:
        self.sysfs = sysfs if sysfs is not None else Sysfs()
        self.bus = UsbBus(self.sysfs)

    def check_loaded(self) -> None:
        if not self.sysfs.isdir(DRIVER):
            raise DriverNotLoaded("the %s driver is not loaded" % DRIVER_NAME, hint="modprobe usbip-host")

    def bindable(self) -> List[LocalDevice]:
        """Devices that may be bound (no hubs, nothing imported): what ``usbip list -l`` shows."""
        return self.bus.devices(bindable_only=True)

    def scan(self) -> List[UsbDevice]:
        """The devices offered for export: those bound to usbip-host."""
        return [bound.local.device for bound in self.bound()]

    def status_file(self, busid: str) -> str:
        """Host path of the ``usbip_status`` that :meth:`status` reads (the daemon keeps it open)."""
        return self.sysfs.real("%s/%s/usbip_status" % (DEVICES, busid))

    def bound(self) -> List[BoundDevice]:
        """Devices currently bound to usbip-host, i.e. what the server offers.

        The driver's directory names exactly the bound devices, so this avoids
        scanning the whole bus.
        """
        found = []
        for busid in self.sysfs.listdir(DRIVER):
            if not is_device_name(busid):
                continue
            try:
                found.append(BoundDevice(self.bus.describe(busid), self.status(busid)))
            except DeviceNotFound:
                continue  # unplugged since the listing
        return found

    def status(self, busid: str) -> Optional[DeviceStatus]:
        """``usbip_status`` of a device; None when usbip-host does not hold it."""
        return self._status(validate.usb_busid(busid))

    def _status(self, busid: str) -> Optional[DeviceStatus]:
        path = "%s/%s/usbip_status" % (DEVICES, busid)
        if not self.sysfs.exists(path):
            if not self.sysfs.isdir("%s/%s" % (DEVICES, busid)):
                raise DeviceNotFound("device with bus ID %s does not exist" % busid)
            return None
        value = self.sysfs.read_int(path)
        try:
            return DeviceStatus(value)
        except ValueError:
            raise DeviceError("device %s reports unknown usbip_status %d" % (busid, value)) from None

    def bind(self, busid: str) -> BindResult:
        busid = validate.usb_busid(busid)
        self.check_loaded()
        device = self.bus.describe(busid)
        if device.under_vhci:
            raise BindLoop(
                "bind loop detected: device %s is attached through vhci_hcd" % busid,
                hint="re-exporting an imported device would deadlock the USB stack",
            )
        if device.is_hub:
            raise NotExportable("device %s is a hub; hubs cannot be exported" % busid)
        previous = device.driver
        if previous == DRIVER_NAME:
            return BindResult(busid, False, previous)

        if previous is not None:
            self.sysfs.write("%s/%s/driver/unbind" % (DEVICES, busid), busid)
        added = False
        try:
            self.sysfs.write(MATCH_BUSID, "add " + busid)
            added = True
            self.sysfs.write(DRIVER + "/bind", busid)
        except SysfsError:
            self._roll_back(busid, previous, added)
            raise
        return BindResult(busid, True, previous)

    def unbind(self, busid: str) -> BindResult:
        """Release a device; ``rebind`` makes the kernel probe its usual driver again."""
        busid = validate.usb_busid(busid)
        device = self.bus.describe(busid)
        if device.driver != DRIVER_NAME:
            return BindResult(busid, False, device.driver)
        self.sysfs.write(DRIVER + "/unbind", busid)
        self.sysfs.write(MATCH_BUSID, "del " + busid)
        self.sysfs.write(DRIVER + "/rebind", busid)
        return BindResult(busid, True, DRIVER_NAME)

    def export(self, busid: str, sockfd: int) -> None:
        """Hand a connected socket to the kernel, which then serves the device on it.

        The status is checked first, as the C server does, so that the client
        gets a precise answer; the kernel refuses a lost race with EINVAL,
        which is then explained from the status read afterwards.
        """
        busid = validate.usb_busid(busid)
        sockfd = validate.integer(sockfd, "socket fd", 0, 2**31 - 1)
        _check_available(busid, self._status(busid))
        try:
            self.sysfs.write("%s/%s/usbip_sockfd" % (DEVICES, busid), str(sockfd))
        except SysfsError as err:
            if err.errno in (errno.EINVAL, errno.EBUSY):
                _check_available(busid, self._status(busid))
            raise

    def release(self, busid: str) -> None:
        """End the current import of an exported device and leave it exported (bound, available again).

        Writing ``-1`` to ``usbip_sockfd`` makes usbip-host shut the
        connection down; the client's vhci port then frees. Refused, without
        a write, when usbip-host does not hold the device or nobody imports it.
        """
        busid = validate.usb_busid(busid)
        status = self._status(busid)
        if status is None:
            raise DeviceNotFound("device %s is not exported (not bound to %s)" % (busid, DRIVER_NAME))
        if status is not DeviceStatus.USED:
            raise NotExportable("device %s is not in use (usbip_status %d): nothing to release"
                                % (busid, status.value))
        self.sysfs.write("%s/%s/usbip_sockfd" % (DEVICES, busid), "-1")

    def _roll_back(self, busid: str, previous: Optional[str], added: bool) -> None:
        """Best effort after a failed bind: the bind error is the one to report."""
        undo = [(MATCH_BUSID, "del " + busid)] if added else []
        if previous is not None:
            undo.append(("/sys/bus/usb/drivers/%s/bind" % previous, busid))
        for path, value in undo:
            with contextlib.suppress(SysfsError):
                self.sysfs.write(path, value)


def _check_available(busid: str, status: Optional[DeviceStatus]) -> None:
    """Map a status other than AVAILABLE to the error the server answers with."""
    if status is DeviceStatus.AVAILABLE:
        return
    if status is None:
        raise DeviceNotFound("device %s is not bound to %s" % (busid, DRIVER_NAME), hint="usbip bind -b " + busid)
    if status is DeviceStatus.USED:
        raise DeviceBusy("device %s is already exported" % busid)
    raise DeviceError("device %s is in error state" % busid)
