# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting until a USB device is usable, after an attach or a bind.

The kernel enumerates an imported device a few hundred milliseconds after the
attach write and binds interface drivers after that; whoever uses the device
next must wait for both. Kernel uevents wake the wait as soon as anything
changes on the USB bus. They come straight from the kernel, so they work where
no udevd runs (the lab guests), and pyudev stays optional: without it, without
root, or on a fake tree the wait polls instead. Either way sysfs is the truth,
re-read on every wake-up, so a missed event costs at most one re-check.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any, Callable, List, Optional, Tuple, Union

from .. import validate
from ..errors import InvalidArgument
from .errors import DeviceNotFound
from .fs import Sysfs

USB_DEVICES = "/sys/bus/usb/devices"

_DEVICE = re.compile(r"[0-9]+-[0-9.]+")  # not root hubs (usbN), not interfaces (1-1:1.0)
_POLL = 0.1
_RECHECK = 1.0  # with uevents: re-read sysfs at least this often anyway


@dataclasses.dataclass(frozen=True)
class UsbEntry:
    """What a predicate needs to recognise a device without knowing its busid."""

    busid: str
    id_vendor: Optional[int]
    id_product: Optional[int]
    serial: Optional[str]
    driver: Optional[str]


@dataclasses.dataclass(frozen=True)
class WaitResult:
    busid: str
    method: str  # "uevent" or "poll"
    reason: str  # why it polled ("ready at the first look": no wait was needed); "" with uevents
    elapsed: float


def usb_devices(sysfs: Sysfs) -> List[UsbEntry]:
    """The USB devices present now."""
    entries = []
    for busid in sysfs.listdir(USB_DEVICES):
        if _DEVICE.fullmatch(busid):
            path = "%s/%s" % (USB_DEVICES, busid)
            entries.append(UsbEntry(busid, _hex(sysfs.read_optional(path + "/idVendor")),
                                    _hex(sysfs.read_optional(path + "/idProduct")),
                                    sysfs.read_optional(path + "/serial"), sysfs.link_name(path + "/driver")))
    return entries


def not_ready(sysfs: Sysfs, busid: str, need_driver: bool = True) -> Optional[str]:
    """Why the device is not usable yet, or None when it is."""
    path = "%s/%s" % (USB_DEVICES, busid)
    if not sysfs.exists(path):
        return "%s does not exist" % busid
    if not need_driver:
        return None
    if sysfs.link_name(path + "/driver") is None:
        return "%s has no driver" % busid
    try:
        count = int(sysfs.read_optional(path + "/bNumInterfaces") or "")
    except ValueError:
        return "%s is not configured" % busid
    interfaces = [name for name in sysfs.listdir(path) if name.startswith(busid + ":")]
    if len(interfaces) < count:
        return "%s shows %d of its %d interfaces" % (busid, len(interfaces), count)
    unbound = [name for name in interfaces if sysfs.link_name("%s/%s/driver" % (path, name)) is None]
    if unbound:
        return "no driver is bound to interface %s" % ", ".join(unbound)
    return None


def wait_for_usb_device(
    target: Union[str, Callable[[UsbEntry], bool]],
    timeout: float = 10.0,
    need_driver: bool = True,
    sysfs: Optional[Sysfs] = None,
) -> WaitResult:
    """Wait until a device (a busid, or the first :class:`UsbEntry` a predicate accepts) is usable.

    With ``need_driver`` the device and each of its interfaces must have a
    driver bound; raises :class:`DeviceNotFound` saying what is still missing.
    """
    if isinstance(target, str):
        validate.usb_busid(target)
    elif not callable(target):
        raise InvalidArgument("a busid or a predicate is expected, got %r" % (target,))
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise InvalidArgument("invalid timeout %r: seconds between 0 and 3600 expected" % (timeout,))
    sysfs = sysfs or Sysfs()
    # A device that is ready at the first look needs no monitor: pyudev is a large import,
    # and an Ansible run that changes nothing should not pay for it. The monitor is opened
    # before the second look, so no event between a look and the wait can be missed.
    monitor, reason, looked = None, "ready at the first look", False
    start = time.monotonic()
    while True:
        candidates = [target] if isinstance(target, str) else [e.busid for e in usb_devices(sysfs) if target(e)]
        missing = "no USB device matches"
        for busid in candidates:
            missing = not_ready(sysfs, busid, need_driver)
            if missing is None:
                return WaitResult(busid, "poll" if monitor is None else "uevent", reason, time.monotonic() - start)
        if not looked:
            looked = True
            monitor, reason = _uevent_monitor(sysfs)
            continue
        remaining = start + timeout - time.monotonic()
        if remaining <= 0:
            raise DeviceNotFound(
                "USB device not ready after %.1f s: %s" % (timeout, missing),
                hint="is the driver's module loaded? without udevd nothing loads it"
                if missing.startswith("no driver") else None,
            )
        if monitor is None:
            time.sleep(min(_POLL, remaining))
            continue
        try:
            monitor.poll(timeout=min(_RECHECK, remaining))
        except OSError as err:
            monitor, reason = None, "the uevent socket failed: %s" % err


def _uevent_monitor(sysfs: Sysfs) -> Tuple[Any, str]:
    """A started pyudev kernel-uevent monitor for the USB bus, or None and why not."""
    try:
        import pyudev
    except ImportError:
        return None, "pyudev is not installed"
    if sysfs.root != "/":
        return None, "%s is not the running kernel's sysfs" % sysfs.root
    if os.geteuid() != 0:
        return None, "not running as root"
    try:
        monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
        monitor.filter_by("usb")
        monitor.start()
    except (ImportError, OSError) as err:  # no libudev, or netlink refused
        return None, "kernel uevents are unavailable: %s" % err
    return monitor, ""


def _hex(text: Optional[str]) -> Optional[int]:
    try:
        return int(text or "", 16)
    except ValueError:
        return None
