# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A seeded mutation fuzzer, with optional coverage feedback.

No dependency: the same seed gives the same inputs on every machine, so a
failure found in CI is replayed with ``--seed``. Inputs are valid messages
(:func:`codec_seeds`) changed by one to four stacked mutations that aim at
what a length-prefixed binary protocol gets wrong: flipped bits, counts and
lengths set to their limits and just past them, truncation at any byte,
strings without terminator or with path tricks, splices of two messages.

:class:`LineCoverage` (``sys.settrace`` restricted to the files of one
package) turns it into a coverage-guided fuzzer: an input that runs a line
transition not seen before joins the corpus. atheris does the same with
libFuzzer's engine (``python -m tests.fuzz.decoders --engine atheris``).
"""

from __future__ import annotations

import os
import random
import struct
import sys
from typing import List, Optional, Sequence, Set, Tuple

from tests.unit.protocol import vectors
from usbip.protocol import (
    MAX_DEVICES,
    MAX_ISO_PACKETS,
    MAX_TRANSFER_LENGTH,
    NO_ISO_PACKETS,
    CmdSubmit,
    DevlistReply,
    DevlistRequest,
    Direction,
    ImportRequest,
    Status,
)

#: Values that sit on a boundary of some field of the protocol.
INTERESTING_32 = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 18, 31, 32, 64, 255, 256, 312, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
    0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, MAX_DEVICES, MAX_DEVICES + 1, MAX_ISO_PACKETS,
    MAX_ISO_PACKETS + 1, MAX_TRANSFER_LENGTH, MAX_TRANSFER_LENGTH + 1, NO_ISO_PACKETS,
)
INTERESTING_16 = (0, 1, 0x0111, 0x0106, 0x0002, 0x0003, 0x0005, 0x8002, 0x8003, 0x8005, 0x8006, 0x7FFF, 0x8000,
                  0xFFFF)
INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF, 0x0A, 0x2E, 0x2F, 0x20)
#: Byte strings worth planting in a busid or path field.
TOKENS = (
    b"../", b"../../x", b"/", b"\n", b"\0", b"\r\n", b"\xff\xfe", b"\xef\xbc\x91", b"%s%n", b"1-1", b"17-1",
    b"usbip-vudc.0", b"usbip-vudc.", b"1-1.2.3.4.5.6.7.8", b"usb1", b"1-1:1.0", b"A" * 32, b" ", b"\t",
)


def request_seeds() -> List[bytes]:
    """What a client may send a server: the two requests, with good and bad busids."""
    return [
        DevlistRequest().encode(),
        ImportRequest("1-1").encode(),
        ImportRequest("17-1").encode(),
        ImportRequest("usbip-vudc.0").encode(),
        ImportRequest("usbip-vudc.1").encode(),
        ImportRequest("9-9").encode(),
        ImportRequest("1-1.2.3").encode(),
    ]


def codec_seeds() -> List[bytes]:
    """One or more valid encodings of every message type.

    The codec's hand-written vectors (``tests/unit/protocol/vectors.py``), and what they leave out:
    a failed DEVLIST, an IN submit that says "no ISO packets", and streams of several messages.
    """
    more = [
        DevlistReply((), Status.NA),
        CmdSubmit(6, 0x10002, Direction.IN, 1, 0, 64, number_of_packets=NO_ISO_PACKETS),
    ]
    seeds = request_seeds()
    seeds += [wire for _, _, wire in vectors.REPLIES] + [wire for _, wire in vectors.COMMANDS]
    seeds += [wire for _, _, wire in vectors.RETURNS] + [m.encode() for m in more]
    # Streams: a reader must frame one message after another.
    seeds += [vectors.RET_SUBMIT_OUT + vectors.RET_UNLINK, vectors.CMD_SUBMIT_IN + vectors.CMD_UNLINK,
              vectors.DEVLIST_REQUEST + vectors.DEVLIST_REQUEST]
    return seeds


class Mutator:
    """Deterministic mutations of a corpus; ``seed`` fixes the whole sequence."""

    def __init__(self, seeds: Sequence[bytes], seed: int = 0, max_size: int = 4096, corpus_limit: int = 4096) -> None:
        self.random = random.Random(seed)
        self.corpus: List[bytes] = [bytes(s) for s in seeds]
        self.max_size = max_size
        self.corpus_limit = corpus_limit
        self._ops = (
            self._flip_bit, self._set_byte, self._set_u16, self._set_u32, self._set_u32, self._truncate,
            self._truncate, self._delete, self._insert, self._duplicate, self._splice, self._token, self._append,
            self._swap_u32,
        )

    def add(self, data: bytes) -> None:
        """A new interesting input (coverage feedback); the oldest non-seed goes when full."""
        if len(self.corpus) >= self.corpus_limit:
            del self.corpus[self.random.randrange(len(self.corpus))]
        self.corpus.append(bytes(data))

    def next(self) -> bytes:
        data = bytearray(self.random.choice(self.corpus))
        for _ in range(1 + min(3, int(self.random.expovariate(1.0)))):
            self._ops[self.random.randrange(len(self._ops))](data)
        return bytes(data[: self.max_size])

    # -- mutations (in place) --------------------------------------------------
    def _offset(self, data: bytearray, width: int = 1, aligned: bool = False) -> Optional[int]:
        if len(data) < width:
            return None
        if aligned and len(data) >= 4 and self.random.random() < 0.7:
            return self.random.randrange(0, len(data) - width + 1, 4) if width <= 4 else 0
        return self.random.randrange(len(data) - width + 1)

    def _flip_bit(self, data: bytearray) -> None:
        at = self._offset(data)
        if at is not None:
            data[at] ^= 1 << self.random.randrange(8)

    def _set_byte(self, data: bytearray) -> None:
        at = self._offset(data)
        if at is not None:
            data[at] = self.random.choice(INTERESTING_8) if self.random.random() < 0.5 else self.random.randrange(256)

    def _set_u16(self, data: bytearray) -> None:
        at = self._offset(data, 2, aligned=True)
        if at is not None:
            data[at:at + 2] = struct.pack(">H", self.random.choice(INTERESTING_16))

    def _set_u32(self, data: bytearray) -> None:
        at = self._offset(data, 4, aligned=True)
        if at is not None:
            value = self.random.choice(INTERESTING_32)
            if self.random.random() < 0.2:
                value = (value + self.random.choice((-1, 1))) & 0xFFFFFFFF
            data[at:at + 4] = struct.pack(">I", value)

    def _swap_u32(self, data: bytearray) -> None:
        a, b = self._offset(data, 4, aligned=True), self._offset(data, 4, aligned=True)
        if a is not None and b is not None:
            data[a:a + 4], data[b:b + 4] = data[b:b + 4], data[a:a + 4]

    def _truncate(self, data: bytearray) -> None:
        if data:
            del data[self.random.randrange(len(data)):]

    def _delete(self, data: bytearray) -> None:
        at = self._offset(data)
        if at is not None:
            del data[at:at + 1 + self.random.randrange(min(16, len(data) - at))]

    def _insert(self, data: bytearray) -> None:
        at = self.random.randrange(len(data) + 1)
        data[at:at] = bytes(self.random.randrange(256) for _ in range(1 + self.random.randrange(8)))

    def _duplicate(self, data: bytearray) -> None:
        at = self._offset(data)
        if at is not None:
            chunk = data[at:at + 1 + self.random.randrange(min(64, len(data) - at))]
            where = self.random.randrange(len(data) + 1)
            data[where:where] = chunk

    def _splice(self, data: bytearray) -> None:
        other = self.random.choice(self.corpus)
        cut = self.random.randrange(len(data) + 1)
        data[cut:] = other[self.random.randrange(len(other) + 1):]

    def _token(self, data: bytearray) -> None:
        token = self.random.choice(TOKENS)
        # Often into the busid field of a request (offset 8) or of a device record.
        at = self.random.choice((8, 8 + 256, self.random.randrange(len(data) + 1)))
        data[at:at + len(token)] = token

    def _append(self, data: bytearray) -> None:
        data += bytes(self.random.randrange(256) for _ in range(1 + self.random.randrange(32)))


class LineCoverage:
    """Line transitions run in the files below ``directory``, for coverage feedback."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.realpath(directory) + os.sep
        self.seen: Set[Tuple[object, int, int]] = set()
        self._run: Set[Tuple[object, int, int]] = set()
        self._ours: dict = {}

    def _wanted(self, code) -> bool:
        ours = self._ours.get(code.co_filename)
        if ours is None:
            ours = self._ours[code.co_filename] = os.path.realpath(code.co_filename).startswith(self.directory)
        return ours

    def _global(self, frame, event, arg):
        if event != "call" or not self._wanted(frame.f_code):
            return None
        last = [frame.f_lineno]
        code = frame.f_code
        run = self._run

        def local(frame, event, arg):
            if event == "line":
                run.add((code, last[0], frame.f_lineno))
                last[0] = frame.f_lineno
            return local

        return local

    def run(self, function, data: bytes) -> bool:
        """Call ``function(data)``; True when it ran a transition not seen before.

        The tracer in place before (coverage measurement, a debugger) is put
        back afterwards: the tests that run later in the process stay traced.
        """
        self._run = set()
        previous = sys.gettrace()
        sys.settrace(self._global)
        try:
            function(data)
        finally:
            sys.settrace(previous)
        new = self._run - self.seen
        self.seen |= new
        return bool(new)
