# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device record codec's refusals, word for word (found by mutation testing).

A record that cannot be encoded or decoded ends in one line of a log or of a module's ``msg``; the
field it names is what an operator looks at first, so each message is pinned here in full.
The round trips and the wire vectors are in ``tests/unit/protocol``.
"""

from __future__ import annotations

import dataclasses

import pytest

from usbip.device import Speed
from usbip.protocol.errors import BadCount, BadString, BadValue, Overlong, Truncated
from usbip.protocol.fields import U16, Cursor, decode_string, decode_whole, encode_string, pack, to_enum
from usbip.protocol.records import encode_device, read_device

from .vectors import DEVICE, DEVICE_WITHOUT_INTERFACES, RECORD


def message(error, call, *args) -> str:
    with pytest.raises(error) as caught:
        call(*args)
    return str(caught.value)


@pytest.mark.parametrize("change, error, text", [
    ({"path": "/" * 256}, BadString, "path is 256 characters, at most 255 fit: '%s'" % ("/" * 256)),
    ({"path": "/sys/\u00e9"}, BadString, "path must be printable ASCII: '/sys/\u00e9'"),
    ({"busid": "1" * 32}, BadString, "busid is 32 characters, at most 31 fit: '%s'" % ("1" * 32)),
    ({"busid": None}, BadString, "busid must be printable ASCII: None"),
    ({"speed": 9}, BadValue, "speed 9 is not a defined Speed"),
])
def test_a_field_that_cannot_be_encoded_is_named(change, error, text):
    assert message(error, encode_device, dataclasses.replace(DEVICE, **change), True) == text


def test_an_interface_count_that_does_not_match_names_the_device():
    device = dataclasses.replace(DEVICE, num_interfaces=3)
    assert message(BadCount, encode_device, device, True) == "1-1: num_interfaces is 3 but 2 interfaces are given"
    assert encode_device(device, False)[:312] == encode_device(DEVICE, False)[:311] + b"\x03"


def test_a_number_out_of_range_is_a_bad_value():
    device = dataclasses.replace(DEVICE_WITHOUT_INTERFACES, id_vendor=0x10000)
    text = message(BadValue, encode_device, device, False)
    assert text.startswith("cannot encode (b'/sys/devices/")
    assert text.endswith("'H' format requires 0 <= number <= 65535")


def test_decoded_strings_stop_at_the_first_nul():
    assert decode_string(b"1-1\0junk\0", "busid") == "1-1"
    assert encode_string("1-1", 8, "busid") == b"1-1\0\0\0\0\0"
    assert encode_string("1234567", 8, "busid") == b"1234567\0"


@pytest.mark.parametrize("raw, text", [
    (b"1-1", "busid field is not NUL-terminated: b'1-1'"),
    (b"1-\x01\0", "busid is not printable ASCII: b'1-\\x01'"),
    (b"1-\xc3\xa9\0", "busid is not printable ASCII: b'1-\\xc3\\xa9'"),
])
def test_a_string_field_that_cannot_be_decoded_is_named(raw, text):
    assert message(BadString, decode_string, raw, "busid") == text


def test_a_short_record_says_how_many_bytes_it_needs():
    assert message(Truncated, read_device, Cursor(RECORD[:100]), False) == "message needs 312 bytes, only 100 given"
    cursor = Cursor(RECORD)
    assert cursor.remaining == 312
    assert cursor.take(12) == RECORD[:12] and cursor.offset == 12 and cursor.remaining == 300


def test_trailing_bytes_are_counted():
    assert message(Overlong, decode_whole, lambda cursor: cursor.unpack(U16), b"\x00\x01\x02") == \
        "1 bytes follow a complete tuple"


def test_enum_and_pack_errors_name_the_value():
    assert to_enum(Speed, 3, "speed") is Speed.HIGH
    assert message(BadValue, to_enum, Speed, 7, "device speed") == "device speed 7 is not a defined Speed"
    assert message(BadValue, pack, U16, 70000) == "cannot encode (70000,): 'H' format requires 0 <= number <= 65535"


def test_a_record_without_interfaces_reads_none_even_when_it_counts_some():
    device = read_device(Cursor(RECORD), False)
    assert device.num_interfaces == 2 and device.interfaces == ()
    assert device == DEVICE_WITHOUT_INTERFACES


def test_an_empty_string_field_is_an_empty_string():
    assert decode_string(b"\0" * 32, "busid") == ""


@pytest.mark.parametrize("start, field, error, text", [
    (0, b"/" * 256, BadString, "path field is not NUL-terminated: b'%s'" % ("/" * 256)),
    (256, b"1-\x7f" + b"\0" * 29, BadString, "busid is not printable ASCII: b'1-\\x7f'"),
    (296, b"\0\0\0\x09", BadValue, "speed 9 is not a defined Speed"),
])
def test_a_record_that_cannot_be_decoded_names_its_field(start, field, error, text):
    record = RECORD[:start] + field + RECORD[start + len(field):]
    assert len(record) == 312
    assert message(error, read_device, Cursor(record), False) == text
