# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Export rules: which local devices a server binds to usbip-host by itself.

An operator declares devices by busid or by stable identity (the criteria of
:class:`~usbip.matching.Match`); the daemon applies the rules at start and
after every hotplug, so an export survives a reboot or a replug without
Ansible running. A rule that matches several devices exports them all: a
rule is a policy ("every FTDI adapter"), not a selection of exactly one.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import List, Optional

from ..errors import UsbipError
from ..matching import Match
from ..sysfs.host import DRIVER_NAME, HostDriver
from ..sysfs.usb import LocalDevice

log = logging.getLogger("usbipd")


@dataclasses.dataclass(frozen=True)
class ExportRule:
    """A busid, or a :class:`Match`; parsed from usbipd.yml by :func:`usbip.config.parse_usbipd`."""

    busid: Optional[str] = None
    match: Optional[Match] = None

    def accepts(self, device: LocalDevice) -> bool:
        if self.busid is not None:
            return device.busid == self.busid
        return self.match is not None and self.match.accepts(device)

    def __str__(self) -> str:
        return "busid=%s" % self.busid if self.busid else str(self.match)


def apply(driver: HostDriver, rules: List[ExportRule]) -> List[str]:
    """Bind every device a rule accepts and usbip-host does not hold yet; returns their busids.

    A device that cannot be bound (a hub, an imported device) is logged and
    skipped: one bad rule must not stop the others.
    """
    if not rules:
        return []
    bound = []
    for device in driver.bindable():
        if device.driver == DRIVER_NAME or not any(rule.accepts(device) for rule in rules):
            continue
        try:
            if driver.bind(device.busid).changed:
                bound.append(device.busid)
                log.info("export rule: bound %s (%s) to %s", device.busid, device.device.usbid, DRIVER_NAME)
        except UsbipError as err:
            log.warning("export rule: cannot bind %s: %s", device.busid, err)
    return bound
