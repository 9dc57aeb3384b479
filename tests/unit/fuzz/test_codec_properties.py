# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property tests of every message of the wire codec.

* Generated valid messages survive encode -> decode unchanged, through the
  strict decoders and through the incremental readers whatever the chunking.
* Arbitrary bytes -- random, valid messages cut short, valid messages with a
  window overwritten -- fed to every decoder and reader end in a message or a
  ProtocolError and nothing else (the oracle is ``tests.fuzz.targets.check``,
  the one the mutation fuzzers use).
* Any field values handed to an encoder give bytes or a ProtocolError, and
  bytes that were produced decode back to the message.
"""

from __future__ import annotations

import dataclasses

import codec_strategies as cs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import targets
from usbip.protocol import (
    CmdSubmit,
    CmdUnlink,
    CommandReader,
    DevlistReply,
    DevlistRequest,
    Direction,
    ImportReply,
    ImportRequest,
    IsoPacketDescriptor,
    ProtocolError,
    ReplyReader,
    RequestReader,
    RetSubmit,
    RetUnlink,
    ReturnReader,
    decode_command,
    decode_reply,
    decode_request,
    decode_return,
)
from usbip.protocol.reader import NEED_DATA

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _split(data: bytes, cuts) -> list:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


def _read_all(reader, pieces) -> list:
    messages = []
    for piece in pieces:
        reader.feed(piece)
        while True:
            message = reader.next_message()
            if message is NEED_DATA:
                break
            messages.append(message)
    return messages


# -- round trips -------------------------------------------------------------------
@SETTINGS
@given(cs.valid_requests)
def test_requests_round_trip(request):
    wire = request.encode()
    assert len(wire) == (8 if isinstance(request, DevlistRequest) else 40)
    assert decode_request(wire) == request


@SETTINGS
@given(cs.valid_replies())
def test_replies_round_trip(pair):
    reply, request = pair
    wire = reply.encode()
    if isinstance(reply, DevlistReply) and reply.devices:
        assert len(wire) == 12 + sum(312 + 4 * len(d.interfaces) for d in reply.devices)
    assert decode_reply(wire, request) == reply


@SETTINGS
@given(cs.valid_commands)
def test_commands_round_trip(command):
    wire = command.encode()
    if isinstance(command, CmdSubmit):
        assert len(wire) == 48 + len(command.data) + 16 * len(command.iso_packets)
    else:
        assert len(wire) == 48
    assert decode_command(wire) == command


@SETTINGS
@given(cs.valid_returns())
def test_returns_round_trip(pair):
    message, direction = pair
    wire = message.encode()
    if isinstance(message, RetSubmit):
        assert len(wire) == 48 + len(message.data or b"") + 16 * len(message.iso_packets)
    assert decode_return(wire, direction) == message


@SETTINGS
@given(cs.iso_packets)
def test_iso_descriptors_are_16_bytes(packet):
    assert len(packet.encode()) == 16


# -- streams through the readers, cut anywhere --------------------------------------
@SETTINGS
@given(st.lists(cs.valid_requests, min_size=1, max_size=4), st.lists(st.integers(0, 10**6), max_size=12))
def test_request_stream_in_any_pieces(requests, cuts):
    wire = b"".join(r.encode() for r in requests)
    reader = RequestReader()
    assert _read_all(reader, _split(wire, cuts)) == requests
    assert reader.trailing_data == b""


@SETTINGS
@given(cs.valid_replies(), st.lists(st.integers(0, 10**6), max_size=12))
def test_reply_in_any_pieces(pair, cuts):
    reply, request = pair
    assert _read_all(ReplyReader(request), _split(reply.encode(), cuts)) == [reply]


@SETTINGS
@given(st.lists(cs.valid_commands, min_size=1, max_size=4), st.lists(st.integers(0, 10**6), max_size=12))
def test_command_stream_in_any_pieces(commands, cuts):
    wire = b"".join(c.encode() for c in commands)
    assert _read_all(CommandReader(), _split(wire, cuts)) == commands


@st.composite
def return_streams(draw):
    """RET_SUBMITs for distinct seqnums (with the commands they answer) and RET_UNLINKs, shuffled."""
    seqnums = draw(st.lists(cs.u32, unique=True, max_size=4))
    sent, returns = [], []
    for seqnum in seqnums:
        direction = draw(st.sampled_from(Direction))
        ret = draw(cs.valid_ret_submits(direction, seqnum))
        length = ret.actual_length + draw(st.integers(0, 16))
        data = b"\0" * length if direction is Direction.OUT else b""
        sent.append(CmdSubmit(seqnum, 1, direction, 1, 0, length, data=data))
        returns.append(ret)
    returns += draw(st.lists(cs.valid_ret_unlinks, max_size=2))
    return sent, draw(st.permutations(returns))


@SETTINGS
@given(return_streams(), st.lists(st.integers(0, 10**6), max_size=12))
def test_return_stream_in_any_pieces(stream, cuts):
    sent, returns = stream
    reader = ReturnReader()
    for command in sent:
        reader.sent(command)
    wire = b"".join(r.encode() for r in returns)
    assert _read_all(reader, _split(wire, cuts)) == list(returns)


# -- arbitrary bytes: a message or a ProtocolError, nothing else -------------------
def _valid_wire():
    return st.one_of(
        cs.valid_requests.map(lambda m: m.encode()),
        cs.valid_replies().map(lambda p: p[0].encode()),
        cs.valid_commands.map(lambda m: m.encode()),
        cs.valid_returns().map(lambda p: p[0].encode()),
    )


@st.composite
def hostile_bytes(draw):
    kind = draw(st.sampled_from(["random", "cut", "overwritten", "joined"]))
    if kind == "random":
        return draw(st.binary(max_size=700))
    wire = draw(_valid_wire())
    if kind == "cut":
        return wire[: draw(st.integers(0, len(wire)))] + draw(st.binary(max_size=8))
    if kind == "joined":
        return wire + draw(_valid_wire())
    at = draw(st.integers(0, len(wire)))
    patch = draw(st.one_of(st.binary(min_size=1, max_size=8),
                           st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\0\0\0\0", b"\x80"])))
    return wire[:at] + patch + wire[at + len(patch):]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bytes())
def test_any_bytes_give_a_message_or_a_protocol_error(data):
    targets.check(data)


def test_the_oracle_catches_a_decoder_that_raises_something_else(monkeypatch):
    """The property above can fail: a decoder leaking IndexError is reported, not swallowed."""

    def leaky(data):
        message = decode_request(data)
        if isinstance(message, ImportRequest) and message.busid == "1-1":
            raise IndexError("planted")
        return message

    monkeypatch.setattr(targets, "TARGETS", [("request", leaky, RequestReader)])
    targets.check(ImportRequest("1-2").encode())
    with pytest.raises(IndexError, match="planted"):
        targets.check(ImportRequest("1-1").encode())


# -- any field values into the encoders ---------------------------------------------
def _decode_back(message, wire):
    if isinstance(message, ImportRequest):
        return message, decode_request(wire)
    if isinstance(message, DevlistReply):
        return message, decode_reply(wire, DevlistRequest())
    if isinstance(message, ImportReply):
        expected = message
        if message.device is not None:
            # OP_REP_IMPORT carries no interface records.
            expected = dataclasses.replace(message, device=dataclasses.replace(message.device, interfaces=()))
        busid = message.device.busid if message.device is not None else "1-1"
        return expected, decode_reply(wire, ImportRequest(busid))
    if isinstance(message, (CmdSubmit, CmdUnlink)):
        return message, decode_command(wire)
    if isinstance(message, RetSubmit):
        return message, decode_return(wire, Direction.IN if message.data is not None else Direction.OUT)
    if isinstance(message, RetUnlink):
        return message, decode_return(wire, Direction.OUT)
    assert isinstance(message, IsoPacketDescriptor)
    assert len(wire) == 16
    return message, message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cs.wild_messages)
def test_encoders_give_bytes_or_a_protocol_error(message):
    try:
        wire = message.encode()
    except ProtocolError:
        return
    expected, decoded = _decode_back(message, wire)
    assert decoded == expected
