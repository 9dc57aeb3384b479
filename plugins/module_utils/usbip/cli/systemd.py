# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemons' side of systemd's service protocol, with the standard library only.

A ``Type=notify`` unit counts as started only when the daemon says
``READY=1``: ``systemctl start`` (and so the roles) then waits until the
sockets are bound and the declaration is loaded, and a daemon that exits
first makes the start fail instead of leaving a green play behind a restart
loop. The datagram protocol is small and stable (``sd_notify(3)``): one
``AF_UNIX`` datagram of newline-separated assignments to the socket in
``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract namespace.
Outside systemd (no variable) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
from typing import Optional

#: Where systemd tells a service its stderr is the journal (``device:inode``).
JOURNAL_STREAM = "JOURNAL_STREAM"


def notify(*assignments: str, environ: Optional[dict] = None) -> bool:
    """Send ``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=...`` and the like.

    Returns whether a notification socket was there; a failure to send is
    never an error of the daemon (systemd may be restarting), so it is ignored.
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address or not assignments or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    message = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError:
        return True
    return True


def monotonic_usec() -> int:
    """``MONOTONIC_USEC=`` as ``Type=notify-reload`` wants it next to ``RELOADING=1``."""
    import time  # noqa: PLC0415

    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def reloading() -> bool:
    """Tell systemd a reload started (it then waits for the next ``READY=1``)."""
    return notify("RELOADING=1", "MONOTONIC_USEC=%d" % monotonic_usec())


def watchdog_seconds(environ: Optional[dict] = None, pid: Optional[int] = None) -> Optional[float]:
    """systemd's watchdog interval for this process (``WatchdogSec=``), in seconds; None without one.

    systemd sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the process it
    means) when the unit has ``WatchdogSec=``; the service then owes it a
    ``WATCHDOG=1`` within every interval, or is restarted. A value that is
    not a positive number of microseconds, or that is meant for another
    process, counts as none (``sd_watchdog_enabled(3)``).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    meant_for = env.get("WATCHDOG_PID", "")
    if not _decimal(usec) or int(usec) == 0:
        return None
    if meant_for and (not _decimal(meant_for) or int(meant_for) != (os.getpid() if pid is None else pid)):
        return None
    return int(usec) / 1e6


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def stderr_is_journal(environ: Optional[dict] = None) -> bool:
    """Whether stderr is systemd's journal stream, so that ``<N>`` priority prefixes are understood.

    systemd sets ``JOURNAL_STREAM`` to the device and inode of the stream it
    connected; a daemon whose stderr was redirected since must not prefix.
    """
    env = os.environ if environ is None else environ
    value = env.get(JOURNAL_STREAM, "")
    device, _sep, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(2)
    except OSError:
        return False
    return status.st_dev == int(device) and status.st_ino == int(inode)
