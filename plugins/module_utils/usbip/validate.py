# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of every name and number that could reach a kernel path.

Busids arrive from the network (OP_REQ_IMPORT), the command line and Ansible
parameters, and are joined into sysfs paths and written to driver files. They
are checked here, before any sysfs access, so that ``../../x`` or a 32-byte
name gets a clear error and touches nothing.
"""

from __future__ import annotations

import ipaddress
import math
import re

from .errors import InvalidArgument

#: Busids fit the wire's 32-byte field with its terminating NUL.
BUSID_MAX = 31

# A USB device's busid: bus number, then the hub port chain ("3-1.4.2").
# USB allows at most 7 tiers of hubs below the root, so at most 6 dots.
_USB_BUSID = re.compile(r"[1-9][0-9]{0,2}-[1-9][0-9]{0,2}(\.[1-9][0-9]{0,2}){0,6}")
# A device-mode (usbip-vudc) instance name.
_VUDC_BUSID = re.compile(r"usbip-vudc\.(0|[1-9][0-9]{0,3})")


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument("%s must be a string, got %r" % (what, value))
    if not value:
        raise InvalidArgument("%s must not be empty" % what)
    if not value.isascii() or not value.isprintable():
        raise InvalidArgument("invalid %s %r: only printable ASCII is allowed" % (what, value))
    if len(value) > BUSID_MAX:
        raise InvalidArgument("invalid %s %r: longer than %d characters" % (what, value, BUSID_MAX))
    return value


def usb_busid(value: object) -> str:
    """A host-mode busid such as ``1-1`` or ``17-1.2``."""
    text = _check_text(value, "busid")
    if not _USB_BUSID.fullmatch(text):
        raise InvalidArgument("invalid busid %r: expected <bus>-<port>[.<port>...], e.g. 1-1.2" % text)
    return text


def vudc_busid(value: object) -> str:
    """A device-mode busid: the name of a usbip-vudc instance."""
    text = _check_text(value, "busid")
    if not _VUDC_BUSID.fullmatch(text):
        raise InvalidArgument("invalid device-mode busid %r: expected usbip-vudc.<N>" % text)
    return text


def busid(value: object) -> str:
    """Either kind of busid, for places that serve both modes."""
    text = _check_text(value, "busid")
    if not (_USB_BUSID.fullmatch(text) or _VUDC_BUSID.fullmatch(text)):
        raise InvalidArgument("invalid busid %r: expected <bus>-<port>[.<port>...] or usbip-vudc.<N>" % text)
    return text


def integer(value: object, what: str, low: int, high: int) -> int:
    """An integer in ``[low, high]``; digit strings are accepted, signs are not."""
    if isinstance(value, bool):
        raise InvalidArgument("invalid %s %r" % (what, value))
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise InvalidArgument("invalid %s %r: expected a decimal number" % (what, value))
        value = int(value)
    if not isinstance(value, int):
        raise InvalidArgument("invalid %s %r" % (what, value))
    if not low <= value <= high:
        raise InvalidArgument("invalid %s %d: must be between %d and %d" % (what, value, low, high))
    return value


def seconds(value: object, what: str, low: float, high: float) -> float:
    """A finite duration in ``(low, high]``: an int or a float, never a bool, NaN or infinity.

    An infinite timeout removes the bound it exists for, and NaN compares
    false with everything, so both are refused rather than passed on.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument("invalid %s %r: expected a number of seconds" % (what, value))
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if math.isnan(number) or not low < number <= high:
        raise InvalidArgument("invalid %s %r: must be greater than %g and at most %g" % (what, value, low, high))
    return number


def tcp_port(value: object) -> int:
    return integer(value, "TCP port", 1, 65535)


#: The longest DNS name; an address (even IPv6 with a zone) is shorter.
HOST_MAX = 253


def host(value: object, what: str = "remote host") -> str:
    """A server's name or address as given to attach and recorded in ``port<N>``: one printable ASCII token.

    Not resolved here: a name that does not resolve fails when connecting,
    with the resolver's reason.
    """
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() \
            or any(c.isspace() for c in value) or len(value) > HOST_MAX:
        raise InvalidArgument("invalid %s %r: a host name or an address is expected" % (what, value))
    return value


#: The kinds of certificate name ``allow_names`` compares (RFC 6125): DNS names and IP addresses.
PEER_NAME_KINDS = ("dns", "ip")


def peer_name(value: object, what: str = "certificate name") -> str:
    """A client certificate name to admit, normalized to ``dns:<lower-case name>`` or ``ip:<address>``.

    Written ``dns:host.example``, ``ip:10.0.0.5`` or bare; a bare value is an
    IP address when it parses as one and a DNS name otherwise. DNS names
    compare case-insensitively (RFC 4343), so they are kept in lower case;
    addresses compare as addresses, so ``ip:2001:DB8::1`` and
    ``ip:2001:db8:0::1`` are one name.
    """
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() \
            or any(c.isspace() for c in value) or len(value) > HOST_MAX + 4:
        raise InvalidArgument("invalid %s %r: expected dns:NAME, ip:ADDRESS or a bare name or address"
                              % (what, value))
    kind, _sep, rest = value.partition(":")
    if kind in PEER_NAME_KINDS and rest:
        written = kind
    else:
        written, rest = None, value
    if written in ("ip", None):
        try:
            return "ip:%s" % ipaddress.ip_address(rest)
        except ValueError:
            if written == "ip":
                raise InvalidArgument("invalid %s %r: not an IP address" % (what, value)) from None
    name = rest.rstrip(".").lower()
    if not name or len(name) > HOST_MAX or not all(
            label and len(label) <= 63 and all(c.isalnum() or c in "-_*" for c in label)
            for label in name.split(".")):
        raise InvalidArgument("invalid %s %r: not a DNS name" % (what, value))
    return "dns:%s" % name
