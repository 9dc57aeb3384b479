# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sans-I/O codec of the USB/IP wire format: bytes in, typed messages out.

Nothing here touches a socket, so the client, the asyncio server and the
tests share one implementation of the framing, and every malformed input is
tested without a network.  Messages encode themselves with ``encode()``;
``decode_*`` take exactly one whole message; the readers take a stream.
"""

from __future__ import annotations

from .constants import (
    MAX_DEVICES,
    MAX_ENDPOINT,
    MAX_ISO_PACKETS,
    MAX_TRANSFER_LENGTH,
    NO_ISO_PACKETS,
    OP_REQUEST,
    USBIP_PORT,
    USBIP_TLS_PORT,
    USBIP_VERSION,
    Command,
    Direction,
    Op,
    Status,
    TransferFlag,
)
from .control import (
    DevlistReply,
    DevlistRequest,
    ImportReply,
    ImportRequest,
    Reply,
    Request,
    decode_reply,
    decode_request,
)
from .errors import (
    BadCount,
    BadString,
    BadValue,
    Overlong,
    ProtocolError,
    Truncated,
    UnexpectedMessage,
    UnknownCode,
    UnsupportedOperation,
    VersionMismatch,
)
from .reader import NEED_DATA, CommandReader, NeedData, ReplyReader, RequestReader, ReturnReader
from .urb import (
    CmdSubmit,
    CmdUnlink,
    IsoPacketDescriptor,
    RetSubmit,
    RetUnlink,
    UrbCommand,
    UrbReturn,
    decode_command,
    decode_return,
)

__all__ = [
    "BadCount",
    "BadString",
    "BadValue",
    "CmdSubmit",
    "CmdUnlink",
    "Command",
    "CommandReader",
    "DevlistReply",
    "DevlistRequest",
    "Direction",
    "ImportReply",
    "ImportRequest",
    "IsoPacketDescriptor",
    "MAX_DEVICES",
    "MAX_ENDPOINT",
    "MAX_ISO_PACKETS",
    "MAX_TRANSFER_LENGTH",
    "NEED_DATA",
    "NO_ISO_PACKETS",
    "NeedData",
    "OP_REQUEST",
    "Op",
    "Overlong",
    "ProtocolError",
    "Reply",
    "ReplyReader",
    "Request",
    "RequestReader",
    "RetSubmit",
    "RetUnlink",
    "ReturnReader",
    "Status",
    "TransferFlag",
    "Truncated",
    "USBIP_PORT",
    "USBIP_TLS_PORT",
    "USBIP_VERSION",
    "UnexpectedMessage",
    "UnknownCode",
    "UnsupportedOperation",
    "UrbCommand",
    "UrbReturn",
    "VersionMismatch",
    "decode_command",
    "decode_reply",
    "decode_request",
    "decode_return",
]
