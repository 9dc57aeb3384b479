# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Field-level primitives shared by the record, control and URB codecs.

Every read goes through :class:`Cursor`, so running out of bytes is always
:class:`Truncated`; that one exception is what lets the same parsing code
serve both the strict decoders and the incremental readers.
"""

from __future__ import annotations

import enum
import struct
from typing import Callable, Type, TypeVar, Union

from .errors import BadString, BadValue, Overlong, Truncated

T = TypeVar("T")
E = TypeVar("E", bound=enum.IntEnum)

U16 = struct.Struct(">H")
U32 = struct.Struct(">I")


class Cursor:
    """Reads fields in order from a buffer that may end too early."""

    def __init__(self, buffer: Union[bytes, bytearray]) -> None:
        self._buffer = buffer
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self._buffer) - self.offset

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self._buffer):
            raise Truncated("message needs %d bytes, only %d given" % (end, len(self._buffer)))
        chunk = bytes(self._buffer[self.offset : end])
        self.offset = end
        return chunk

    def unpack(self, layout: struct.Struct) -> tuple:
        return layout.unpack(self.take(layout.size))


def decode_whole(read: Callable[[Cursor], T], data: bytes) -> T:
    """Decode exactly one message: trailing bytes would hide a framing bug."""
    cursor = Cursor(data)
    message = read(cursor)
    if cursor.remaining:
        raise Overlong("%d bytes follow a complete %s" % (cursor.remaining, type(message).__name__))
    return message


def pack(layout: struct.Struct, *values: object) -> bytes:
    """``struct.pack`` that reports an out-of-range field as :class:`BadValue`."""
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise BadValue("cannot encode %r: %s" % (values, exc)) from None


def to_enum(kind: Type[E], value: int, what: str) -> E:
    """Coerce a wire or caller value into ``kind``, rejecting undefined ones."""
    try:
        return kind(value)
    except ValueError:
        raise BadValue("%s %r is not a defined %s" % (what, value, kind.__name__)) from None


def _printable_ascii(text: str) -> bool:
    # Busids and paths end up in sysfs writes and log lines: control
    # characters and non-ASCII have no legitimate use in either.
    return text.isascii() and text.isprintable()


def encode_string(text: str, size: int, what: str) -> bytes:
    """A NUL-padded fixed-size field; one byte is kept for the terminator."""
    if not isinstance(text, str) or not _printable_ascii(text):
        raise BadString("%s must be printable ASCII: %r" % (what, text))
    if len(text) >= size:
        raise BadString("%s is %d characters, at most %d fit: %r" % (what, len(text), size - 1, text))
    return text.encode("ascii").ljust(size, b"\0")


def decode_string(raw: bytes, what: str) -> str:
    """The text before the first NUL; what follows it is ignored, as C does."""
    end = raw.find(b"\0")
    if end < 0:
        raise BadString("%s field is not NUL-terminated: %r" % (what, raw))
    text = raw[:end].decode("ascii", "replace")  # U+FFFD then fails the ASCII test
    if not _printable_ascii(text):
        raise BadString("%s is not printable ASCII: %r" % (what, raw[:end]))
    return text
