# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel uevents for the daemon's event loop, through pyudev when it is installed.

The monitor listens to the kernel's own netlink group, not udevd's, so it
works on minimal hosts and in the lab guest where no udevd runs. Without
pyudev (or without the privilege to open the socket) the daemon falls back
to rescanning sysfs for every request, as the C daemon always does.
"""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("usbipd")

#: Subsystems whose events can change what a server offers.
SUBSYSTEMS = frozenset(("usb", "udc", "platform"))


class UeventWatcher:
    """Calls ``on_change`` after each batch of relevant uevents."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.monitor = None
        self.method = "rescan on every request"

    def start(self, loop) -> str:
        """Hook into ``loop``; returns a description of the method in use."""
        try:
            import pyudev  # noqa: PLC0415 - optional dependency, imported on use
        except ImportError:
            self.method = "rescan on every request (pyudev is not installed)"
            return self.method
        try:
            monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
            monitor.start()
        except (OSError, ValueError) as err:
            self.method = "rescan on every request (uevent monitor unavailable: %s)" % err
            return self.method
        self.monitor = monitor
        loop.add_reader(monitor.fileno(), self._drain)
        self.method = "kernel uevents (pyudev)"
        return self.method

    @property
    def watching(self) -> bool:
        return self.monitor is not None

    def _drain(self) -> None:
        relevant = False
        while True:
            try:
                device = self.monitor.poll(timeout=0)
            except (OSError, ValueError) as err:  # a malformed or oversized message
                log.debug("uevent dropped: %s", err)
                relevant = True
                break
            if device is None:
                break
            if device.subsystem in SUBSYSTEMS:
                log.debug("uevent %s %s", device.action, device.device_path)
                relevant = True
        if relevant:
            self.on_change()

    def stop(self, loop) -> None:
        if self.monitor is not None:
            loop.remove_reader(self.monitor.fileno())
            self.monitor = None
