# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incremental readers: feed whatever the socket gave, take whole messages.

The I/O layers never need to know a message's length up front: they call
``feed(data)`` and then ``next_message()`` until it answers ``NEED_DATA``.
Each call re-parses the buffered message from its start (a DEVLIST reply,
which can be megabytes, resumes after its last whole device record instead),
and fields are checked as soon as their bytes are there, so a wrong version
fails after 2 bytes and an unknown code after 4 instead of stalling on a
length that will never arrive.

A reader that raised a :class:`ProtocolError` keeps raising it: its
framing is lost, and nothing it could return afterwards would be real.
"""

from __future__ import annotations

import enum
from typing import Callable, Dict, Generic, List, Optional, Tuple, TypeVar, Union

from ..device import UsbDevice
from .constants import Direction, Status
from .control import (
    DevlistReply,
    DevlistRequest,
    InterfaceLists,
    Reply,
    Request,
    read_devlist_count,
    read_devlist_device,
    read_reply,
    read_reply_head,
    read_request,
)
from .errors import ProtocolError, Truncated, UnexpectedMessage
from .fields import Cursor
from .urb import CmdSubmit, RetSubmit, RetUnlink, UrbCommand, UrbReturn, read_command, read_return

M = TypeVar("M")


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel (an enum so type checkers can narrow it)."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA


class _Reader(Generic[M]):
    def __init__(self, read: Callable[[Cursor], M]) -> None:
        self._read = read
        self._buffer = bytearray()
        self._error: Optional[ProtocolError] = None

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        self._buffer += data

    @property
    def trailing_data(self) -> bytes:
        """Bytes received but not yet part of a returned message.

        After the last control reply this must be empty before the socket is
        handed to the kernel, or those bytes would be lost.
        """
        return bytes(self._buffer)

    def next_message(self) -> Union[M, NeedData]:
        """The next complete message, or ``NEED_DATA`` until one has arrived."""
        if self._error is not None:
            raise self._error
        cursor = Cursor(self._buffer)
        try:
            message = self._read(cursor)
        except Truncated:
            return NEED_DATA
        except ProtocolError as exc:
            self._error = exc
            raise
        del self._buffer[: cursor.offset]
        return message


class RequestReader(_Reader[Request]):
    """Server side of the control phase: yields OP_REQ_DEVLIST / OP_REQ_IMPORT."""

    def __init__(self) -> None:
        super().__init__(read_request)


class ReplyReader(_Reader[Reply]):
    """Client side of the control phase: yields the reply to ``request``.

    A DEVLIST reply can be megabytes long and arrives in many segments; read
    from its start on every segment it would cost the square of its size. Its
    device records are therefore taken one by one as each completes, and the
    reader resumes after the last one: every byte is parsed once, and a bad
    record fails as soon as it is whole, as it would in a full parse. The
    bytes of the records taken are dropped at once, so the buffer holds at
    most one segment and one record, whatever the length of the reply; the
    caps on the device count and on each record's interfaces are checked as
    their bytes arrive (see :data:`~usbip.protocol.constants.MAX_DEVLIST_REPLY`).
    """

    def __init__(self, request: Request) -> None:
        super().__init__(lambda cursor: read_reply(cursor, request))
        self._request = request
        self._count: Optional[int] = None
        self._devices: List[UsbDevice] = []
        self._seen: InterfaceLists = {}

    def next_message(self) -> Union[Reply, NeedData]:
        if not isinstance(self._request, DevlistRequest):
            return super().next_message()
        if self._error is not None:
            raise self._error
        cursor = Cursor(self._buffer)
        taken = 0  # bytes of the header and of the whole records read by this call
        try:
            if self._count is None:
                status = read_reply_head(cursor, self._request)
                if status != Status.OK:
                    return self._complete(DevlistReply((), status), cursor.offset)
                self._count = read_devlist_count(cursor)
                taken = cursor.offset
            while len(self._devices) < self._count:
                self._devices.append(read_devlist_device(cursor, self._seen))
                taken = cursor.offset
        except Truncated:
            del self._buffer[:taken]
            return NEED_DATA
        except ProtocolError as exc:
            self._error = exc
            raise
        return self._complete(DevlistReply(tuple(self._devices)), taken)

    def _complete(self, reply: DevlistReply, end: int) -> DevlistReply:
        del self._buffer[:end]
        self._count, self._devices, self._seen = None, [], {}
        return reply


class CommandReader(_Reader[UrbCommand]):
    """Exporting side of an attached connection: yields CMD_SUBMIT / CMD_UNLINK."""

    def __init__(self) -> None:
        super().__init__(read_command)


class ReturnReader(_Reader[UrbReturn]):
    """Importing side of an attached connection: yields RET_SUBMIT / RET_UNLINK.

    A RET_SUBMIT's framing depends on the command it answers, so every
    command written to the peer must be passed to :meth:`sent` first.
    """

    def __init__(self) -> None:
        super().__init__(lambda cursor: read_return(cursor, self._lookup))
        self._submitted: Dict[int, Tuple[Direction, int]] = {}
        self._unlinks: Dict[int, int] = {}

    def sent(self, command: UrbCommand) -> None:
        """Record a command written to the peer, before its answer can arrive."""
        if isinstance(command, CmdSubmit):
            self._submitted[command.seqnum] = (Direction(command.direction), command.transfer_buffer_length)
        else:
            self._unlinks[command.seqnum] = command.unlink_seqnum

    def next_message(self) -> Union[UrbReturn, NeedData]:
        message = super().next_message()
        if isinstance(message, RetSubmit):
            del self._submitted[message.seqnum]
        elif isinstance(message, RetUnlink):
            # Whatever the status, the URB is over: either it was cancelled
            # or its RET_SUBMIT came first.  Like vhci, tolerate an unknown
            # unlink seqnum, which costs nothing in framing.
            target = self._unlinks.pop(message.seqnum, None)
            if target is not None:
                self._submitted.pop(target, None)
        return message

    def _lookup(self, seqnum: int) -> Tuple[Direction, int]:
        try:
            return self._submitted[seqnum]
        except KeyError:
            raise UnexpectedMessage("RET_SUBMIT for seqnum %d, which has no CMD_SUBMIT outstanding" % seqnum) from None
