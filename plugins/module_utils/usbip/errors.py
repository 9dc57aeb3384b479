# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exception roots shared by every layer.

Callers (the CLI, the daemon, the Ansible modules) catch :class:`UsbipError`
and print its message as one line; anything else escaping is a bug.
"""

from __future__ import annotations


class UsbipError(Exception):
    """Base of every error this package raises on purpose.

    ``hint`` carries the operator's next step ("modprobe vhci-hcd", "run as
    root") separately so that front ends can render it their own way.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return "%s (%s)" % (msg, self.hint) if self.hint else msg


class InvalidArgument(UsbipError, ValueError):
    """A busid, port, path or option failed validation; nothing was touched."""
