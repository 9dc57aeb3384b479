"""Incremental readers: chunking never changes the outcome, and errors come early."""

import random

import pytest

from usbip.protocol import (
    NEED_DATA,
    BadCount,
    CmdSubmit,
    CmdUnlink,
    CommandReader,
    DevlistRequest,
    Direction,
    ImportRequest,
    ProtocolError,
    ReplyReader,
    RequestReader,
    RetSubmit,
    ReturnReader,
    Truncated,
    UnexpectedMessage,
    UnknownCode,
    UnsupportedOperation,
    VersionMismatch,
    decode_command,
    decode_reply,
    decode_request,
    decode_return,
)

from .vectors import (
    CMD_SUBMIT_IN,
    CMD_UNLINK,
    COMMANDS,
    DEVLIST_REQUEST,
    IMPORT_REPLY_OK,
    IMPORT_REQUEST,
    REPLIES,
    REQUESTS,
    RET_SUBMIT_IN,
    RET_SUBMIT_OUT,
    RET_UNLINK,
    RETURNS,
)


def _drain(reader):
    messages = []
    while True:
        message = reader.next_message()
        if message is NEED_DATA:
            return messages
        messages.append(message)


def _byte_by_byte(reader, wire):
    messages = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        messages += _drain(reader)
    return messages


def _return_reader():
    """A reader primed with every command the RETURNS vectors answer."""
    reader = ReturnReader()
    for seqnum, direction, length in [(1, Direction.OUT, 4), (2, Direction.IN, 18), (7, Direction.IN, 16)]:
        reader.sent(CmdSubmit(seqnum, 0x10002, direction, 1, transfer_buffer_length=length))
    reader.sent(CmdUnlink(8, 0x10002, 2))
    return reader


# Each stream is a sequence of messages as one peer could send them.
STREAMS = [
    ("requests", RequestReader, [m for m, _ in REQUESTS], b"".join(w for _, w in REQUESTS)),
    ("commands", CommandReader, [m for m, _ in COMMANDS], b"".join(w for _, w in COMMANDS)),
    (
        "returns",
        _return_reader,
        # The stall answers seqnum 2 a second time, so leave it out.
        [RETURNS[i][0] for i in (0, 1, 3, 4)],
        b"".join(RETURNS[i][2] for i in (0, 1, 3, 4)),
    ),
] + [("reply%d" % i, lambda r=request: ReplyReader(r), [m], w) for i, (m, request, w) in enumerate(REPLIES)]


@pytest.mark.parametrize("name, make, messages, wire", STREAMS, ids=[s[0] for s in STREAMS])
def test_single_feed(name, make, messages, wire):
    reader = make()
    reader.feed(wire)
    assert _drain(reader) == messages
    assert reader.trailing_data == b""


@pytest.mark.parametrize("name, make, messages, wire", STREAMS, ids=[s[0] for s in STREAMS])
def test_byte_by_byte_matches_single_feed(name, make, messages, wire):
    assert _byte_by_byte(make(), wire) == messages


@pytest.mark.parametrize("name, make, messages, wire", STREAMS, ids=[s[0] for s in STREAMS])
def test_random_chunks_match_single_feed(name, make, messages, wire):
    rng = random.Random(name)
    for _ in range(20):
        reader, result, pos = make(), [], 0
        while pos < len(wire):
            step = rng.randint(1, 64)
            reader.feed(wire[pos : pos + step])
            pos += step
            result += _drain(reader)
        assert result == messages


def test_empty_feed_needs_data():
    reader = RequestReader()
    reader.feed(b"")
    assert reader.next_message() is NEED_DATA


@pytest.mark.parametrize(
    "reader, wire, error, needed",
    [
        (RequestReader(), bytes.fromhex("0110"), VersionMismatch, 2),
        (RequestReader(), bytes.fromhex("0111 8009"), UnknownCode, 4),
        (RequestReader(), bytes.fromhex("0111 8002"), UnsupportedOperation, 4),
        (RequestReader(), bytes.fromhex("0111 0005"), UnexpectedMessage, 4),
        (ReplyReader(DevlistRequest()), bytes.fromhex("0111 0003"), UnexpectedMessage, 4),
        (ReplyReader(DevlistRequest()), bytes.fromhex("0111 0005 00000000 ffffffff"), BadCount, 12),
        (CommandReader(), bytes.fromhex("00000009"), UnknownCode, 4),
        (CommandReader(), bytes.fromhex("00000003"), UnexpectedMessage, 4),
        (ReturnReader(), bytes.fromhex("00000003 00000001 00000000 00000000 00000000"), UnexpectedMessage, 20),
    ],
)
def test_errors_come_as_soon_as_the_bytes_are_wrong(reader, wire, error, needed):
    assert len(wire) == needed
    reader.feed(wire[:-1])
    assert reader.next_message() is NEED_DATA
    reader.feed(wire[-1:])
    with pytest.raises(error):
        reader.next_message()


def test_error_is_sticky():
    reader = RequestReader()
    reader.feed(bytes.fromhex("0110 8005 00000000") + DEVLIST_REQUEST)
    for _ in range(2):
        with pytest.raises(VersionMismatch):
            reader.next_message()


def test_bytes_after_the_reply_stay_buffered():
    reader = ReplyReader(ImportRequest("1-1"))
    reader.feed(IMPORT_REPLY_OK + CMD_SUBMIT_IN[:5])
    assert reader.next_message().device.busid == "1-1"
    assert reader.trailing_data == CMD_SUBMIT_IN[:5]


def test_request_then_command_stream_fails_typed():
    # After OP_REQ_IMPORT the connection carries URBs, which are not requests.
    reader = RequestReader()
    reader.feed(IMPORT_REQUEST + CMD_SUBMIT_IN)
    assert reader.next_message() == ImportRequest("1-1")
    with pytest.raises(VersionMismatch):
        reader.next_message()


def test_ret_submit_frames_by_submitted_direction():
    reader = ReturnReader()
    reader.sent(CmdSubmit(2, 0x10002, Direction.IN, 0, transfer_buffer_length=18))
    reader.sent(CmdSubmit(1, 0x10002, Direction.OUT, 2, transfer_buffer_length=4, data=b"\0" * 4))
    reader.feed(RET_SUBMIT_IN + RET_SUBMIT_OUT)
    assert [m.data for m in _drain(reader)] == [decode_return(RET_SUBMIT_IN, Direction.IN).data, None]


def test_ret_submit_answers_each_command_once():
    reader = ReturnReader()
    reader.sent(CmdSubmit(1, 0x10002, Direction.OUT, 2, transfer_buffer_length=4, data=b"\0" * 4))
    reader.feed(RET_SUBMIT_OUT + RET_SUBMIT_OUT)
    assert isinstance(reader.next_message(), RetSubmit)
    with pytest.raises(UnexpectedMessage):
        reader.next_message()


def test_actual_length_cannot_exceed_the_submitted_buffer():
    reader = ReturnReader()
    reader.sent(CmdSubmit(2, 0x10002, Direction.IN, 0, transfer_buffer_length=8))
    reader.feed(RET_SUBMIT_IN)
    with pytest.raises(BadCount):
        reader.next_message()


def test_ret_unlink_ends_the_unlinked_urb():
    reader = ReturnReader()
    reader.sent(CmdSubmit(2, 0x10002, Direction.IN, 0, transfer_buffer_length=18))
    reader.sent(CmdUnlink(8, 0x10002, 2))
    reader.feed(RET_UNLINK + RET_SUBMIT_IN)
    assert reader.next_message().status == -104
    with pytest.raises(UnexpectedMessage):
        reader.next_message()


def test_unknown_ret_unlink_is_tolerated_like_vhci():
    reader = ReturnReader()
    reader.feed(RET_UNLINK)
    assert reader.next_message().seqnum == 8


def test_unlink_command_is_read_whole():
    reader = CommandReader()
    reader.feed(CMD_UNLINK[:-1])
    assert reader.next_message() is NEED_DATA
    reader.feed(CMD_UNLINK[-1:])
    assert reader.next_message() == CmdUnlink(8, 0x10002, 2)


# ---------------------------------------------------------------- fuzz-ish

# (strict decoder, fresh reader, wire) for every valid vector.
CASES = (
    [(decode_request, RequestReader, w) for _, w in REQUESTS]
    + [(lambda d, r=r: decode_reply(d, r), lambda r=r: ReplyReader(r), w) for _, r, w in REPLIES]
    + [(decode_command, CommandReader, w) for _, w in COMMANDS]
    + [(lambda d, x=x: decode_return(d, x), _return_reader, w) for _, x, w in RETURNS]
)


@pytest.mark.parametrize("decode, make, wire", CASES)
def test_every_prefix_needs_data(decode, make, wire):
    for end in range(len(wire)):
        with pytest.raises(Truncated):
            decode(wire[:end])
        reader = make()
        reader.feed(wire[:end])
        assert reader.next_message() is NEED_DATA


@pytest.mark.parametrize("decode, make, wire", CASES)
def test_mutations_give_a_message_or_a_typed_error(decode, make, wire):
    rng = random.Random(wire)
    for _ in range(300):
        mutated = bytearray(wire)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        mutated = bytes(mutated[: rng.randint(0, len(mutated))]) if rng.random() < 0.3 else bytes(mutated)
        try:
            decode(mutated)
        except ProtocolError:
            pass
        reader = make()
        reader.feed(mutated)
        try:
            _drain(reader)
        except ProtocolError:
            pass


def test_noise_gives_typed_errors():
    rng = random.Random(3240)
    for make in (RequestReader, CommandReader, ReturnReader, lambda: ReplyReader(DevlistRequest())):
        for _ in range(200):
            reader = make()
            reader.feed(bytes(rng.randrange(256) for _ in range(rng.randint(0, 400))))
            try:
                _drain(reader)
            except ProtocolError:
                pass


def _big_devlist(devices: int, interfaces: int) -> bytes:
    from usbip.device import Speed, UsbDevice, UsbInterface
    from usbip.protocol import DevlistReply

    return DevlistReply(tuple(
        UsbDevice(path="/sys/devices/platform/vhci/usb1/1-%d" % n, busid="1-%d" % n, busnum=1, devnum=n % 128,
                  speed=Speed.HIGH, id_vendor=0x1209, id_product=n & 0xFFFF, bcd_device=0x100, device_class=0,
                  device_subclass=0, device_protocol=0, configuration_value=1, num_configurations=1,
                  num_interfaces=interfaces, interfaces=tuple(UsbInterface(8, 6, 0x50) for _i in range(interfaces)))
        for n in range(devices))).encode()


def test_a_long_devlist_reply_is_parsed_once_whatever_the_segments(monkeypatch):
    # Re-parsing from the start on each segment made a 2.6 MiB reply cost the square of its size.
    from usbip.protocol import reader as reader_module

    wire = _big_devlist(512, 32)
    started, finished = [], []
    real = reader_module.read_devlist_device

    def counting(cursor, seen):
        started.append(cursor.offset)
        device = real(cursor, seen)
        finished.append(device.busid)
        return device

    monkeypatch.setattr(reader_module, "read_devlist_device", counting)
    reader = ReplyReader(DevlistRequest())
    got = NEED_DATA
    buffered = []
    for start in range(0, len(wire), 4096):  # 40 segments
        reader.feed(wire[start:start + 4096])
        got = reader.next_message()
        buffered.append(len(reader.trailing_data))
    assert got == decode_reply(wire, DevlistRequest())
    # each record read once, plus at most one read cut short per segment (re-parsing: ~10,000 reads)
    assert len(finished) == 512
    assert len(started) <= 512 + len(wire) // 4096 + 1
    # the records taken are dropped: never more than one segment and one record wait in the buffer
    assert max(buffered) < 4096 + 312 + 32 * 4


def test_a_bad_record_in_a_long_devlist_fails_as_soon_as_its_bytes_are_there():
    wire = bytearray(_big_devlist(64, 1))
    record = 12 + 10 * 316  # the 11th device record (312 bytes, then one 4-byte interface record)
    wire[record + 256:record + 288] = b"x" * 32  # its busid loses its NUL terminator
    reader = ReplyReader(DevlistRequest())
    reader.feed(bytes(wire[:record + 311]))
    assert reader.next_message() is NEED_DATA  # the record is one byte short
    reader.feed(bytes(wire[record + 311:record + 312]))
    with pytest.raises(ProtocolError):
        reader.next_message()
    with pytest.raises(ProtocolError):
        decode_reply(bytes(wire), DevlistRequest())


def test_a_devlist_reader_reads_a_second_reply_from_scratch():
    wire = _big_devlist(3, 2)
    reader = ReplyReader(DevlistRequest())
    reader.feed(wire + wire[:20])
    assert len(reader.next_message().devices) == 3
    assert reader.next_message() is NEED_DATA
    reader.feed(wire[20:])
    assert len(reader.next_message().devices) == 3


def test_a_record_with_too_many_interfaces_fails_without_waiting_for_the_rest():
    from usbip.protocol.records import encode_device

    from .test_control import _with_interfaces

    # The header promises 8192 devices; the first record claims 255 interfaces.
    wire = bytes.fromhex("0111 0005 00000000 00002000") + encode_device(_with_interfaces(255), with_interfaces=True)
    reader = ReplyReader(DevlistRequest())
    reader.feed(wire)
    with pytest.raises(BadCount, match="claims 255 interfaces, the limit is 32"):
        reader.next_message()
    with pytest.raises(BadCount):  # the framing is lost for good
        reader.next_message()


def test_a_count_past_the_cap_fails_on_the_header():
    reader = ReplyReader(DevlistRequest())
    reader.feed(bytes.fromhex("0111 0005 00000000 00002001"))
    with pytest.raises(BadCount, match="claims 8193 devices, the limit is 8192"):
        reader.next_message()
