"""OP_* messages both ways against hand-written vectors, and every way to break them."""

import dataclasses

import pytest

from usbip.errors import UsbipError
from usbip.protocol import (
    BadCount,
    BadString,
    BadValue,
    DevlistReply,
    DevlistRequest,
    ImportReply,
    ImportRequest,
    Op,
    Overlong,
    ProtocolError,
    Status,
    Truncated,
    UnexpectedMessage,
    UnknownCode,
    UnsupportedOperation,
    VersionMismatch,
    decode_reply,
    decode_request,
)
from usbip.protocol.constants import MAX_DEVICES, MAX_DEVLIST_REPLY, MAX_INTERFACES

from .vectors import (
    DEVICE,
    DEVLIST_REPLY,
    DEVLIST_REQUEST,
    IMPORT_REPLY_NODEV,
    IMPORT_REPLY_OK,
    IMPORT_REQUEST,
    INTERFACES,
    RECORD,
    REPLIES,
    REQUESTS,
)


@pytest.mark.parametrize("message, wire", REQUESTS)
def test_request_encodes_to_vector(message, wire):
    assert message.encode() == wire


@pytest.mark.parametrize("message, wire", REQUESTS)
def test_request_decodes_from_vector(message, wire):
    assert decode_request(wire) == message


@pytest.mark.parametrize("message, answered, wire", REPLIES)
def test_reply_encodes_to_vector(message, answered, wire):
    assert message.encode() == wire


@pytest.mark.parametrize("message, answered, wire", REPLIES)
def test_reply_decodes_from_vector(message, answered, wire):
    assert decode_reply(wire, answered) == message


def test_import_reply_leaves_interfaces_off_the_wire():
    assert ImportReply(Status.OK, DEVICE).encode() == IMPORT_REPLY_OK


def test_failed_devlist_reply_is_a_bare_header():
    wire = bytes.fromhex("0111 0005 00000001")
    assert DevlistReply(status=Status.NA).encode() == wire
    assert decode_reply(wire, DevlistRequest()) == DevlistReply((), Status.NA)


def test_busid_of_31_characters_fits():
    busid = "1-" + "1." * 14 + "1"
    assert len(busid) == 31
    wire = bytes.fromhex("0111 8003 00000000") + busid.encode() + b"\0"
    assert ImportRequest(busid).encode() == wire
    assert decode_request(wire) == ImportRequest(busid)


def test_bytes_after_busid_terminator_are_ignored():
    wire = bytes.fromhex("0111 8003 00000000") + b"1-1\0" + b"\xff" * 28
    assert decode_request(wire) == ImportRequest("1-1")


def test_status_strings_match_the_c_tools():
    assert [s.description for s in Status] == [
        "Request Completed Successfully",
        "Request Failed",
        "Device busy (exported)",
        "Device in error state",
        "Device not found",
        "Unexpected response",
    ]


def test_only_import_and_devlist_are_implemented():
    assert [op for op in Op if op.implemented] == [Op.IMPORT, Op.DEVLIST]


# ---------------------------------------------------------------- decoding errors


def test_version_mismatch():
    with pytest.raises(VersionMismatch) as info:
        decode_request(bytes.fromhex("0110 8005 00000000"))
    assert info.value.version == 0x0110


@pytest.mark.parametrize("code", ["8009", "8000", "0000", "4005", "ffff"])
def test_unknown_request_code(code):
    with pytest.raises(UnknownCode) as info:
        decode_request(bytes.fromhex("0111" + code + "00000000"))
    assert info.value.code == int(code, 16)
    assert not isinstance(info.value, UnsupportedOperation)


@pytest.mark.parametrize("op", [Op.DEVINFO, Op.CRYPKEY, Op.EXPORT, Op.UNEXPORT])
def test_defined_but_unimplemented_request(op):
    with pytest.raises(UnsupportedOperation) as info:
        decode_request(bytes([0x01, 0x11, 0x80, op, 0, 0, 0, 0]))
    assert info.value.op is op
    assert info.value.code == 0x8000 | op
    assert isinstance(info.value, UnknownCode)


def test_reply_sent_to_server():
    with pytest.raises(UnexpectedMessage):
        decode_request(bytes.fromhex("0111 0005 00000000"))


def test_request_status_must_be_zero():
    with pytest.raises(BadValue):
        decode_request(bytes.fromhex("0111 8005 00000001"))


def test_truncated_request():
    with pytest.raises(Truncated):
        decode_request(IMPORT_REQUEST[:-1])


def test_overlong_request():
    with pytest.raises(Overlong):
        decode_request(DEVLIST_REQUEST + b"\0")


def test_busid_without_terminator():
    with pytest.raises(BadString):
        decode_request(bytes.fromhex("0111 8003 00000000") + b"1" * 32)


@pytest.mark.parametrize("busid", [b"1-\xe9", b"1-1\n", b"1-1\x7f"])
def test_busid_not_printable_ascii(busid):
    with pytest.raises(BadString):
        decode_request(bytes.fromhex("0111 8003 00000000") + busid.ljust(32, b"\0"))


def test_path_without_terminator():
    record = b"/" * 256 + RECORD[256:]
    with pytest.raises(BadString):
        decode_reply(bytes.fromhex("0111 0003 00000000") + record, ImportRequest("1-1"))


def test_path_not_ascii():
    record = b"/sys/\xc3\xa9" + RECORD[7:]
    with pytest.raises(BadString):
        decode_reply(bytes.fromhex("0111 0003 00000000") + record, ImportRequest("1-1"))


def test_unknown_speed():
    record = RECORD[:0x128] + bytes.fromhex("00000007") + RECORD[0x12C:]
    with pytest.raises(BadValue):
        decode_reply(bytes.fromhex("0111 0003 00000000") + record, ImportRequest("1-1"))


def test_unknown_reply_status():
    with pytest.raises(BadValue):
        decode_reply(bytes.fromhex("0111 0003 00000006"), ImportRequest("1-1"))


def test_reply_to_another_request():
    with pytest.raises(UnexpectedMessage):
        decode_reply(IMPORT_REPLY_NODEV, DevlistRequest())


def test_request_where_reply_expected():
    with pytest.raises(UnexpectedMessage):
        decode_reply(DEVLIST_REQUEST, DevlistRequest())


def test_reply_for_another_busid():
    with pytest.raises(UnexpectedMessage):
        decode_reply(IMPORT_REPLY_OK, ImportRequest("1-2"))


def test_failed_import_reply_with_a_record_is_overlong():
    with pytest.raises(Overlong):
        decode_reply(IMPORT_REPLY_NODEV + RECORD, ImportRequest("1-1"))


def test_device_count_beyond_cap():
    # ndev = 0xffffffff followed by 8 bytes: rejected for the count, not left waiting.
    with pytest.raises(BadCount):
        decode_reply(bytes.fromhex("0111 0005 00000000 ffffffff 0000000000000000"), DevlistRequest())


def test_device_count_beyond_data():
    with pytest.raises(Truncated):
        decode_reply(bytes.fromhex("0111 0005 00000000 00000003 0000000000000000"), DevlistRequest())


def test_interface_records_missing():
    with pytest.raises(Truncated):
        decode_reply(DEVLIST_REPLY[: -len(INTERFACES) // 2], DevlistRequest())


def test_errors_share_the_package_root():
    assert issubclass(ProtocolError, UsbipError)


# ---------------------------------------------------------------- encoding errors


@pytest.mark.parametrize("busid", ["1" * 32, "1-\u00e9", "1-1\n", "", 7])
def test_import_request_rejects_bad_busid(busid):
    if busid == "":
        # Empty is representable; whether it names a device is sysfs's business.
        assert ImportRequest(busid).encode() == bytes.fromhex("0111 8003 00000000") + b"\0" * 32
        return
    with pytest.raises(BadString):
        ImportRequest(busid).encode()


def test_path_too_long():
    device = dataclasses.replace(DEVICE, path="/" * 256)
    with pytest.raises(BadString):
        DevlistReply((device,)).encode()


def test_interface_count_must_match():
    device = dataclasses.replace(DEVICE, num_interfaces=3)
    with pytest.raises(BadCount):
        DevlistReply((device,)).encode()


@pytest.mark.parametrize(
    "change",
    [{"busnum": 1 << 32}, {"devnum": -1}, {"id_vendor": 0x10000}, {"num_configurations": 256}, {"speed": 9}],
)
def test_device_field_out_of_range(change):
    with pytest.raises(BadValue):
        DevlistReply((dataclasses.replace(DEVICE, **change),)).encode()


def test_import_reply_device_iff_ok():
    with pytest.raises(BadValue):
        ImportReply(Status.OK).encode()
    with pytest.raises(BadValue):
        ImportReply(Status.NODEV, DEVICE).encode()


def test_failed_devlist_reply_cannot_carry_devices():
    with pytest.raises(BadValue):
        DevlistReply((DEVICE,), Status.NA).encode()


def test_undefined_status():
    with pytest.raises(BadValue):
        ImportReply(9).encode()


def _with_interfaces(count: int):
    """DEVICE's record announcing ``count`` interfaces, and the device those records decode to."""
    from usbip.device import UsbInterface

    interfaces = tuple(UsbInterface(0xFF, n & 0xFF, 0) for n in range(count))
    return dataclasses.replace(DEVICE, num_interfaces=count, interfaces=interfaces)


def _devlist_wire(*devices) -> bytes:
    """A DEVLIST reply as a server that ignores our caps would send it."""
    from usbip.protocol.records import encode_device

    return (bytes.fromhex("0111 0005 00000000") + len(devices).to_bytes(4, "big")
            + b"".join(encode_device(d, with_interfaces=True) for d in devices))


def test_a_device_with_the_kernels_most_interfaces_is_read():
    device = _with_interfaces(MAX_INTERFACES)
    assert MAX_INTERFACES == 32  # USB_MAXINTERFACES, include/linux/usb.h
    assert decode_reply(_devlist_wire(device), DevlistRequest()).devices == (device,)


@pytest.mark.parametrize("count", [MAX_INTERFACES + 1, 255])
def test_a_device_with_more_interfaces_than_the_kernel_keeps_is_refused(count):
    with pytest.raises(BadCount, match="device 1-1 claims %d interfaces, the limit is 32" % count):
        decode_reply(_devlist_wire(DEVICE, _with_interfaces(count)), DevlistRequest())
    # a server of ours cannot send one either
    with pytest.raises(BadCount, match="1-1: %d interfaces exceed the limit of 32" % count):
        DevlistReply((_with_interfaces(count),)).encode()


def test_the_longest_devlist_reply_is_the_product_of_the_kernel_limits():
    one = len(_devlist_wire(_with_interfaces(MAX_INTERFACES))) - 12  # a record and its interface records
    assert MAX_DEVLIST_REPLY == 12 + MAX_DEVICES * one == 3604492


def test_devices_of_one_kind_share_their_interfaces():
    twin = dataclasses.replace(DEVICE, busid="1-2")
    other = _with_interfaces(3)
    devices = decode_reply(_devlist_wire(DEVICE, twin, other, DEVICE), DevlistRequest()).devices
    assert devices == (DEVICE, twin, other, DEVICE)
    assert devices[0].interfaces is devices[1].interfaces is devices[3].interfaces
    assert devices[2].interfaces is not devices[0].interfaces
