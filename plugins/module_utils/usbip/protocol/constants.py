# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Numbers fixed by the USB/IP wire protocol.

They live apart from the codecs so that the I/O layers and the command line
can name a status or an opcode without importing any parsing code.
"""

from __future__ import annotations

import enum

USBIP_VERSION = 0x0111
"""The only version the C tools accept; anything else is a hard mismatch."""

USBIP_PORT = 3240
#: This collection's USB/IP inside TLS (``usbip.net.tls``); not part of the C tools' protocol.
USBIP_TLS_PORT = 3241

OP_REQUEST = 0x8000
"""Bit set in a request's code; the reply repeats the bare op."""

MAX_DEVICES = 64 * 128
"""Upper bound for ``ndev`` in OP_REP_DEVLIST.

Linux numbers at most 64 buses with 128 addresses each (usbfs's
``USB_DEVICE_MAX``), so a longer list cannot describe real devices; the cap
stops a hostile count from making a reader wait for gigabytes.
"""

MAX_INTERFACES = 32
"""Upper bound for ``bNumInterfaces`` of a device record in OP_REP_DEVLIST.

The kernel's ``USB_MAXINTERFACES`` (include/linux/usb.h): when it parses a
configuration it keeps at most that many interfaces and stores the number it
kept in ``bNumInterfaces``, which is what sysfs shows and what a server
(usbipd of the C tools or ours) reads and sends, one 4-byte record each. The
field is a byte, so without this cap a record could announce 255.
"""

MAX_DEVLIST_REPLY = 8 + 4 + MAX_DEVICES * (312 + 4 * MAX_INTERFACES)
"""The longest OP_REP_DEVLIST a real server can send: 3,604,492 bytes.

Header and count, then :data:`MAX_DEVICES` records of 312 bytes, each with
:data:`MAX_INTERFACES` interface records. Both factors are limits of the
kernel, so every real server fits; a reply is refused as soon as its count
or a record's interface count goes past them, before anything is kept for
what would follow.
"""

MAX_ISO_PACKETS = 1024
"""The kernel's ``USBIP_MAX_ISO_PACKETS``: usbip-host refuses larger ISO URBs."""

NO_ISO_PACKETS = 0xFFFFFFFF
"""``number_of_packets`` some peers send for non-ISO URBs instead of 0."""

MAX_TRANSFER_LENGTH = 16 * 1024 * 1024
"""Largest URB buffer we agree to carry.

The field is 32 bits wide, so without a bound one header could make a reader
buffer 4 GiB.  16 MiB is usbfs's default memory limit for a whole process,
far beyond what storage, video or network class drivers put in one URB.
"""

MAX_ENDPOINT = 15
"""USB endpoint numbers are 4 bits; usbip-host rejects anything larger."""


class Op(enum.IntEnum):
    """Control operations; only IMPORT and DEVLIST were ever implemented."""

    DEVINFO = 0x02
    IMPORT = 0x03
    CRYPKEY = 0x04
    DEVLIST = 0x05
    EXPORT = 0x06
    UNEXPORT = 0x07

    @property
    def implemented(self) -> bool:
        """The others have no defined body, so a peer sending one cannot be answered."""
        return self in (Op.IMPORT, Op.DEVLIST)


class Status(enum.IntEnum):
    """``ST_*`` values of the control header's status field."""

    OK = 0
    NA = 1
    DEV_BUSY = 2
    DEV_ERR = 3
    NODEV = 4
    ERROR = 5

    @property
    def description(self) -> str:
        """The C tools' wording, so our messages match what operators already know."""
        return _STATUS_DESCRIPTION[self]


_STATUS_DESCRIPTION = {
    Status.OK: "Request Completed Successfully",
    Status.NA: "Request Failed",
    Status.DEV_BUSY: "Device busy (exported)",
    Status.DEV_ERR: "Device in error state",
    Status.NODEV: "Device not found",
    Status.ERROR: "Unexpected response",
}


class Command(enum.IntEnum):
    """First word of every URB header."""

    CMD_SUBMIT = 1
    CMD_UNLINK = 2
    RET_SUBMIT = 3
    RET_UNLINK = 4


class Direction(enum.IntEnum):
    """Transfer direction as seen from the host."""

    OUT = 0
    IN = 1


class TransferFlag(enum.IntFlag):
    """The ``URB_*`` transfer flags that mean something across the wire.

    The kernel's remaining bits are DMA bookkeeping local to one host.
    """

    SHORT_NOT_OK = 0x0001
    ISO_ASAP = 0x0002
    NO_TRANSFER_DMA_MAP = 0x0004
    ZERO_PACKET = 0x0040
    NO_INTERRUPT = 0x0080
    FREE_BUFFER = 0x0100
    DIR_IN = 0x0200
