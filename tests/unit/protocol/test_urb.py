"""URB messages both ways against hand-written vectors, and every way to break them."""

import dataclasses

import pytest

from usbip.protocol import (
    MAX_TRANSFER_LENGTH,
    BadCount,
    BadValue,
    CmdSubmit,
    Direction,
    IsoPacketDescriptor,
    Overlong,
    RetSubmit,
    RetUnlink,
    TransferFlag,
    Truncated,
    UnexpectedMessage,
    UnknownCode,
    decode_command,
    decode_return,
)

from .vectors import (
    CMD_SUBMIT_IN,
    CMD_SUBMIT_ISO_OUT,
    CMD_SUBMIT_OUT,
    COMMANDS,
    RET_SUBMIT_ISO_IN,
    RET_SUBMIT_OUT,
    RET_UNLINK,
    RETURNS,
)


def _patch(wire, offset, hex_bytes):
    """Overwrite one field of a vector, to build a malformed variant."""
    value = bytes.fromhex(hex_bytes)
    return wire[:offset] + value + wire[offset + len(value) :]


@pytest.mark.parametrize("message, wire", COMMANDS)
def test_command_encodes_to_vector(message, wire):
    assert message.encode() == wire


@pytest.mark.parametrize("message, wire", COMMANDS)
def test_command_decodes_from_vector(message, wire):
    assert decode_command(wire) == message


@pytest.mark.parametrize("message, direction, wire", RETURNS)
def test_return_encodes_to_vector(message, direction, wire):
    assert message.encode() == wire


@pytest.mark.parametrize("message, direction, wire", RETURNS)
def test_return_decodes_from_vector(message, direction, wire):
    assert decode_return(wire, direction) == message


def test_non_iso_packet_count_may_be_all_ones():
    wire = _patch(CMD_SUBMIT_IN, 0x1C, "ffffffff ffffffff")  # start_frame and number_of_packets
    message = decode_command(wire)
    assert message.number_of_packets == 0xFFFFFFFF
    assert message.iso_packets == ()
    assert message.encode() == wire


def test_ret_unlink_status_is_signed():
    assert decode_return(RET_UNLINK, Direction.OUT) == RetUnlink(8, -104)
    assert decode_return(_patch(RET_UNLINK, 0x14, "00000000"), Direction.OUT) == RetUnlink(8, 0)


def test_iso_descriptor_status_is_signed():
    wire = _patch(RET_SUBMIT_ISO_IN, 0x30 + 6 + 16 + 12, "ffffffee")  # packet 1 status -EXDEV
    assert decode_return(wire, Direction.IN).iso_packets[1] == IsoPacketDescriptor(8, 8, 2, -18)


def test_transfer_flags_compose():
    assert TransferFlag.SHORT_NOT_OK | TransferFlag.DIR_IN == 0x201


# ---------------------------------------------------------------- decoding errors


@pytest.mark.parametrize("command", ["00000000", "00000005", "ffffffff"])
def test_unknown_command(command):
    with pytest.raises(UnknownCode):
        decode_command(_patch(CMD_SUBMIT_IN, 0, command))
    with pytest.raises(UnknownCode):
        decode_return(_patch(RET_SUBMIT_OUT, 0, command), Direction.OUT)


def test_return_where_command_expected():
    with pytest.raises(UnexpectedMessage):
        decode_command(RET_SUBMIT_OUT)


def test_command_where_return_expected():
    with pytest.raises(UnexpectedMessage):
        decode_return(CMD_SUBMIT_IN, Direction.IN)


def test_bad_direction():
    with pytest.raises(BadValue):
        decode_command(_patch(CMD_SUBMIT_IN, 0x0C, "00000002"))


def test_endpoint_beyond_15():
    with pytest.raises(BadValue):
        decode_command(_patch(CMD_SUBMIT_IN, 0x10, "00000010"))


def test_too_many_iso_packets():
    with pytest.raises(BadCount):
        decode_command(_patch(CMD_SUBMIT_ISO_OUT, 0x20, "00000401"))


def test_transfer_length_beyond_cap():
    with pytest.raises(BadCount):
        decode_command(_patch(CMD_SUBMIT_OUT, 0x18, "7fffffff"))


def test_actual_length_beyond_cap():
    with pytest.raises(BadCount):
        decode_return(_patch(RET_SUBMIT_OUT, 0x18, "ffffffff"), Direction.IN)


def test_out_data_missing():
    with pytest.raises(Truncated):
        decode_command(CMD_SUBMIT_OUT[:-1])


def test_iso_descriptor_missing():
    with pytest.raises(Truncated):
        decode_return(RET_SUBMIT_ISO_IN[:-16], Direction.IN)


def test_trailing_bytes():
    with pytest.raises(Overlong):
        decode_command(CMD_SUBMIT_IN + b"\0")
    with pytest.raises(Overlong):
        decode_return(RET_SUBMIT_OUT + b"\0", Direction.OUT)


def test_wrong_direction_for_return_misframes_strictly():
    with pytest.raises(Truncated):
        decode_return(RET_SUBMIT_OUT, Direction.IN)


def test_iso_lengths_must_add_up():
    with pytest.raises(BadCount):
        decode_return(_patch(RET_SUBMIT_ISO_IN, 0x30 + 6 + 8, "00000005"), Direction.IN)


# ---------------------------------------------------------------- encoding errors

OUT = CmdSubmit(1, 0x10002, Direction.OUT, 2, transfer_buffer_length=4, data=b"\1\2\3\4")


@pytest.mark.parametrize(
    "change, error",
    [
        ({"data": b"\1\2\3"}, BadCount),
        ({"direction": Direction.IN}, BadCount),  # IN carries no data
        ({"direction": 2}, BadValue),
        ({"ep": 16}, BadValue),
        ({"setup": b"\0" * 7}, BadValue),
        ({"seqnum": -1}, BadValue),
        ({"devid": 1 << 32}, BadValue),
        ({"number_of_packets": 2, "iso_packets": (IsoPacketDescriptor(0, 4),)}, BadCount),
        ({"number_of_packets": 1025}, BadCount),
        ({"transfer_buffer_length": MAX_TRANSFER_LENGTH + 1, "data": b""}, BadCount),
    ],
)
def test_cmd_submit_encoder_validates(change, error):
    with pytest.raises(error):
        dataclasses.replace(OUT, **change).encode()


@pytest.mark.parametrize(
    "message",
    [
        RetSubmit(1, 0, 4, data=b"\0"),
        RetSubmit(1, 0, 4, number_of_packets=1),
        RetSubmit(1, 0, 4, number_of_packets=1, iso_packets=(IsoPacketDescriptor(0, 4, 3),)),
    ],
)
def test_ret_submit_encoder_validates(message):
    with pytest.raises(BadCount):
        message.encode()


def test_ret_unlink_status_range():
    with pytest.raises(BadValue):
        RetUnlink(1, 1 << 31).encode()
