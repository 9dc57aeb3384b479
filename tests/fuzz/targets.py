# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The codec's contract as one function a fuzzer can call on any bytes.

:func:`check` feeds ``data`` to every strict decoder and every incremental
reader of :mod:`usbip.protocol` and raises when one of them breaks the
contract:

* any input ends in a message or a :class:`ProtocolError` -- nothing else
  (an ``IndexError``, ``struct.error`` or ``UnicodeDecodeError`` escaping is
  a bug, and so is a ``RecursionError`` or ``MemoryError``);
* a decoded message re-encodes, and the encoding decodes to the same message
  (the decoders accept nothing the encoders would refuse);
* a reader given the bytes whole, and the same reader given them in pieces,
  return the same messages and fail the same way; each message is what the
  strict decoder makes of exactly its bytes; a truncated message is
  ``NEED_DATA``, never an error; a failed reader keeps failing.

Exceptions other than :class:`ProtocolError` are let through unchanged so
that atheris reports them with their traceback; contract breaches are
:class:`ContractError`.
"""

from __future__ import annotations

import collections
import zlib
from typing import Callable, Dict, List, Optional, Tuple

from usbip.protocol import (
    NEED_DATA,
    CmdSubmit,
    CommandReader,
    DevlistRequest,
    Direction,
    ImportRequest,
    Overlong,
    ProtocolError,
    ReplyReader,
    RequestReader,
    ReturnReader,
    Truncated,
    decode_command,
    decode_reply,
    decode_request,
    decode_return,
)

IMPORT_BUSID = "1-1"

#: Commands a ReturnReader is told were sent, so that RET_SUBMITs for these
#: seqnums frame (IN ones carry data, OUT ones do not).
SENT = (
    CmdSubmit(1, 0x10002, Direction.OUT, 2, transfer_buffer_length=4, data=b"\0" * 4),
    CmdSubmit(2, 0x10002, Direction.IN, 0, 0x200, 18),
    CmdSubmit(3, 0x10002, Direction.IN, 1, 0x200, 512),
    CmdSubmit(7, 0x10002, Direction.IN, 3, 2, 64, 0, 2, 1),
)


class ContractError(AssertionError):
    """A decoder or reader did something the contract rules out."""


Decoder = Callable[[bytes], object]

#: (name, strict decoder, reader factory)
TARGETS: List[Tuple[str, Decoder, Optional[Callable[[], object]]]] = [
    ("request", decode_request, RequestReader),
    ("reply-devlist", lambda d: decode_reply(d, DevlistRequest()), lambda: ReplyReader(DevlistRequest())),
    ("reply-import", lambda d: decode_reply(d, ImportRequest(IMPORT_BUSID)),
     lambda: ReplyReader(ImportRequest(IMPORT_BUSID))),
    ("command", decode_command, CommandReader),
    ("return-in", lambda d: decode_return(d, Direction.IN), None),
    ("return-out", lambda d: decode_return(d, Direction.OUT), None),
    ("return-stream", None, lambda: _return_reader()),
]


def _return_reader() -> ReturnReader:
    reader = ReturnReader()
    for command in SENT:
        reader.sent(command)
    return reader


class Outcomes:
    """What the decoders made of the inputs: messages by type, errors by class."""

    def __init__(self) -> None:
        self.counts: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def add(self, target: str, what: str) -> None:
        self.counts[target][what] += 1

    def summary(self) -> Dict[str, Dict[str, int]]:
        return {target: dict(counter.most_common()) for target, counter in sorted(self.counts.items())}


def check(data: bytes, outcomes: Optional[Outcomes] = None) -> None:
    """Run every decoder and reader on ``data``; raise on a contract breach."""
    data = bytes(data)
    for name, decode, reader in TARGETS:
        strict = _strict(name, decode, data, outcomes) if decode is not None else None
        if reader is not None:
            _reader(name, reader, decode, data, strict)


def _strict(name: str, decode: Decoder, data: bytes, outcomes: Optional[Outcomes]) -> object:
    """The decoder's result: a message, or the ProtocolError it raised."""
    try:
        message = decode(data)
    except ProtocolError as err:
        if outcomes is not None:
            outcomes.add(name, type(err).__name__)
        return err
    if outcomes is not None:
        outcomes.add(name, type(message).__name__)
    try:
        encoded = message.encode()
    except ProtocolError as err:
        raise ContractError("%s: decoded %r does not re-encode: %s" % (name, message, err)) from None
    again = decode(encoded)
    if again != message:
        raise ContractError("%s: %r re-encodes to a different message %r" % (name, message, again))
    return message


def _pieces(data: bytes) -> List[bytes]:
    """A deterministic split of ``data`` (libFuzzer wants the same run for the same input)."""
    state = zlib.crc32(data) | 1
    pieces, start = [], 0
    while start < len(data):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        size = 1 + (state >> 8) % (1 + min(64, len(data) // 3))
        pieces.append(data[start:start + size])
        start += size
    return pieces


def _drain(reader, feeds: List[bytes]) -> Tuple[list, Optional[ProtocolError]]:
    """Feed the pieces, taking every whole message after each; stop at the first error."""
    messages = []
    for piece in feeds:
        reader.feed(piece)
        while True:
            try:
                message = reader.next_message()
            except ProtocolError as err:
                try:
                    reader.next_message()
                except ProtocolError as again:
                    if again is not err:
                        raise ContractError("a failed reader raised %r, then %r" % (err, again)) from None
                else:
                    raise ContractError("a failed reader (%r) returned a message" % err)
                return messages, err
            if message is NEED_DATA:
                break
            messages.append(message)
    return messages, None


def _reader(name: str, factory, decode: Optional[Decoder], data: bytes, strict: object) -> None:
    whole_reader = factory()
    whole, whole_error = _drain(whole_reader, [data])
    split, split_error = _drain(factory(), _pieces(data))
    if whole != split or type(whole_error) is not type(split_error):
        raise ContractError("%s reader: whole input gave %r/%r, pieces %r/%r"
                            % (name, whole, whole_error, split, split_error))
    if isinstance(whole_error, Truncated):
        raise ContractError("%s reader raised Truncated instead of answering NEED_DATA" % name)
    if decode is None:
        return
    # The first message, as the strict decoder sees the same bytes.
    if isinstance(strict, Truncated):
        if whole or whole_error is not None:
            raise ContractError("%s: strict decoder wants more bytes, the reader gave %r/%r"
                                % (name, whole, whole_error))
    elif isinstance(strict, Overlong):
        if not whole:
            raise ContractError("%s: strict decoder saw a whole message and more, the reader none (%r)"
                                % (name, whole_error))
        # Every field has a fixed width, so a message's encoding is as long as its wire form.
        first = decode(data[:len(whole[0].encode())])
        if first != whole[0]:
            raise ContractError("%s: the reader's first message %r is %r to the strict decoder"
                                % (name, whole[0], first))
    elif isinstance(strict, ProtocolError):
        if whole or type(whole_error) is not type(strict):
            raise ContractError("%s: strict decoder raised %r, the reader gave %r/%r"
                                % (name, strict, whole, whole_error))
    else:
        if whole[:1] != [strict] or len(whole) != 1 or whole_error is not None or whole_reader.trailing_data:
            raise ContractError("%s: strict decoder gave %r, the reader %r/%r" % (name, strict, whole, whole_error))
