# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""URB messages: what flows once an IMPORT has succeeded.

Each message is a 48-byte header, then transfer data and ISO packet
descriptors.  Commands say themselves whether data follows (OUT does), but a
RET_SUBMIT does not: its direction field is 0 and the receiver has to know
the direction of the CMD_SUBMIT it answers.  Hence ``read_return`` takes a
lookup by seqnum, and ``RetSubmit.data`` is ``None`` for OUT answers.

Counts and frame numbers keep their unsigned wire values so that
re-encoding is byte-exact (``number_of_packets`` may be 0 or 0xffffffff for
non-ISO URBs); statuses are signed because they carry ``-errno``.  Padding,
and the header fields that are 0 in replies and unlinks, are not checked:
the kernel ignores them too.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Callable, Collection, Optional, Tuple, Union

from .constants import MAX_ENDPOINT, MAX_ISO_PACKETS, MAX_TRANSFER_LENGTH, NO_ISO_PACKETS, Command, Direction
from .errors import BadCount, BadValue, UnexpectedMessage, UnknownCode
from .fields import U32, Cursor, decode_whole, pack, to_enum

_HEADER = struct.Struct(">IIIII")
_BASIC_AFTER_COMMAND = struct.Struct(">IIII")
_CMD_SUBMIT = struct.Struct(">IIIII8s")
_RET_SUBMIT = struct.Struct(">iIIII8x")
_CMD_UNLINK = struct.Struct(">I24x")
_RET_UNLINK = struct.Struct(">i24x")
_ISO = struct.Struct(">IIIi")

SETUP_SIZE = 8


@dataclasses.dataclass(frozen=True)
class IsoPacketDescriptor:
    """Where one ISO packet sits in the buffer and how it went."""

    offset: int
    length: int
    actual_length: int = 0
    status: int = 0

    def encode(self) -> bytes:
        return pack(_ISO, self.offset, self.length, self.actual_length, self.status)


def _iso_count(number_of_packets: int) -> int:
    if number_of_packets in (0, NO_ISO_PACKETS):
        return 0
    if number_of_packets > MAX_ISO_PACKETS:
        raise BadCount("%d ISO packets exceed the limit of %d" % (number_of_packets, MAX_ISO_PACKETS))
    return number_of_packets


def _check_length(what: str, length: int) -> None:
    if length > MAX_TRANSFER_LENGTH:
        raise BadCount("%s %d exceeds the limit of %d" % (what, length, MAX_TRANSFER_LENGTH))


def _check_iso(iso_packets: Tuple[IsoPacketDescriptor, ...], number_of_packets: int) -> None:
    if len(iso_packets) != _iso_count(number_of_packets):
        raise BadCount("number_of_packets is %d but %d descriptors are given" % (number_of_packets, len(iso_packets)))


@dataclasses.dataclass(frozen=True)
class CmdSubmit:
    """Submit one URB; OUT carries ``transfer_buffer_length`` bytes of data."""

    seqnum: int
    devid: int
    direction: Direction
    ep: int
    transfer_flags: int = 0
    transfer_buffer_length: int = 0
    start_frame: int = 0
    number_of_packets: int = 0
    interval: int = 0
    setup: bytes = bytes(SETUP_SIZE)
    data: bytes = b""
    iso_packets: Tuple[IsoPacketDescriptor, ...] = ()

    def encode(self) -> bytes:
        direction = _check_endpoint(self.direction, self.ep)
        _check_length("transfer_buffer_length", self.transfer_buffer_length)
        if len(self.setup) != SETUP_SIZE:
            raise BadValue("setup packet is %d bytes, not %d" % (len(self.setup), SETUP_SIZE))
        expected = self.transfer_buffer_length if direction is Direction.OUT else 0
        if len(self.data) != expected:
            raise BadCount("%s CMD_SUBMIT needs %d data bytes, %d given" % (direction.name, expected, len(self.data)))
        _check_iso(self.iso_packets, self.number_of_packets)
        head = (Command.CMD_SUBMIT, self.seqnum, self.devid, direction, self.ep)
        body = (
            self.transfer_flags,
            self.transfer_buffer_length,
            self.start_frame,
            self.number_of_packets,
            self.interval,
            self.setup,
        )
        return b"".join(
            [pack(_HEADER, *head), pack(_CMD_SUBMIT, *body), self.data] + [p.encode() for p in self.iso_packets]
        )


@dataclasses.dataclass(frozen=True)
class RetSubmit:
    """Outcome of a CMD_SUBMIT.

    ``data`` is ``None`` when answering an OUT command (nothing follows the
    header) and the received bytes, ``actual_length`` of them, for IN.
    """

    seqnum: int
    status: int = 0
    actual_length: int = 0
    start_frame: int = 0
    number_of_packets: int = 0
    error_count: int = 0
    data: Optional[bytes] = None
    iso_packets: Tuple[IsoPacketDescriptor, ...] = ()

    def encode(self) -> bytes:
        _check_return(self)
        head = (Command.RET_SUBMIT, self.seqnum, 0, 0, 0)
        body = (self.status, self.actual_length, self.start_frame, self.number_of_packets, self.error_count)
        return b"".join(
            [pack(_HEADER, *head), pack(_RET_SUBMIT, *body), self.data or b""] + [p.encode() for p in self.iso_packets]
        )


def _check_return(message: RetSubmit) -> None:
    _check_length("actual_length", message.actual_length)
    if message.data is not None and len(message.data) != message.actual_length:
        raise BadCount("actual_length is %d but %d data bytes are given" % (message.actual_length, len(message.data)))
    _check_iso(message.iso_packets, message.number_of_packets)
    total = sum(p.actual_length for p in message.iso_packets)
    if message.iso_packets and total != message.actual_length:
        # vhci rejects this too: it places each packet's bytes by these lengths.
        raise BadCount("ISO packets hold %d bytes, actual_length says %d" % (total, message.actual_length))


@dataclasses.dataclass(frozen=True)
class CmdUnlink:
    """Cancel the URB submitted as ``unlink_seqnum``."""

    seqnum: int
    devid: int
    unlink_seqnum: int

    def encode(self) -> bytes:
        return pack(_HEADER, Command.CMD_UNLINK, self.seqnum, self.devid, 0, 0) + pack(_CMD_UNLINK, self.unlink_seqnum)


@dataclasses.dataclass(frozen=True)
class RetUnlink:
    """Answer to CMD_UNLINK ``seqnum``.

    ``status`` is ``-ECONNRESET`` when the URB was cancelled (it then gets no
    RET_SUBMIT) and 0 when it had already completed.
    """

    seqnum: int
    status: int = 0

    def encode(self) -> bytes:
        return pack(_HEADER, Command.RET_UNLINK, self.seqnum, 0, 0, 0) + pack(_RET_UNLINK, self.status)


UrbCommand = Union[CmdSubmit, CmdUnlink]
UrbReturn = Union[RetSubmit, RetUnlink]

SubmittedLookup = Callable[[int], Tuple[Direction, int]]
"""Maps a RET_SUBMIT's seqnum to its command's direction and buffer length."""


def _check_endpoint(direction: int, ep: int) -> Direction:
    if not 0 <= ep <= MAX_ENDPOINT:
        raise BadValue("endpoint %d is not 0..%d" % (ep, MAX_ENDPOINT))
    return to_enum(Direction, direction, "direction")


def _read_command_word(cursor: Cursor, allowed: Collection[Command]) -> Command:
    (value,) = cursor.unpack(U32)
    try:
        command = Command(value)
    except ValueError:
        raise UnknownCode(value, "unknown URB command %#x" % value) from None
    if command not in allowed:
        raise UnexpectedMessage("%s is not expected on this side of the connection" % command.name)
    return command


def _read_iso(cursor: Cursor, number_of_packets: int) -> Tuple[IsoPacketDescriptor, ...]:
    return tuple(IsoPacketDescriptor(*cursor.unpack(_ISO)) for _index in range(_iso_count(number_of_packets)))


def read_command(cursor: Cursor) -> UrbCommand:
    """Parse a CMD_SUBMIT or CMD_UNLINK, as the exporting side receives them."""
    command = _read_command_word(cursor, (Command.CMD_SUBMIT, Command.CMD_UNLINK))
    seqnum, devid, direction, ep = cursor.unpack(_BASIC_AFTER_COMMAND)
    if command is Command.CMD_UNLINK:
        return CmdUnlink(seqnum, devid, *cursor.unpack(_CMD_UNLINK))
    direction = _check_endpoint(direction, ep)
    flags, length, start_frame, number_of_packets, interval, setup = cursor.unpack(_CMD_SUBMIT)
    _check_length("transfer_buffer_length", length)
    _iso_count(number_of_packets)
    data = cursor.take(length) if direction is Direction.OUT else b""
    iso_packets = _read_iso(cursor, number_of_packets)
    return CmdSubmit(
        seqnum, devid, direction, ep, flags, length, start_frame, number_of_packets, interval, setup, data, iso_packets
    )


def read_return(cursor: Cursor, submitted: SubmittedLookup) -> UrbReturn:
    """Parse a RET_SUBMIT or RET_UNLINK, as the importing side receives them."""
    command = _read_command_word(cursor, (Command.RET_SUBMIT, Command.RET_UNLINK))
    seqnum = cursor.unpack(_BASIC_AFTER_COMMAND)[0]
    if command is Command.RET_UNLINK:
        return RetUnlink(seqnum, *cursor.unpack(_RET_UNLINK))
    direction, limit = submitted(seqnum)
    status, actual_length, start_frame, number_of_packets, error_count = cursor.unpack(_RET_SUBMIT)
    if actual_length > limit:
        raise BadCount("actual_length %d exceeds the submitted length %d" % (actual_length, limit))
    _iso_count(number_of_packets)
    data = cursor.take(actual_length) if direction == Direction.IN else None
    message = RetSubmit(
        seqnum,
        status,
        actual_length,
        start_frame,
        number_of_packets,
        error_count,
        data,
        _read_iso(cursor, number_of_packets),
    )
    _check_return(message)
    return message


def decode_command(data: bytes) -> UrbCommand:
    """Decode exactly one CMD_SUBMIT or CMD_UNLINK from ``data``."""
    return decode_whole(read_command, data)


def decode_return(data: bytes, direction: Direction) -> UrbReturn:
    """Decode exactly one RET_SUBMIT or RET_UNLINK.

    ``direction`` is that of the CMD_SUBMIT being answered; the message
    itself does not say whether data follows.
    """
    return decode_whole(lambda cursor: read_return(cursor, lambda _seqnum: (direction, MAX_TRANSFER_LENGTH)), data)
