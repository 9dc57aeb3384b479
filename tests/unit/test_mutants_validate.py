# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exact boundaries and refusal messages of ``usbip.validate`` (found by mutation testing).

Every refusal is the one line an operator reads, so each message is pinned here in full, and every
bound is tried on both of its sides: the last value accepted and the first refused. Boolean
conditions are tried with inputs that fail one part only (printable but not ASCII, ASCII but not
printable), so a test fails when ``or`` becomes ``and``.
"""

from __future__ import annotations

import pytest

from usbip import validate
from usbip.errors import InvalidArgument

#: A DNS name of exactly 253 characters (four labels: 63, 63, 63, 61), the longest there is.
LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


def refusal(check, *args) -> str:
    with pytest.raises(InvalidArgument) as caught:
        check(*args)
    return str(caught.value)


def test_the_longest_name_is_as_long_as_the_tests_say():
    assert len(LONGEST_NAME) == validate.HOST_MAX == 253


# -- busids ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("check, value, message", [
    (validate.usb_busid, 7, "busid must be a string, got 7"),
    (validate.usb_busid, "", "busid must not be empty"),
    (validate.usb_busid, "1-\x01", "invalid busid '1-\\x01': only printable ASCII is allowed"),
    (validate.usb_busid, "1-\u00e9", "invalid busid '1-\u00e9': only printable ASCII is allowed"),
    (validate.usb_busid, "1" * 32, "invalid busid '%s': longer than 31 characters" % ("1" * 32)),
    (validate.usb_busid, "1-0", "invalid busid '1-0': expected <bus>-<port>[.<port>...], e.g. 1-1.2"),
    (validate.vudc_busid, "usbip-vudc.x",
     "invalid device-mode busid 'usbip-vudc.x': expected usbip-vudc.<N>"),
    (validate.busid, "1-", "invalid busid '1-': expected <bus>-<port>[.<port>...] or usbip-vudc.<N>"),
])
def test_a_refused_busid_says_why_in_one_line(check, value, message):
    assert refusal(check, value) == message


# -- numbers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    (True, "invalid count True"),
    (1.5, "invalid count 1.5"),
    ("-1", "invalid count '-1': expected a decimal number"),
    ("\u0661", "invalid count '\u0661': expected a decimal number"),  # a digit, but not an ASCII one
    (11, "invalid count 11: must be between 2 and 10"),
    ("1", "invalid count 1: must be between 2 and 10"),
])
def test_a_refused_integer_says_why_in_one_line(value, message):
    assert refusal(validate.integer, value, "count", 2, 10) == message


@pytest.mark.parametrize("value", [1, 80, "3240", 65535])
def test_tcp_port_accepts_1_to_65535(value):
    assert validate.tcp_port(value) == int(value)


@pytest.mark.parametrize("value, message", [
    (0, "invalid TCP port 0: must be between 1 and 65535"),
    (65536, "invalid TCP port 65536: must be between 1 and 65535"),
    ("http", "invalid TCP port 'http': expected a decimal number"),
    (None, "invalid TCP port None"),
])
def test_tcp_port_refuses_the_rest(value, message):
    assert refusal(validate.tcp_port, value) == message


# -- host -----------------------------------------------------------------------------------------
def test_a_host_name_of_253_characters_is_accepted():
    assert validate.host(LONGEST_NAME) == LONGEST_NAME


@pytest.mark.parametrize("value", [
    LONGEST_NAME + "e",  # 254 characters
    "",
    "server\u00e9.example",  # printable, not ASCII
    "server\x7f",  # ASCII, not printable
    "server one",
    7,
])
def test_a_refused_host_gets_the_remote_host_message(value):
    assert refusal(validate.host, value) == "invalid remote host %r: a host name or an address is expected" % (value,)


def test_a_host_message_names_what_the_caller_checks():
    assert refusal(validate.host, "", "server") == "invalid server '': a host name or an address is expected"


# -- certificate names ----------------------------------------------------------------------------
@pytest.mark.parametrize("value, normalized", [
    ("ip:2001:DB8::1", "ip:2001:db8::1"),  # the address is everything after the first colon
    ("2001:db8:0::1", "ip:2001:db8::1"),
    ("ip:10.0.0.5", "ip:10.0.0.5"),
    ("Host.Example.", "dns:host.example"),  # one trailing dot (the root) is dropped
    ("FAX.", "dns:fax"),  # and nothing else from the end
    ("dns:my-host_1.*.example", "dns:my-host_1.*.example"),
    ("dns:" + LONGEST_NAME, "dns:" + LONGEST_NAME),  # 257 characters with the kind
    (LONGEST_NAME, "dns:" + LONGEST_NAME),
    ("x" * 63 + ".example", "dns:" + "x" * 63 + ".example"),
])
def test_peer_names_are_normalized(value, normalized):
    assert validate.peer_name(value) == normalized


FORM = "invalid certificate name %r: expected dns:NAME, ip:ADDRESS or a bare name or address"
NOT_DNS = "invalid certificate name %r: not a DNS name"


@pytest.mark.parametrize("value, message", [
    ("", FORM),
    (7, FORM),
    ("a b", FORM),
    ("h\u00e9.example", FORM),  # printable, not ASCII: refused before the DNS check (where it is alphanumeric)
    ("host\x01", FORM),
    ("dns:" + LONGEST_NAME + "e", FORM),  # 258 characters
    ("ip:host.example", "invalid certificate name %r: not an IP address"),
    (LONGEST_NAME + "e", NOT_DNS),  # 254 characters, no kind
    ("bad!name", NOT_DNS),
    ("x" * 64 + ".example", NOT_DNS),
    ("a..example", NOT_DNS),
    ("dns:.", NOT_DNS),
])
def test_a_refused_peer_name_says_why_in_one_line(value, message):
    assert refusal(validate.peer_name, value) == message % (value,)


def test_a_peer_name_message_names_what_the_caller_checks():
    assert refusal(validate.peer_name, "ip:x", "allow_names entry") == \
        "invalid allow_names entry 'ip:x': not an IP address"
