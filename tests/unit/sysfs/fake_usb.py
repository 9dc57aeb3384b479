# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fake sysfs trees for the server-side drivers (usb, usbip-host, usbip-vudc).

The tree is laid out as the 6.1 kernel shows it (device directories under
``/sys/devices``, symlinks from ``/sys/bus/usb/devices`` and from each
driver's directory, attribute text with the kernel's formats and trailing
newlines); ``test_sysfs_capture.py`` checks it against the real-kernel
captures in ``data/``. Files cannot react to writes, so tests assert on the
journal and call the ``kernel_*`` helpers to play the kernel's part, and
:class:`FakeSysfs` injects the errnos a regular file cannot give (ENODEV from
``dev_desc``, EBUSY from ``usbip_sockfd``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

from usbip.sysfs.errors import SysfsError
from usbip.sysfs.fs import Change, Sysfs

DATA = Path(__file__).parent / "data"

DEVICES = "/sys/bus/usb/devices"
DRIVERS = "/sys/bus/usb/drivers"
HOST = DRIVERS + "/usbip-host"
VUDC_DRIVER = "/sys/bus/platform/drivers/usbip-vudc"

DUMMY_HCD = "/sys/devices/platform/dummy_hcd.0"
VHCI = "/sys/devices/platform/vhci_hcd.0"
#: The xHCI controller on PCI of the lab's emulated USB hardware (QEMU's qemu-xhci), as ``03-hardware.json`` shows it.
XHCI = "/sys/devices/pci0000:00/0000:00:03.0"
STORAGE = DRIVERS + "/usb-storage"
#: The kernel release root hubs name: the lab guest's when ``01``/``02`` were captured, and when the
#: hardware captures (``03``-``06``) were, a later boot's.
KERNEL_RELEASE = "6.1.0-56-amd64"
HARDWARE_RELEASE = "6.1.0-57-amd64"

#: The descriptor the lab's ``gvudc`` gadget (1d6b:0104) shows in ``dev_desc``.
GVUDC_DESC = bytes.fromhex("12 01 00 02 00 00 00 40 6b 1d 04 01 01 06 01 02 03 01")

#: Busids that must be refused before any sysfs access: path tricks, empty,
#: 32 characters (one more than the wire's field holds), a newline, non-ASCII
#: digits, and names of things that are not devices.
BAD_BUSIDS = [
    "../../x",
    "17-1/../../..",
    "",
    "17-1" + ".9" * 14,
    "1" * 32,
    "17-1\n",
    "\uff11\uff17-1",
    "usb17",
    "17-1:1.0",
]

#: (class, subclass, protocol, driver) of one interface.
Interface = Tuple[int, int, int, Optional[str]]
ACM = ((0x02, 0x02, 0x01, None), (0x0A, 0x00, 0x00, None))
MASS_STORAGE = ((0x08, 0x06, 0x50, "usb-storage"),)
FTDI = ((0xFF, 0xFF, 0xFF, "ftdi_sio"),)

#: Endpoints (besides ep0) of an interface, by class: one interrupt endpoint for a hub, a CDC control
#: interface and a HID; bulk in and out and an interrupt endpoint for a smart-card reader (CCID); two bulk
#: endpoints otherwise (CDC data, mass storage, vendor-specific).
_ENDPOINTS = {0x09: 1, 0x02: 1, 0x03: 1, 0x0B: 3}
#: What the lab's gadgets (configfs functions ``acm`` and ``mass_storage``, configuration ``cfg``) show
#: beyond any device: their interface strings by class, and the configuration's string.
GADGET_INTERFACE_STRINGS = {0x02: "CDC Abstract Control Model (ACM)", 0x0A: "CDC ACM Data", 0x08: "Mass Storage"}
GADGET_CONFIGURATION = "cfg"
#: The major number of the USB device nodes (``dev`` is ``189:<(busnum - 1) * 128 + devnum - 1>``).
USB_DEVICE_MAJOR = 189

#: The journal of binding ``17-1`` (the ACM gadget) to usbip-host, in the C tool's order, and of unbinding it.
BIND_17_1 = [
    Change("write", DEVICES + "/17-1/driver/unbind", "17-1"),
    Change("write", HOST + "/match_busid", "add 17-1"),
    Change("write", HOST + "/bind", "17-1"),
]
UNBIND_17_1 = [
    Change("write", HOST + "/unbind", "17-1"),
    Change("write", HOST + "/match_busid", "del 17-1"),
    Change("write", HOST + "/rebind", "17-1"),
]


class FakeSysfs(Sysfs):
    """A :class:`Sysfs` that also fails like the kernel and records every path it touches."""

    def __init__(self, root: Path, errors: Dict[str, int], dry_run: bool = False) -> None:
        super().__init__(str(root), dry_run)
        self.errors = errors
        self.touched: List[str] = []

    def _touch(self, action: str, path: str) -> None:
        self.touched.append(path)
        code = self.errors.get(path)
        if code:
            raise SysfsError(action, path, OSError(code, os.strerror(code)))

    def read(self, path: str) -> str:
        self._touch("read", path)
        return super().read(path)

    def read_bytes(self, path: str) -> bytes:
        self._touch("read", path)
        return super().read_bytes(path)

    def write(self, path: str, value: str) -> None:
        if path in self.errors and not self.dry_run:
            self.journal.append(Change("write", path, value))
            self._touch("write %r to" % value, path)
        self.touched.append(path)
        super().write(path, value)

    def listdir(self, path: str) -> List[str]:
        self.touched.append(path)
        return super().listdir(path)

    def exists(self, path: str) -> bool:
        self.touched.append(path)
        return super().exists(path)

    def isdir(self, path: str) -> bool:
        self.touched.append(path)
        return super().isdir(path)

    def resolve(self, path: str) -> str:
        self.touched.append(path)
        return super().resolve(path)

    def link_name(self, path: str) -> Optional[str]:
        self.touched.append(path)
        return super().link_name(path)


@dataclasses.dataclass(frozen=True)
class _Configuration:
    """A device's configuration 1: the attributes the kernel shows while it is active, and its interfaces."""

    attributes: str  # bmAttributes, in hex
    max_power: str  # bMaxPower: "100mA"
    string: str  # its string descriptor: the "configuration" attribute
    interface_strings: Dict[int, str]  # by interface number: the "interface" attribute
    interfaces: Tuple[Interface, ...]


class FakeTree:
    """Builds and changes a fake kernel tree below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.errors: Dict[str, int] = {}
        #: Device paths of gadgets (see :data:`GADGET_INTERFACE_STRINGS`).
        self.gadgets: Set[str] = set()
        #: Configuration 1 of each device, by path: what :meth:`configure` shows when it is chosen again.
        self.configurations: Dict[str, _Configuration] = {}

    def sysfs(self, dry_run: bool = False) -> FakeSysfs:
        return FakeSysfs(self.root, self.errors, dry_run)

    # -- primitives (kernel paths) ---------------------------------------------
    def host_path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def dir(self, path: str) -> None:
        self.host_path(path).mkdir(parents=True, exist_ok=True)

    def file(self, path: str, content: Union[str, bytes] = "") -> None:
        target = self.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("ascii") if isinstance(content, str) else content)

    def attrs(self, path: str, **values: str) -> None:
        """Attributes of one directory; each value gets the kernel's trailing newline."""
        directory = self.host_path(path)
        directory.mkdir(parents=True, exist_ok=True)
        for name, value in values.items():
            (directory / name).write_bytes((value + "\n").encode("ascii"))

    def link(self, path: str, target: str) -> None:
        """A symlink stored relative, as sysfs stores them."""
        host = self.host_path(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        if host.is_symlink():
            host.unlink()
        host.symlink_to(os.path.relpath(target, os.path.dirname(path)))

    def remove(self, path: str) -> None:
        host = self.host_path(path)
        if host.is_symlink() or host.is_file():
            host.unlink()
        elif host.is_dir():
            shutil.rmtree(host)

    def read(self, path: str) -> str:
        return self.host_path(path).read_text()

    # -- building blocks -------------------------------------------------------
    def usb_driver(self, name: str, interfaces: bool = False, module: str = "usbcore") -> None:
        base = "%s/%s" % (DRIVERS, name)
        for attr in ("bind", "unbind", "uevent") + (("new_id", "remove_id") if interfaces else ()):
            self.file("%s/%s" % (base, attr))
        self.link(base + "/module", "/sys/module/" + module)

    def platform_device(self, path: str, driver: str) -> None:
        """The attributes every platform device shows (the driver's own come on top), and its driver link."""
        self.attrs(path, driver_override="(null)", modalias="platform:" + driver)
        self.file(path + "/uevent")
        self.link(path + "/driver", "/sys/bus/platform/drivers/" + driver)

    def bind_driver(self, path: str, driver: Optional[str]) -> None:
        """The ``driver`` link of a device or interface, and the driver's link back."""
        name = os.path.basename(path)
        old = self.host_path(path + "/driver")
        if old.is_symlink():
            self.remove("%s/%s/%s" % (DRIVERS, os.path.basename(os.readlink(old)), name))
            old.unlink()
        if driver is not None:
            self.link(path + "/driver", "%s/%s" % (DRIVERS, driver))
            self.link("%s/%s/%s" % (DRIVERS, driver, name), path)

    def usb_device(
        self,
        path: str,
        *,
        devnum: int,
        devpath: str,
        vendor: int,
        product: int,
        bcd: int = 0x0601,
        device_class: Tuple[int, int, int] = (0, 0, 0),
        speed: str = "480",
        configuration: Optional[int] = 1,
        interfaces: Sequence[Interface] = (),
        driver: Optional[str] = "usb",
        strings: Optional[Dict[str, str]] = None,
        max_packet0: int = 64,
        maxchild: int = 0,
        version: str = " 2.00",
        gadget: bool = False,
        attributes: Optional[int] = None,
        max_power: Optional[str] = None,
        configuration_string: Optional[str] = None,
        interface_strings: Optional[Dict[int, str]] = None,
    ) -> str:
        """A USB device directory with its attributes, interfaces and links; returns the busid.

        ``gadget``: the device is one of the lab's gadgets (see :data:`GADGET_INTERFACE_STRINGS`).
        ``attributes`` (bmAttributes), ``max_power`` (bMaxPower), ``configuration_string`` and
        ``interface_strings`` (by interface number) describe configuration 1; without them, a root hub's,
        a gadget's or a bus-powered device's.
        """
        name = os.path.basename(path)
        root_hub = name.startswith("usb")
        busnum = int(name[3:]) if root_hub else int(name.split("-")[0])
        if gadget:
            self.gadgets.add(path)
        self.configurations[path] = _Configuration(
            attributes="%02x" % (attributes if attributes is not None else 0xE0 if root_hub else 0x80),
            max_power=max_power or ("0mA" if root_hub else "2mA" if gadget else "100mA"),
            string=GADGET_CONFIGURATION if gadget and configuration_string is None else configuration_string or "",
            interface_strings=dict(interface_strings or {}),
            interfaces=tuple(interfaces),
        )
        # What every device shows that no driver here reads; the values are those of the captures.
        self.attrs(
            path,
            authorized="1",
            avoid_reset_quirk="0",
            dev="%d:%d" % (USB_DEVICE_MAJOR, (busnum - 1) * 128 + devnum - 1),
            ltm_capable="no",
            quirks="0x0",
            removable="unknown",
            rx_lanes="1",
            tx_lanes="1",
            urbnum="0",
        )
        if root_hub:
            self.attrs(path, authorized_default="1", interface_authorized_default="1")
        # The device descriptor (the kernel follows it with the configurations'; no code here reads it).
        bcd_usb = int(version.strip().replace(".", ""), 16)
        self.file(path + "/descriptors", struct.pack("<BBHBBBBHHHBBBB", 18, 1, bcd_usb, *device_class, max_packet0,
                                                     vendor, product, bcd, 0, 0, 0, 1))
        self.file(path + "/remove")
        self.file(path + "/uevent")
        self.attrs(
            path,
            bDeviceClass="%02x" % device_class[0],
            bDeviceSubClass="%02x" % device_class[1],
            bDeviceProtocol="%02x" % device_class[2],
            bMaxPacketSize0="%d" % max_packet0,
            bNumConfigurations="1",
            bcdDevice="%04x" % bcd,
            busnum="%d" % busnum,
            devnum="%d" % devnum,
            devpath=devpath,
            idProduct="%04x" % product,
            idVendor="%04x" % vendor,
            maxchild="%d" % maxchild,
            speed=speed,
            version=version,
            **(strings or {}),
        )
        self.link("%s/%s" % (DEVICES, name), path)
        self.bind_driver(path, driver)
        self.configure(path, configuration, interfaces)
        return name

    def configure(self, path: str, configuration: Optional[int], interfaces: Sequence[Interface] = ()) -> None:
        """Set (or, with None, clear) the active configuration and its interfaces.

        Unconfigured, the kernel shows the configuration's attributes (bConfigurationValue, bNumInterfaces,
        bmAttributes, bMaxPower, configuration) empty, without a newline.
        """
        name = os.path.basename(path)
        prefix = ("%s-0" % name[3:] if name.startswith("usb") else name) + ":"
        for entry in list(self.host_path(path).iterdir()):
            if entry.name.startswith(prefix):
                self.bind_driver("%s/%s" % (path, entry.name), None)
                self.remove("%s/%s" % (DEVICES, entry.name))
                shutil.rmtree(entry)
        if configuration is None:
            for attr in ("bConfigurationValue", "bNumInterfaces", "bmAttributes", "bMaxPower", "configuration"):
                self.file("%s/%s" % (path, attr))
            return
        described = self.configurations.get(path, _Configuration("80", "100mA", "", {}, ()))
        gadget = path in self.gadgets
        self.attrs(path, bConfigurationValue="%d" % configuration, bNumInterfaces="%2d" % len(interfaces),
                   bmAttributes=described.attributes, bMaxPower=described.max_power)
        self.file(path + "/configuration", described.string + "\n" if described.string else "")
        device = "usb:v%sp%sd%sdc%sdsc%sdp%s" % tuple(
            self.read("%s/%s" % (path, attr)).strip().upper()
            for attr in ("idVendor", "idProduct", "bcdDevice", "bDeviceClass", "bDeviceSubClass", "bDeviceProtocol"))
        # A gadget's acm function is a CDC control and a data interface joined by an association descriptor.
        classes = [cls for cls, _sub, _proto, _driver in interfaces]
        association = interfaces[0][:3] if gadget and classes == [0x02, 0x0A] else None
        for number, (cls, sub, proto, driver) in enumerate(interfaces):
            ifname = "%s%d.%d" % (prefix, configuration, number)
            ifpath = "%s/%s" % (path, ifname)
            self.attrs(
                ifpath,
                authorized="1",
                bAlternateSetting=" 0",
                bInterfaceClass="%02x" % cls,
                bInterfaceNumber="%02x" % number,
                bInterfaceProtocol="%02x" % proto,
                bInterfaceSubClass="%02x" % sub,
                bNumEndpoints="%02x" % _ENDPOINTS.get(cls, 2),
                modalias="%sic%02Xisc%02Xip%02Xin%02X" % (device, cls, sub, proto, number),
                supports_autosuspend="1",
            )
            self.file(ifpath + "/uevent")
            string = GADGET_INTERFACE_STRINGS.get(cls) if gadget else described.interface_strings.get(number)
            if string is not None:
                self.attrs(ifpath, interface=string)
            if association is not None:
                self.attrs(ifpath, iad_bFirstInterface="00", iad_bFunctionClass="%02x" % association[0],
                           iad_bFunctionSubClass="%02x" % association[1],
                           iad_bFunctionProtocol="%02x" % association[2], iad_bInterfaceCount="%02x" % len(interfaces))
            self.link("%s/%s" % (DEVICES, ifname), ifpath)
            self.bind_driver(ifpath, driver)

    def root_hub(self, hcd: str, busnum: int, name: str, superspeed: bool = False, maxchild: int = 1,
                 release: str = KERNEL_RELEASE) -> str:
        """The root hub ``usbN`` of a host controller; returns its path.

        ``release``: the kernel's, which the root hub's manufacturer string names.
        """
        path = "%s/usb%d" % (hcd, busnum)
        self.usb_device(
            path,
            devnum=1,
            devpath="0",
            vendor=0x1D6B,
            product=0x0003 if superspeed else 0x0002,
            device_class=(0x09, 0x00, 0x03 if superspeed else 0x01),
            speed="5000" if superspeed else "480",
            interfaces=((0x09, 0x00, 0x00, "hub"),),
            strings={
                "manufacturer": "Linux %s %s" % (release, name),
                "product": _HCD_PRODUCT[name],
                "serial": os.path.basename(hcd),
            },
            max_packet0=9 if superspeed else 64,
            maxchild=maxchild,
            version=" 3.00" if superspeed else " 2.00",
        )
        return path

    def usbip_host(self) -> None:
        self.usb_driver("usbip-host", module="usbip_host")
        self.file(HOST + "/rebind")
        self.file(HOST + "/match_busid", "\n")

    def vudc(self, index: int, descriptor: Optional[bytes], function: str = "", speed: str = "UNKNOWN") -> str:
        """A usbip-vudc instance; without a descriptor no gadget is bound (ENODEV)."""
        name = "usbip-vudc.%d" % index
        path = "/sys/devices/platform/" + name
        self.platform_device(path, "usbip-vudc")
        self.file(path + "/usbip_sockfd")
        self.attrs(path, usbip_status="1")
        self.file(path + "/dev_desc", descriptor or b"")
        if descriptor is None:
            self.errors[path + "/dev_desc"] = 19  # ENODEV
        self.link(path + "/driver", VUDC_DRIVER)
        self.link("%s/%s" % (VUDC_DRIVER, name), path)
        self.udc(path, name, function, speed)
        return name

    def udc(self, platform_path: str, name: str, function: str, speed: str) -> None:
        udc = "%s/udc/%s" % (platform_path, name)
        self.file(udc + "/function", function + "\n" if function else "")
        self.attrs(udc, current_speed=speed, maximum_speed="high-speed", state="not attached")
        self.attrs(udc, a_alt_hnp_support="0", a_hnp_support="0", b_hnp_enable="0", is_a_peripheral="0", is_otg="0",
                   is_selfpowered="0")
        for attr in ("soft_connect", "srp", "uevent"):  # soft_connect and srp are write-only (EACCES on read)
            self.file("%s/%s" % (udc, attr))
        # The kernel spells this link the long way round (up to the platform directory and back down).
        device = self.host_path(udc + "/device")
        if not device.is_symlink():
            device.symlink_to("../../../" + os.path.basename(platform_path))
        self.link("/sys/class/udc/" + name, udc)

    # -- the kernel's reactions to writes ----------------------------------------
    def kernel_host_bind(self, busid: str) -> None:
        """What usbip-host's bind does: the generic driver's release unconfigures the device."""
        path = self.resolve(busid)
        self.configure(path, None)
        self.bind_driver(path, "usbip-host")
        self.file(path + "/usbip_sockfd")
        self.attrs(path, usbip_status="1", usbip_debug="0")
        self.file(HOST + "/match_busid", "%s \n" % busid)

    def kernel_host_attach(self, busid: str, interfaces: Sequence[Interface]) -> None:
        """A client attached: it chose configuration 1 and the stub reports USED."""
        path = self.resolve(busid)
        self.configure(path, 1, [(c, s, p, None) for c, s, p, _ in interfaces])
        self.attrs(path, usbip_status="2")

    def kernel_host_unbind(self, busid: str, driver: str = "usb",
                           interfaces: Optional[Sequence[Interface]] = None) -> None:
        """What usbip-host's unbind and the rebind do: the generic driver configures the device again.

        ``interfaces``: those of the configuration it chooses, with their drivers; by default the
        device's own (what it showed when it was built).
        """
        path = self.resolve(busid)
        for attr in ("usbip_status", "usbip_debug", "usbip_sockfd"):
            self.remove("%s/%s" % (path, attr))
        self.bind_driver(path, driver)
        if interfaces is None:
            interfaces = self.configurations[path].interfaces
        self.configure(path, 1, interfaces)
        self.file(HOST + "/match_busid", "\n")

    def kernel_driver_unbind(self, busid: str) -> None:
        """What writing the busid to the generic driver's ``unbind`` does: no driver, and unconfigured
        (the generic driver's release sets configuration -1)."""
        path = self.resolve(busid)
        self.configure(path, None)
        self.bind_driver(path, None)

    def resolve(self, busid: str) -> str:
        """Kernel path of a device directory, from its bus link."""
        host = os.path.realpath(self.host_path("%s/%s" % (DEVICES, busid)))
        return "/" + os.path.relpath(host, os.path.realpath(self.root))


_HCD_PRODUCT = {
    "dummy_hcd": "Dummy host controller",
    "vhci_hcd": "USB/IP Virtual Host Controller",
    "xhci-hcd": "xHCI Host Controller",
}


def standard_tree(root: Path) -> FakeTree:
    """The lab machine after ``capture-job.sh`` set up its gadgets, with the emulated USB hardware of
    ``capture-hardware-job.sh`` on its xHCI controller.

    * bus 17 (dummy_hcd): ``17-1``, the ``gdummy`` ACM gadget (1209:0001), bound to ``usb``;
    * bus 1 (vhci_hcd.0): ``1-1`` and ``1-2``, devices imported from a server;
    * bus 18 (QEMU's xHCI on PCI, the lab's emulated hardware, as ``03-hardware.json``
      shows it): the hub ``18-1`` (0409:55aa) with a disk ``18-1.2`` (46f4:0001
      LABDISK1, usb-storage) and an FTDI adapter ``18-1.3`` (0403:6001 LABSER1,
      ftdi_sio) behind it, a keyboard ``18-2`` (0627:0001 LABKBD1, usbhid) and a
      smart-card reader ``18-3`` (08e6:4433 LABCCID1) whose interface no driver
      claims;
    * ``usbip-vudc.0`` with the ``gvudc`` mass-storage gadget, ``usbip-vudc.1`` empty.
    """
    t = FakeTree(root)
    t.usb_driver("hub", interfaces=True)
    t.usb_driver("usb")
    t.usb_driver("usbfs", interfaces=True)
    t.usb_driver("usb-storage", interfaces=True, module="usb_storage")
    t.usbip_host()

    gdummy = {"manufacturer": "vmlab", "product": "gadget-gdummy", "serial": "SER-gdummy"}
    t.platform_device(DUMMY_HCD, "dummy_hcd")
    t.file(DUMMY_HCD + "/urbs")
    t.root_hub(DUMMY_HCD, 17, "dummy_hcd")
    t.usb_device(DUMMY_HCD + "/usb17/17-1", devnum=2, devpath="1", vendor=0x1209, product=0x0001, interfaces=ACM,
                 strings=gdummy, gadget=True)

    t.platform_device(VHCI, "vhci_hcd")
    t.root_hub(VHCI, 1, "vhci_hcd", maxchild=15)
    t.root_hub(VHCI, 2, "vhci_hcd", superspeed=True, maxchild=15)
    t.usb_device(VHCI + "/usb1/1-1", devnum=2, devpath="1", vendor=0x1209, product=0x0001, interfaces=ACM,
                 strings=gdummy, gadget=True)
    t.usb_device(VHCI + "/usb1/1-2", devnum=3, devpath="2", vendor=0x1D6B, product=0x0104, interfaces=MASS_STORAGE,
                 strings={"manufacturer": "vmlab", "product": "gadget-gvudc", "serial": "SER-gvudc"}, gadget=True)

    # Bus 18 as 03-hardware.json shows it (there bus 17): the devices QEMU emulates, each with its strings.
    qemu = {"manufacturer": "QEMU"}
    t.root_hub(XHCI, 18, "xhci-hcd", maxchild=4, release=HARDWARE_RELEASE)
    t.usb_device(XHCI + "/usb18/18-1", devnum=2, devpath="1", vendor=0x0409, product=0x55AA, bcd=0x0101,
                 device_class=(0x09, 0x00, 0x00), speed="12", version=" 1.10", max_packet0=8, maxchild=8,
                 attributes=0xE0, max_power="0mA", interfaces=((0x09, 0x00, 0x00, "hub"),),
                 strings=dict(qemu, product="QEMU USB Hub", serial="314159-0000:00:03.0-1"))
    t.usb_device(XHCI + "/usb18/18-2", devnum=3, devpath="2", vendor=0x0627, product=0x0001, bcd=0x0000,
                 attributes=0xA0, configuration_string="HID Keyboard", interfaces=((0x03, 0x01, 0x01, "usbhid"),),
                 strings=dict(qemu, product="QEMU USB Keyboard", serial="LABKBD1"))
    t.usb_device(XHCI + "/usb18/18-1/18-1.2", devnum=4, devpath="1.2", vendor=0x46F4, product=0x0001, bcd=0x0000,
                 speed="12", max_packet0=8, attributes=0xC0, max_power="0mA",
                 configuration_string="Full speed config (usb 1.1)", interfaces=MASS_STORAGE,
                 strings=dict(qemu, product="QEMU USB HARDDRIVE", serial="LABDISK1"))
    t.usb_device(XHCI + "/usb18/18-3", devnum=5, devpath="3", vendor=0x08E6, product=0x4433, bcd=0x0000, speed="12",
                 version=" 1.10", attributes=0xE0, interfaces=((0x0B, 0x00, 0x00, None),),
                 interface_strings={0: "CCID Interface"},
                 strings=dict(qemu, product="QEMU USB CCID", serial="LABCCID1"))
    t.usb_device(XHCI + "/usb18/18-1/18-1.3", devnum=6, devpath="1.3", vendor=0x0403, product=0x6001, bcd=0x0400,
                 speed="12", max_packet0=8, attributes=0xA0, interfaces=FTDI,
                 strings=dict(qemu, product="QEMU USB SERIAL", serial="LABSER1"))

    for attr in ("bind", "unbind", "uevent"):
        t.file("%s/%s" % (VUDC_DRIVER, attr))
    t.link(VUDC_DRIVER + "/module", "/sys/module/usbip_vudc")
    t.vudc(0, GVUDC_DESC, function="gvudc", speed="high-speed")
    t.vudc(1, None)
    t.udc("/sys/devices/platform/dummy_udc.0", "dummy_udc.0", "gdummy", "high-speed")
    return t


#: Captures from a boot without dummy_hcd, where the xHCI controller took bus 17 (and each bus after it
#: one number less than where the fakes have it): :func:`load_capture` renumbers them, bus N >= 17 as
#: N + 1, so that their xHCI bus is the fake's bus 18.
RENUMBERED = {"03-hardware.json", "04-hardware-bound.json", "05-hardware-unbound.json"}
_FIRST_SHIFTED_BUS = 17
#: A path component that names a bus: ``usb17``, ``usb17-port1``, ``17-1.2``, ``17-1.2:1.0``, ``17-1-port2``.
_BUS_COMPONENT = re.compile(r"(usb)?([0-9]+)(-.*|:.*)?")


def _renumber_component(component: str) -> str:
    match = _BUS_COMPONENT.fullmatch(component)
    # A bare number (a SCSI LUN, a minor) is no bus; a busid has its dash, a root hub its "usb".
    if match is None or int(match.group(2)) < _FIRST_SHIFTED_BUS or not (
            match.group(1) or (match.group(3) or "").startswith("-")):
        return component
    return "%s%d%s" % (match.group(1) or "", int(match.group(2)) + 1, match.group(3) or "")


def _renumber_path(path: str) -> str:
    return "/".join(map(_renumber_component, path.split("/")))


def renumbered(capture: Dict[str, dict]) -> Dict[str, dict]:
    """A capture with each bus from 17 on one number higher: paths, link targets, and the attributes
    that name the bus (``busnum``, a device's ``dev`` minor, the busids in ``match_busid``)."""
    result = {}
    for path, entry in capture.items():
        entry = dict(entry)
        name = os.path.basename(path)
        if "target" in entry:
            entry["target"] = _renumber_path(entry["target"])
        text = entry.get("text")
        if text and name == "busnum" and int(text) >= _FIRST_SHIFTED_BUS:
            entry["text"] = "%d\n" % (int(text) + 1)
        elif text and name == "dev" and text.startswith("%d:" % USB_DEVICE_MAJOR):
            minor = int(text.split(":")[1])
            if minor // 128 + 1 >= _FIRST_SHIFTED_BUS:
                entry["text"] = "%d:%d\n" % (USB_DEVICE_MAJOR, minor + 128)
        elif text and name == "match_busid":
            entry["text"] = re.sub(r"[^ \n]+", lambda m: _renumber_component(m.group(0)), text)
        result[_renumber_path(path)] = entry
    return result


def load_capture(name: str) -> Dict[str, dict]:
    """A capture of ``data/``; a missing one fails the test that needs it, saying so (never a skip).

    The captures in :data:`RENUMBERED` come with the fakes' bus numbers.
    """
    path = DATA / name
    if not path.is_file():
        raise FileNotFoundError("the real-kernel capture %s is missing: it belongs to the repository"
                                " (data/README.md says how to take it again)" % path)
    with open(path) as f:
        capture = json.load(f)
    return renumbered(capture) if name in RENUMBERED else capture


def capture_tree(name: str, root: Path) -> FakeTree:
    """Materialise a real-kernel capture; attributes that failed to read fail the same way.

    EACCES (write-only attributes) is not replayed: root may write them. A capture that did not
    record ``/sys/bus/usb/devices`` gets the links the kernel keeps there: one for each device and
    interface directory it holds.
    """
    t = FakeTree(root)
    capture = load_capture(name)
    for path, entry in sorted(capture.items()):
        if entry["type"] == "dir":
            t.dir(path)
        elif entry["type"] == "link":
            t.link(path, os.path.normpath(os.path.join(os.path.dirname(path), entry["target"])))
        elif "hex" in entry:
            t.file(path, bytes.fromhex(entry["hex"]))
        else:
            t.file(path, entry.get("text", ""))
            if entry.get("errno", 13) != 13:
                t.errors[path] = entry["errno"]
    if not any(path.startswith(DEVICES + "/") for path in capture):
        for path in capture:
            if path + "/busnum" in capture or path + "/bInterfaceClass" in capture:  # a device, an interface
                t.link("%s/%s" % (DEVICES, os.path.basename(path)), path)
    return t
