# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The usbip-vudc driver: exporting this machine's own USB gadget (device mode).

Each ``usbip-vudc.N`` instance is a virtual device controller; once a gadget
is bound to it, the instance itself is the exportable device and its name is
the busid. The kernel only shows the gadget's 18-byte device descriptor, so
the record fills the remaining wire fields the way the C server does (bus and
device number, configuration and interface count all 0), which keeps both
servers' DEVLIST answers identical.
"""

from __future__ import annotations

import collections
import errno
import re
import struct
from typing import List, Optional

from .. import validate
from ..device import DeviceStatus, Speed, UsbDevice
from ..errors import UsbipError
from .errors import DeviceBusy, DeviceError, DeviceNotFound, DriverNotLoaded, NotExportable, SysfsError
from .fs import Sysfs
from .kmod import KernelModule, by_instances

DRIVER_NAME = "usbip-vudc"
DRIVER = "/sys/bus/platform/drivers/" + DRIVER_NAME
PLATFORM = "/sys/devices/platform"
UDC_CLASS = "/sys/class/udc"

# struct usb_device_descriptor (USB 2.0 section 9.6.1), little-endian, 18 bytes.
_DEVICE_DESCRIPTOR = struct.Struct("<BBHBBBBHHHBBBB")
_Descriptor = collections.namedtuple(
    "_Descriptor",
    "bLength bDescriptorType bcdUSB bDeviceClass bDeviceSubClass bDeviceProtocol bMaxPacketSize0"
    " idVendor idProduct bcdDevice iManufacturer iProduct iSerialNumber bNumConfigurations",
)
_INSTANCE = re.compile(r"usbip-vudc\.([0-9]+)")


def kernel_module(instances: int) -> KernelModule:
    """The module, loaded to make ``usbip-vudc.0`` .. ``usbip-vudc.<instances-1>`` (platform devices and UDCs)."""
    return by_instances(DRIVER_NAME, DRIVER, instances, UDC_CLASS, DRIVER_NAME)


class VudcDriver:
    """Lists, describes and exports usbip-vudc instances.

    Its export interface is :class:`~usbip.sysfs.host.HostDriver`'s: ``mode``,
    ``check_loaded``, ``scan``, ``status``, ``status_file``, ``export``.
    """

    #: The usbipd mode that serves this driver's devices.
    mode = "device"

    def __init__(self, sysfs: Optional[Sysfs] = None) -> None:
        self.sysfs = sysfs if sysfs is not None else Sysfs()

    def check_loaded(self) -> None:
        if not self.sysfs.isdir(DRIVER):
            raise DriverNotLoaded("the %s driver is not loaded" % DRIVER_NAME, hint="modprobe usbip-vudc")

    def instances(self) -> List[str]:
        """Instance names in numeric order (``modprobe usbip-vudc num=N`` makes N)."""
        found = [m for m in map(_INSTANCE.fullmatch, self.sysfs.listdir(DRIVER)) if m]
        return [m.group(0) for m in sorted(found, key=lambda m: int(m.group(1)))]

    def status(self, name: str) -> DeviceStatus:
        return self._status(self._existing(name))

    def _status(self, name: str) -> DeviceStatus:
        value = self.sysfs.read_int("%s/%s/usbip_status" % (PLATFORM, name))
        try:
            return DeviceStatus(value)
        except ValueError:
            raise DeviceError("%s reports unknown usbip_status %d" % (name, value)) from None

    def status_file(self, name: str) -> str:
        """Host path of the ``usbip_status`` that :meth:`status` reads (the daemon keeps it open)."""
        return self.sysfs.real("%s/%s/usbip_status" % (PLATFORM, name))

    def has_gadget(self, name: str) -> bool:
        """Whether a gadget is bound; only then is there a device to export.

        ``function`` names the bound gadget driver; a gadget that leaves it
        empty still makes ``dev_desc`` readable.
        """
        name = self._existing(name)
        if self.sysfs.read_optional("%s/%s/function" % (UDC_CLASS, name)):
            return True
        return self._descriptor(name) is not None

    def describe(self, name: str) -> UsbDevice:
        """The wire record of the gadget bound to ``name``; NotExportable without one."""
        name = self._existing(name)
        descriptor = self._descriptor(name)
        if descriptor is None:
            raise NotExportable("no gadget is bound to %s" % name)
        return self._record(name, descriptor)

    def scan(self) -> List[UsbDevice]:
        """The devices offered for export: instances with a gadget bound (``usbip list -d``)."""
        found = []
        for name in self.instances():
            descriptor = self._descriptor(name)
            if descriptor is not None:
                found.append(self._record(name, descriptor))
        return found

    def export(self, name: str, sockfd: int) -> None:
        """Hand a connected socket to the instance; the kernel then serves the gadget on it.

        Status and gadget are checked first, as ``HostDriver.export`` does, so
        that an instance in use or without a gadget is refused without a
        write; the kernel's EBUSY/ENODEV still answer a lost race.
        """
        name = self._existing(name)
        sockfd = validate.integer(sockfd, "socket fd", 0, 2**31 - 1)
        status = self._status(name)
        if status is DeviceStatus.USED:
            raise DeviceBusy("%s is already exported" % name)
        if status is not DeviceStatus.AVAILABLE:
            raise DeviceError("%s is in error state" % name)
        if self._descriptor(name) is None:
            raise NotExportable("no gadget is bound to %s" % name)
        try:
            self.sysfs.write("%s/%s/usbip_sockfd" % (PLATFORM, name), str(sockfd))
        except SysfsError as err:
            if err.errno == errno.EBUSY:
                raise DeviceBusy("%s is already exported" % name) from None
            if err.errno == errno.ENODEV:
                raise NotExportable("no gadget is bound to %s" % name) from None
            raise

    def release(self, name: str) -> None:
        """End the current import of the gadget and leave it exported: ``-1`` to ``usbip_sockfd``.

        Refused, without a write, while nobody imports it.
        """
        name = self._existing(name)
        status = self._status(name)
        if status is not DeviceStatus.USED:
            raise NotExportable("%s is not in use (usbip_status %d): nothing to release" % (name, status.value))
        self.sysfs.write("%s/%s/usbip_sockfd" % (PLATFORM, name), "-1")

    def _existing(self, name: str) -> str:
        name = validate.vudc_busid(name)
        if not self.sysfs.isdir("%s/%s" % (PLATFORM, name)):
            raise DeviceNotFound("%s does not exist" % name, hint="modprobe usbip-vudc num=<instances>")
        return name

    def _descriptor(self, name: str) -> Optional[bytes]:
        """The gadget's device descriptor; None while no gadget is bound (ENODEV)."""
        path = "%s/%s/dev_desc" % (PLATFORM, name)
        try:
            data = self.sysfs.read_bytes(path)
        except SysfsError as err:
            if err.errno == errno.ENODEV:
                return None
            raise
        if len(data) < _DEVICE_DESCRIPTOR.size:
            raise UsbipError("short device descriptor (%d bytes) in %s" % (len(data), path))
        return data[: _DEVICE_DESCRIPTOR.size]

    def _record(self, name: str, descriptor: bytes) -> UsbDevice:
        desc = _Descriptor._make(_DEVICE_DESCRIPTOR.unpack(descriptor))
        speed = self.sysfs.read_optional("%s/%s/current_speed" % (UDC_CLASS, name))
        return UsbDevice(
            path="%s/%s" % (PLATFORM, name),
            busid=name,
            busnum=0,
            devnum=0,
            speed=Speed.from_udc(speed or ""),
            id_vendor=desc.idVendor,
            id_product=desc.idProduct,
            bcd_device=desc.bcdDevice,
            device_class=desc.bDeviceClass,
            device_subclass=desc.bDeviceSubClass,
            device_protocol=desc.bDeviceProtocol,
            configuration_value=0,
            num_configurations=desc.bNumConfigurations,
            num_interfaces=0,
        )
