# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local USB devices as the server sees them in ``/sys/bus/usb/devices``.

The wire record (:class:`UsbDevice`) is what a client is told; operators and
the daemon's policies also need the driver, the serial and the strings to
recognise a device across replugs, so :class:`LocalDevice` carries both.
"""

from __future__ import annotations

import dataclasses
import errno
import re
from typing import Collection, List, Optional, Tuple

from .. import validate
from ..device import Speed, UsbDevice, UsbInterface
from .errors import DeviceNotFound, SysfsError
from .fs import Sysfs

DEVICES = "/sys/bus/usb/devices"
HUB_CLASS = 0x09


@dataclasses.dataclass(frozen=True)
class LocalDevice:
    """A device on this machine: its wire record plus what only sysfs knows."""

    device: UsbDevice
    driver: Optional[str]
    serial: Optional[str]
    manufacturer: Optional[str]
    product: Optional[str]
    devpath: str
    is_hub: bool
    under_vhci: bool

    @property
    def busid(self) -> str:
        return self.device.busid

    @property
    def bindable(self) -> bool:
        """Whether usbip-host may take it: hubs cannot be exported, and re-exporting an
        imported device deadlocks the USB stack."""
        return not (self.is_hub or self.under_vhci)


def is_device_name(name: str) -> bool:
    """True for device entries (``17-1``, ``3-1.4``).

    Interfaces (``17-1:1.0``), root hubs (``usb17``) and driver control files
    (``bind``, ``module``) share the directories these names are listed from.
    """
    return bool(name) and name[0].isdigit() and ":" not in name


def under_vhci(path: str) -> bool:
    """Whether a resolved sysfs path runs through a vhci_hcd controller."""
    return any(part.startswith("vhci_hcd.") for part in path.split("/"))


def _busid_key(busid: str) -> List[int]:
    """Numeric order, so that ``1-2`` comes before ``1-10``."""
    return [int(n) for n in re.split(r"[-.]", busid) if n.isdigit()]


def _int_or_zero(text: str) -> int:
    """``bConfigurationValue`` and ``bNumInterfaces`` are empty while unconfigured."""
    text = text.strip()
    return int(text) if text else 0


class UsbBus:
    """Reads device descriptions from the USB bus in sysfs."""

    def __init__(self, sysfs: Optional[Sysfs] = None) -> None:
        self.sysfs = sysfs if sysfs is not None else Sysfs()

    def describe(self, busid: str) -> LocalDevice:
        busid = validate.usb_busid(busid)
        base = "%s/%s" % (DEVICES, busid)
        if not self.sysfs.isdir(base):
            raise DeviceNotFound("device with bus ID %s does not exist" % busid)
        path, device_class = self._kind(busid)
        return self._read(busid, path, device_class, self.sysfs.listdir(base))

    def devices(self, bindable_only: bool = False) -> List[LocalDevice]:
        """Every device, or only those ``usbip list -l`` shows (no hubs, nothing under vhci_hcd).

        The bus listing already names each device's interfaces, so the scan
        costs one listing plus attribute reads; hubs and imported devices are
        recognised before their other attributes are read. A device unplugged
        during the scan is left out rather than failing the whole list.
        """
        entries = self.sysfs.listdir(DEVICES)
        found = []
        for busid in sorted((n for n in entries if is_device_name(n)), key=_busid_key):
            try:
                path, device_class = self._kind(busid)
                if bindable_only and (under_vhci(path) or device_class == HUB_CLASS):
                    continue
                found.append(self._read(busid, path, device_class, entries))
            except SysfsError as err:
                if err.errno not in (errno.ENOENT, errno.ENODEV):
                    raise
        return found

    def _kind(self, busid: str) -> Tuple[str, int]:
        """The two facts that decide whether a device is worth reading further."""
        base = "%s/%s" % (DEVICES, busid)
        return self.sysfs.resolve(base), self.sysfs.read_int(base + "/bDeviceClass", 16)

    def _read(self, busid: str, path: str, device_class: int, entries: Collection[str]) -> LocalDevice:
        fs = self.sysfs
        base = "%s/%s/" % (DEVICES, busid)
        configuration = _int_or_zero(fs.read(base + "bConfigurationValue"))
        prefix = "%s:%d." % (busid, configuration)
        names = sorted((n for n in entries if n.startswith(prefix)), key=lambda n: int(n[len(prefix) :]))
        # The count sent on the wire is the interfaces read, not bNumInterfaces:
        # the two differ for a moment while the kernel configures a device, and
        # a DEVLIST record must carry exactly as many interface records as it says.
        interfaces = tuple(self._interface("%s/%s/" % (DEVICES, name)) for name in names)
        device = UsbDevice(
            path=path,
            busid=busid,
            busnum=int(busid.split("-", 1)[0]),
            devnum=fs.read_int(base + "devnum"),
            speed=Speed.from_sysfs(fs.read(base + "speed")),
            id_vendor=fs.read_int(base + "idVendor", 16),
            id_product=fs.read_int(base + "idProduct", 16),
            bcd_device=fs.read_int(base + "bcdDevice", 16),
            device_class=device_class,
            device_subclass=fs.read_int(base + "bDeviceSubClass", 16),
            device_protocol=fs.read_int(base + "bDeviceProtocol", 16),
            configuration_value=configuration,
            num_configurations=fs.read_int(base + "bNumConfigurations"),
            num_interfaces=len(interfaces),
            interfaces=interfaces,
        )
        return LocalDevice(
            device=device,
            driver=fs.link_name(base + "driver"),
            serial=fs.read_optional(base + "serial"),
            manufacturer=fs.read_optional(base + "manufacturer"),
            product=fs.read_optional(base + "product"),
            devpath=fs.read(base + "devpath"),
            is_hub=device_class == HUB_CLASS,
            under_vhci=under_vhci(path),
        )

    def _interface(self, base: str) -> UsbInterface:
        read = self.sysfs.read_int
        return UsbInterface(
            read(base + "bInterfaceClass", 16),
            read(base + "bInterfaceSubClass", 16),
            read(base + "bInterfaceProtocol", 16),
        )
