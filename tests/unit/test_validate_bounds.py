# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The busid's two limits, each tested exactly at the boundary and one past it.

* Hub depth: USB allows 7 tiers of hubs below the root hub, so a port chain
  has at most 6 dots (``1-1.2.3.4.5.6.7``); 7 dots is not a USB device.
* Length: the wire's busid field is 32 bytes with its terminating NUL, so at
  most 31 characters. The deepest chain of the largest numbers is exactly 31
  (``999-999.999.999.999.999.999.999``), so both limits meet there.

The length is checked before the pattern, for every kind of busid: 32
characters are refused as too long (whatever they hold), 31 that are not a
busid as not a busid. Each assertion names which check refused, so a limit
moved by one in either direction fails here.
"""

from __future__ import annotations

import pytest

from usbip import validate
from usbip.errors import InvalidArgument

CHECKS = [validate.busid, validate.usb_busid]

SIX_DOTS = "1-1.2.3.4.5.6.7"
SEVEN_DOTS = SIX_DOTS + ".8"
LONGEST = "999-999.999.999.999.999.999.999"


def test_the_boundary_values_are_what_the_tests_say():
    assert SIX_DOTS.count(".") == 6 and SEVEN_DOTS.count(".") == 7
    assert len(LONGEST) == 31 and LONGEST.count(".") == 6
    assert validate.BUSID_MAX == 31


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("value", [SIX_DOTS, "17-1.2.3.4.5.6.7", LONGEST])
def test_a_chain_of_six_hubs_is_a_busid(check, value):
    assert check(value) == value


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("value", [SEVEN_DOTS, "1-1.1.1.1.1.1.1.1", "9-9.9.9.9.9.9.9.9.9"])
def test_a_seventh_dot_is_refused_by_the_pattern(check, value):
    with pytest.raises(InvalidArgument, match=r"invalid busid '%s': expected <bus>-<port>" % value):
        check(value)


@pytest.mark.parametrize("check", CHECKS + [validate.vudc_busid])
def test_32_characters_are_refused_as_too_long(check):
    for value in ("1" * 32, LONGEST + "9", "usbip-vudc." + "1" * 21):
        assert len(value) == 32
        with pytest.raises(InvalidArgument, match=r"invalid busid '%s': longer than 31 characters$" % value):
            check(value)


@pytest.mark.parametrize("check", CHECKS + [validate.vudc_busid])
def test_31_characters_pass_the_length_check(check):
    """31 characters that are no busid: refused by the pattern, not by the length."""
    for value in ("1" * 31, "usbip-vudc." + "1" * 20):
        assert len(value) == 31
        with pytest.raises(InvalidArgument) as refused:
            check(value)
        assert "longer than" not in str(refused.value) and "expected" in str(refused.value)


def test_the_longest_busid_fits_the_wire_field():
    from usbip.protocol import ImportRequest

    encoded = ImportRequest(LONGEST).encode()
    assert encoded[8:40] == LONGEST.encode() + b"\0"
