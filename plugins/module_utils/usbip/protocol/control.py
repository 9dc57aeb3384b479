# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OP_* messages: the exchange before a connection carries URBs.

A reply's length depends on the request it answers (and on its status), so
replies can only be decoded by someone who knows that request: that is why
:func:`read_reply` and :func:`decode_reply` take it as an argument.

Both replies carry a body only when their status is ST_OK.  The C server
never fails a DEVLIST, but a peer that does cannot be sending anything the
C client would read, so treating it like a failed IMPORT is the only
reading that stays in step with the stream.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Dict, Optional, Tuple, Union

from ..device import UsbDevice, UsbInterface
from .constants import MAX_DEVICES, MAX_INTERFACES, OP_REQUEST, USBIP_VERSION, Op, Status
from .errors import BadCount, BadValue, UnexpectedMessage, UnknownCode, UnsupportedOperation, VersionMismatch
from .fields import U16, U32, Cursor, decode_string, decode_whole, encode_string, pack, to_enum
from .records import BUSID_SIZE, encode_device, read_device

_HEADER = struct.Struct(">HHI")


def _header(code: int, status: int) -> bytes:
    return pack(_HEADER, USBIP_VERSION, code, to_enum(Status, status, "status"))


@dataclasses.dataclass(frozen=True)
class DevlistRequest:
    """OP_REQ_DEVLIST: list the devices the server exports."""

    op = Op.DEVLIST

    def encode(self) -> bytes:
        return _header(OP_REQUEST | self.op, Status.OK)


@dataclasses.dataclass(frozen=True)
class ImportRequest:
    """OP_REQ_IMPORT: attach ``busid``; on success the socket turns to URBs."""

    busid: str
    op = Op.IMPORT

    def encode(self) -> bytes:
        return _header(OP_REQUEST | self.op, Status.OK) + encode_string(self.busid, BUSID_SIZE, "busid")


@dataclasses.dataclass(frozen=True)
class DevlistReply:
    """OP_REP_DEVLIST: every exported device with its interfaces."""

    devices: Tuple[UsbDevice, ...] = ()
    status: Status = Status.OK
    op = Op.DEVLIST

    def encode(self) -> bytes:
        header = _header(self.op, self.status)
        if self.status != Status.OK:
            if self.devices:
                raise BadValue("a failed DEVLIST reply cannot carry devices")
            return header
        if len(self.devices) > MAX_DEVICES:
            raise BadCount("%d devices exceed the limit of %d" % (len(self.devices), MAX_DEVICES))
        for device in self.devices:
            if device.num_interfaces > MAX_INTERFACES:
                raise BadCount("%s: %d interfaces exceed the limit of %d"
                               % (device.busid, device.num_interfaces, MAX_INTERFACES))
        return b"".join(
            [header, pack(U32, len(self.devices))] + [encode_device(d, with_interfaces=True) for d in self.devices]
        )


@dataclasses.dataclass(frozen=True)
class ImportReply:
    """OP_REP_IMPORT: the device record on success, nothing on failure.

    The wire carries no interface records here, so ``device.interfaces`` is
    not sent and decodes as empty.
    """

    status: Status
    device: Optional[UsbDevice] = None
    op = Op.IMPORT

    def encode(self) -> bytes:
        header = _header(self.op, self.status)
        if (self.status == Status.OK) != (self.device is not None):
            raise BadValue("an IMPORT reply carries a device exactly when its status is OK")
        if self.device is None:
            return header
        return header + encode_device(self.device, with_interfaces=False)


Request = Union[DevlistRequest, ImportRequest]
Reply = Union[DevlistReply, ImportReply]


def _read_code(cursor: Cursor) -> Tuple[Op, bool]:
    """Check version, then code, each as soon as its bytes are there."""
    (version,) = cursor.unpack(U16)
    if version != USBIP_VERSION:
        raise VersionMismatch(version)
    (code,) = cursor.unpack(U16)
    try:
        op = Op(code & ~OP_REQUEST)
    except ValueError:
        raise UnknownCode(code, "unknown op code %#06x" % code) from None
    return op, bool(code & OP_REQUEST)


def read_request(cursor: Cursor) -> Request:
    """Parse one request; the C server, too, insists on status 0."""
    op, is_request = _read_code(cursor)
    if not is_request:
        raise UnexpectedMessage("OP_REP_%s sent to a server" % op.name)
    if not op.implemented:
        raise UnsupportedOperation(op)
    (status,) = cursor.unpack(U32)
    if status != Status.OK:
        raise BadValue("OP_REQ_%s with status %d, requests carry 0" % (op.name, status))
    if op is Op.DEVLIST:
        return DevlistRequest()
    return ImportRequest(decode_string(cursor.take(BUSID_SIZE), "busid"))


def read_reply_head(cursor: Cursor, request: Request) -> Status:
    """Version, code and status of the reply to ``request``, checking it answers that very request."""
    op, is_request = _read_code(cursor)
    if is_request or op is not request.op:
        kind = "OP_REQ_" if is_request else "OP_REP_"
        raise UnexpectedMessage("%s%s does not answer OP_REQ_%s" % (kind, op.name, request.op.name))
    return to_enum(Status, cursor.unpack(U32)[0], "status")


def read_devlist_count(cursor: Cursor) -> int:
    """The device count of an OK DEVLIST reply (its records follow)."""
    (count,) = cursor.unpack(U32)
    if count > MAX_DEVICES:
        raise BadCount("DEVLIST reply claims %d devices, the limit is %d" % (count, MAX_DEVICES))
    return count


#: Interface lists already decoded in one reply, so that equal lists are kept once.
InterfaceLists = Dict[Tuple[UsbInterface, ...], Tuple[UsbInterface, ...]]


def read_devlist_device(cursor: Cursor, seen: InterfaceLists) -> UsbDevice:
    """One device record of a DEVLIST reply with its interfaces, at most :data:`MAX_INTERFACES` of them.

    A bad count fails as soon as its record is whole, so a reply never costs
    more than one oversized record before it is refused. Devices of one kind
    (a rack of the same adapter) share one tuple of interfaces: a decoded
    interface costs some 25 times its 4 wire bytes, a shared one 8 bytes.
    """
    device = read_device(cursor, with_interfaces=True)
    if device.num_interfaces > MAX_INTERFACES:
        raise BadCount("DEVLIST reply: device %s claims %d interfaces, the limit is %d"
                       % (device.busid, device.num_interfaces, MAX_INTERFACES))
    if not device.interfaces:
        return device
    shared = seen.setdefault(device.interfaces, device.interfaces)
    return device if shared is device.interfaces else dataclasses.replace(device, interfaces=shared)


def read_reply(cursor: Cursor, request: Request) -> Reply:
    """Parse the reply to ``request``, checking it answers that very request."""
    status = read_reply_head(cursor, request)
    if isinstance(request, DevlistRequest):
        if status != Status.OK:
            return DevlistReply((), status)
        count = read_devlist_count(cursor)
        seen: InterfaceLists = {}
        return DevlistReply(tuple(read_devlist_device(cursor, seen) for _index in range(count)))
    if status != Status.OK:
        return ImportReply(status)
    device = read_device(cursor, with_interfaces=False)
    if device.busid != request.busid:
        # The C client refuses this too ("recv different busid").
        raise UnexpectedMessage("IMPORT reply is for busid %r, not %r" % (device.busid, request.busid))
    return ImportReply(status, device)


def decode_request(data: bytes) -> Request:
    """Decode exactly one request from ``data``."""
    return decode_whole(read_request, data)


def decode_reply(data: bytes, request: Request) -> Reply:
    """Decode exactly one reply to ``request`` from ``data``."""
    return decode_whole(lambda cursor: read_reply(cursor, request), data)
