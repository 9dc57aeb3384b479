# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed failures of the wire codec.

Every malformed input ends in one of these, never in ``struct.error``,
``IndexError`` or ``UnicodeDecodeError``, so that the I/O layers can catch
:class:`ProtocolError` alone and drop the connection cleanly.
"""

from __future__ import annotations

from ..errors import UsbipError
from .constants import OP_REQUEST, USBIP_VERSION, Op


class ProtocolError(UsbipError):
    """Bytes that are not, or values that cannot become, a valid message.

    The stream carries no resynchronisation marks, so after one of these the
    connection is beyond repair and has to be closed.
    """


class Truncated(ProtocolError):
    """The message needs more bytes than were given.

    Only the strict decoders raise it; the incremental readers report
    ``NEED_DATA`` instead because the rest may still be on its way.
    """


class Overlong(ProtocolError):
    """Bytes remain after a complete message handed to a strict decoder."""


class VersionMismatch(ProtocolError):
    """The peer speaks another protocol version, or is not USB/IP at all."""

    def __init__(self, version: int) -> None:
        super().__init__("USB/IP version mismatch: peer sent %#06x, expected %#06x" % (version, USBIP_VERSION))
        self.version = version


class UnknownCode(ProtocolError):
    """An op code or URB command that the protocol does not define."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or "unknown code %#x" % code)
        self.code = code


class UnsupportedOperation(UnknownCode):
    """A defined op that no implementation gives a body to (DEVINFO, EXPORT, ...).

    It subclasses :class:`UnknownCode` because the reaction is the same as the
    C usbipd's: log it and close, there is nothing that could be answered.
    """

    def __init__(self, op: Op) -> None:
        super().__init__(OP_REQUEST | op, "unsupported operation OP_REQ_%s" % op.name)
        self.op = op


class UnexpectedMessage(ProtocolError):
    """A well-formed message that this side cannot accept at this point.

    Examples: a reply sent to a server, a reply to another request, a
    RET_SUBMIT for a seqnum that was never submitted.
    """


class BadString(ProtocolError):
    """A busid or path that is not NUL-terminated printable ASCII, or too long."""


class BadCount(ProtocolError):
    """A count or length beyond its cap, or disagreeing with what it counts."""


class BadValue(ProtocolError):
    """A field outside its defined range (status, speed, direction, ...)."""
