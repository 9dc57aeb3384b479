# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema of ``usbipd.yml`` and ``attachments.yml``, and their typed values.

Both files are written by the roles but also by hand, and a daemon that
meets a wrong value must say which key is wrong, once, before it probes a
kernel module or binds a socket: a traceback, a silently ignored section or
"usbip-host is not loaded" for a typo in ``allow`` all send the operator
looking in the wrong place. So every value is checked here, in one pass over
the document, and the result is a frozen, typed configuration that the
commands trust. Every error is one :class:`InvalidArgument` line that starts
with the key's path (``exports[2].match.vendor: ...``), so that
``--check-config`` and a failed start print the same thing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar, Union

from . import validate
from .daemon.exports import ExportRule
from .errors import InvalidArgument
from .matching import Match, port_path_criterion, text_criterion, usb_id
from .protocol.constants import USBIP_PORT, USBIP_TLS_PORT

T = TypeVar("T")
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: Seconds: the bound of every duration in the files. Longer than an hour is a typo, not a policy.
SECONDS_MAX = 3600.0
MODES = ("host", "device")


# -- the typed configurations ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerTls:
    """``tls:`` of usbipd.yml: always complete (a certificate, its key and the clients' CA)."""

    cert: str
    key: str
    ca: str
    port: int = USBIP_TLS_PORT
    #: Client certificate names admitted, normalized by :func:`usbip.validate.peer_name` (``dns:…``, ``ip:…``).
    allow_names: Tuple[str, ...] = ()
    only: bool = False
    #: Handshakes in progress at once; a TLS connection beyond them is refused before its ClientHello is read.
    max_handshakes: int = 64


@dataclasses.dataclass(frozen=True)
class UsbipdConfig:
    """usbipd.yml; ``None`` and empty tuples mean "not set": the command line or the default decides."""

    port: Optional[int] = None
    listen: Tuple[str, ...] = ()
    allow: Tuple[Network, ...] = ()
    modes: Tuple[str, ...] = ("host",)
    read_timeout: float = 10.0
    max_connections: int = 512
    max_per_client: int = 64
    #: ``max_per_client`` counts connections per client network of these prefix lengths: one host
    #: for IPv4, one /64 (what a single IPv6 site or host is usually given) for IPv6.
    client_prefix_ipv4: int = 32
    client_prefix_ipv6: int = 64
    exports: Tuple[ExportRule, ...] = ()
    tls: Optional[ServerTls] = None
    #: The account the network-facing process runs as when usbipd starts as root (privilege
    #: separation); ``None``: ``usbip`` if that account exists, else ``nobody``.
    user: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Declared:
    """One declared attachment: a server and a device by busid or by match (vendor, product, port path).

    With ``all_devices`` (``all: true`` in the file) it declares every device of
    the server that ``match`` takes, or every device the server offers without
    a match, those that appear later included.
    """

    server: str
    port: int
    busid: Optional[str] = None
    match: Optional[Match] = None
    #: Import inside TLS with the configuration's ``tls`` certificates; the name the server's
    #: certificate must carry (default: ``server``).
    tls: bool = False
    server_name: Optional[str] = None
    all_devices: bool = False

    def __str__(self) -> str:
        if self.all_devices:
            what = "all" + (" %s" % self.match if self.match is not None else "")
        else:
            what = str(self.busid or self.match)
        return "%s%s:%d/%s" % ("tls://" if self.tls else "", self.server, self.port, what)


@dataclasses.dataclass(frozen=True)
class ClientTls:
    """``tls:`` of attachments.yml: the client's certificate, its key and the servers' CA."""

    ca: str
    cert: str
    key: str

    def paths(self) -> Dict[str, str]:
        return {"ca": self.ca, "cert": self.cert, "key": self.key}


@dataclasses.dataclass(frozen=True)
class AttachdConfig:
    interval: float = 2.0
    retry_initial: float = 1.0
    retry_max: float = 8.0
    #: Seconds one attempt (connect, handshake, exchange with the server) may take in all.
    timeout: float = 20.0
    tls: Optional[ClientTls] = None
    attachments: Tuple[Declared, ...] = ()


# -- primitive checks, each naming its key ---------------------------------------


def _fail(path: str, expected: str, value: object) -> InvalidArgument:
    return InvalidArgument("%s: expected %s, got %s" % (path, expected, _show(value)))


def _show(value: object) -> str:
    """A short, one-line rendering of an offending value."""
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def _checked(path: str, check: Callable[[], T]) -> T:
    """Run a validate/matching check; its message (one line already) gets the key path in front."""
    try:
        return check()
    except InvalidArgument as err:
        raise InvalidArgument("%s: %s" % (path, str(err).replace("\n", " "))) from None


def _mapping(value: object, path: str, known: Tuple[str, ...], what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path or "the document", "%s of %s" % (what, ", ".join(known)) if not path else what, value)
    for key in value:
        if not isinstance(key, str) or key not in known:
            raise InvalidArgument("%sunknown key %s (expected one of: %s)"
                                  % (path + ": " if path else "", _show(key), ", ".join(known)))
    return value


def _list(value: object, path: str, what: str) -> list:
    if not isinstance(value, list):
        raise _fail(path, what, value)
    return value


def _seconds(value: object, path: str) -> float:
    """A finite duration in (0, 3600]: a number, or a numeric string as a template may render it."""
    expected = "a number of seconds greater than 0 and at most %d" % SECONDS_MAX
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _fail(path, expected, value) from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise _fail(path, expected, value)
    try:
        return validate.seconds(number, path, 0.0, SECONDS_MAX)
    except InvalidArgument:
        raise _fail(path, expected, value) from None


def _integer(value: object, path: str, low: int, high: int) -> int:
    try:
        return validate.integer(value, path, low, high)
    except InvalidArgument:
        raise _fail(path, "an integer from %d to %d" % (low, high), value) from None


def _port(value: object, path: str) -> int:
    return _integer(value, path, 1, 65535)


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def _text(value: object, path: str, what: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise _fail(path, what, value)
    return value


# -- usbipd.yml ------------------------------------------------------------------

USBIPD_KEYS = ("port", "listen", "allow", "modes", "read_timeout", "max_connections", "max_per_client",
               "client_prefix", "exports", "tls", "user")
SERVER_TLS_KEYS = ("cert", "key", "ca", "port", "allow_names", "only", "max_handshakes")
CLIENT_PREFIX_KEYS = ("ipv4", "ipv6")
EXPORT_KEYS = ("busid", "match")
EXPORT_MATCH_KEYS = ("vendor", "product", "serial", "port_path")


def listen_address(value: object, path: str = "listen") -> str:
    """An address to bind: an IPv4 or IPv6 address (names are not resolved by a daemon at start)."""
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else "-"))
    except ValueError:
        raise _fail(path, "an IPv4 or IPv6 address", value) from None


def network(value: object, path: str = "allow") -> Network:
    """A client network in CIDR notation (host bits are ignored: ``10.0.0.1/8`` is ``10.0.0.0/8``)."""
    try:
        return ipaddress.ip_network(value if isinstance(value, str) else "-", strict=False)
    except ValueError:
        raise _fail(path, "an IPv4 or IPv6 network such as 10.0.0.0/8", value) from None


def _export(value: object, path: str) -> ExportRule:
    what = "a rule with busid or match"
    entry = _mapping(value, path, EXPORT_KEYS, what)
    if len(entry) != 1:
        raise _fail(path, "exactly one of busid and match", value)
    if "busid" in entry:
        return ExportRule(busid=_checked(path + ".busid", lambda: validate.usb_busid(entry["busid"])))
    return ExportRule(match=_match(entry["match"], path + ".match", EXPORT_MATCH_KEYS))


def _match(value: object, path: str, known: Tuple[str, ...]) -> Match:
    criteria = _mapping(value, path, known, "a mapping of %s" % ", ".join(known))
    if not any(criteria.get(key) is not None for key in known):
        raise _fail(path, "at least one of %s" % ", ".join(known), value)
    checks: Dict[str, Callable[[object], object]] = {
        "vendor": _usb_id, "product": _usb_id, "serial": lambda v: text_criterion(v, "serial"),
        "port_path": port_path_criterion}
    found = {}
    for key in known:
        if criteria.get(key) is not None:
            found[key] = _checked("%s.%s" % (path, key), lambda key=key: checks[key](criteria[key]))
    return Match(**found)


def _usb_id(value: object) -> int:
    try:
        return usb_id(value, "USB ID")
    except InvalidArgument:
        raise InvalidArgument("expected a 4-digit hex USB ID such as '1d6b' (or an integer up to 0xffff), got %s"
                              % _show(value)) from None


def _server_tls(value: object, plain_port: Optional[int]) -> ServerTls:
    section = _mapping(value, "tls", SERVER_TLS_KEYS,
                       "a mapping with cert, key and ca (and optionally port, allow_names, only)")
    missing = [key for key in ("cert", "key", "ca") if key not in section]
    if missing:
        raise InvalidArgument("tls.%s: required: TLS needs cert, key and ca (paths to PEM files)" % missing[0])
    paths = {key: _text(section[key], "tls." + key, "a path to a PEM file") for key in ("cert", "key", "ca")}
    port = _port(section["port"], "tls.port") if "port" in section else USBIP_TLS_PORT
    names = tuple(_checked("tls.allow_names[%d]" % i, lambda name=name: validate.peer_name(name))
                  for i, name in enumerate(_list(section.get("allow_names", []), "tls.allow_names",
                                                 "a list of certificate names")))
    only = _boolean(section["only"], "tls.only") if "only" in section else False
    if not only and port == (USBIP_PORT if plain_port is None else plain_port):
        raise InvalidArgument("tls.port: expected a port other than the plain USB/IP port, got %d" % port)
    extra = {}
    if "max_handshakes" in section:
        extra["max_handshakes"] = _integer(section["max_handshakes"], "tls.max_handshakes", 1, 4096)
    return ServerTls(port=port, allow_names=names, only=only, **paths, **extra)


def user_name(value: object, path: str = "user") -> str:
    """A local account name as useradd accepts it (looked up when the daemon starts, not here)."""
    if not isinstance(value, str) or not 0 < len(value) <= 32 or not value.isascii() \
            or not all(c.isalnum() or c in "_.-" for c in value) or value[0] == "-" or value.isdigit():
        raise _fail(path, "an account name such as usbip", value)
    if value == "root":
        raise _fail(path, "an unprivileged account (not root)", value)
    return value


def parse_usbipd(data: object) -> UsbipdConfig:
    """usbipd.yml as a typed configuration; the first wrong value raises :class:`InvalidArgument`."""
    if data is None:
        data = {}
    doc = _mapping(data, "", USBIPD_KEYS, "a mapping")
    values: Dict[str, Any] = {}
    if "port" in doc:
        values["port"] = _port(doc["port"], "port")
    if "listen" in doc and doc["listen"] is not None:
        values["listen"] = tuple(listen_address(a, "listen[%d]" % i)
                                 for i, a in enumerate(_list(doc["listen"], "listen", "a list of addresses")))
    if "allow" in doc and doc["allow"] is not None:
        values["allow"] = tuple(network(a, "allow[%d]" % i)
                                for i, a in enumerate(_list(doc["allow"], "allow", "a list of networks")))
    if "modes" in doc:
        modes = _list(doc["modes"], "modes", "a non-empty list of host and/or device")
        if not modes:
            raise _fail("modes", "a non-empty list of host and/or device", modes)
        for i, mode in enumerate(modes):
            if mode not in MODES:
                raise _fail("modes[%d]" % i, "host or device", mode)
        values["modes"] = tuple(m for m in MODES if m in modes)
    if "read_timeout" in doc:
        values["read_timeout"] = _seconds(doc["read_timeout"], "read_timeout")
    for key in ("max_connections", "max_per_client"):
        if key in doc:
            values[key] = _integer(doc[key], key, 1, 65535)
    if "client_prefix" in doc and doc["client_prefix"] is not None:
        prefix = _mapping(doc["client_prefix"], "client_prefix", CLIENT_PREFIX_KEYS,
                          "a mapping of ipv4 and ipv6 prefix lengths")
        for key, bits in (("ipv4", 32), ("ipv6", 128)):
            if key in prefix:
                values["client_prefix_" + key] = _integer(prefix[key], "client_prefix." + key, 1, bits)
    if "user" in doc and doc["user"] is not None:
        values["user"] = user_name(doc["user"])
    if "exports" in doc and doc["exports"] is not None:
        rules = _list(doc["exports"], "exports", "a list of export rules")
        values["exports"] = tuple(_export(rule, "exports[%d]" % i) for i, rule in enumerate(rules))
    if values.get("exports") and "host" not in values.get("modes", ("host",)):
        raise InvalidArgument("exports: export rules bind host-mode devices, but modes has no host")
    if "tls" in doc:
        values["tls"] = _server_tls(doc["tls"], values.get("port"))
    return UsbipdConfig(**values)


# -- attachments.yml -------------------------------------------------------------

ATTACHD_KEYS = ("interval", "retry", "timeout", "tls", "attachments")
RETRY_KEYS = ("initial", "max")
CLIENT_TLS_KEYS = ("ca", "cert", "key")
ATTACHMENT_KEYS = ("server", "port", "busid", "match", "tls", "server_name", "all")
#: What a server's device list can answer: the IDs and the port path (from the device's sysfs path), no serial.
ATTACHMENT_MATCH_KEYS = ("vendor", "product", "port_path")


def _attachment(value: object, path: str, tls: Optional[ClientTls]) -> Declared:
    entry = _mapping(value, path, ATTACHMENT_KEYS, "a mapping with server, and busid or match")
    if "server" not in entry:
        raise InvalidArgument("%s.server: required: the server's name or address" % path)
    server = _checked(path + ".server", lambda: validate.host(entry["server"], "server"))
    every = _boolean(entry["all"], path + ".all") if "all" in entry else False
    if every:
        if "busid" in entry:
            raise InvalidArgument("%s.all: true declares every device a match takes (or every device the server "
                                  "offers, without a match): not with busid" % path)
    elif ("busid" in entry) == ("match" in entry):
        raise _fail(path, "exactly one of busid and match", value)
    secure = _boolean(entry["tls"], path + ".tls") if "tls" in entry else False
    if secure and tls is None:
        raise InvalidArgument("%s.tls: true needs the top-level tls section (ca, cert, key)" % path)
    port = _port(entry["port"], path + ".port") if "port" in entry else (USBIP_TLS_PORT if secure else USBIP_PORT)
    server_name = None
    if "server_name" in entry:
        if not secure:
            raise InvalidArgument("%s.server_name: only with tls: true (it names the server's certificate)" % path)
        server_name = _checked(path + ".server_name", lambda: validate.host(entry["server_name"], "server_name"))
    if "busid" in entry:
        busid = _checked(path + ".busid", lambda: validate.busid(entry["busid"]))
        return Declared(server=server, port=port, busid=busid, tls=secure, server_name=server_name)
    match = _remote_match(entry["match"], path + ".match") if "match" in entry else None
    return Declared(server=server, port=port, match=match, tls=secure, server_name=server_name, all_devices=every)


def _remote_match(value: object, path: str) -> Match:
    """A match against a server's device list; a serial gets its own line: it is not on the wire."""
    if isinstance(value, dict) and "serial" in value:
        raise InvalidArgument("%s.serial: a server's device list carries no serial number; match a remote device by "
                              "%s" % (path, ", ".join(ATTACHMENT_MATCH_KEYS)))
    return _match(value, path, ATTACHMENT_MATCH_KEYS)


def parse_attachd(data: object) -> AttachdConfig:
    """attachments.yml as a typed configuration; the first wrong value raises :class:`InvalidArgument`."""
    if data is None:
        data = {}
    doc = _mapping(data, "", ATTACHD_KEYS, "a mapping")
    values: Dict[str, Any] = {}
    for key in ("interval", "timeout"):
        if key in doc:
            values[key] = _seconds(doc[key], key)
    if "retry" in doc and doc["retry"] is not None:
        retry = _mapping(doc["retry"], "retry", RETRY_KEYS, "a mapping of initial and max (seconds)")
        for key in RETRY_KEYS:
            if key in retry:
                values["retry_" + key] = _seconds(retry[key], "retry." + key)
        initial = values.get("retry_initial", AttachdConfig.retry_initial)
        maximum = values.get("retry_max", AttachdConfig.retry_max)
        if maximum < initial:
            raise InvalidArgument("retry.max: expected at least retry.initial (%g), got %g" % (initial, maximum))
    tls = None
    if "tls" in doc:
        section = _mapping(doc["tls"], "tls", CLIENT_TLS_KEYS, "a mapping of ca, cert and key (paths)")
        for key in CLIENT_TLS_KEYS:
            if key not in section:
                raise InvalidArgument("tls.%s: required: TLS needs ca, cert and key (paths to PEM files)" % key)
        tls = values["tls"] = ClientTls(**{key: _text(section[key], "tls." + key, "a path to a PEM file")
                                           for key in CLIENT_TLS_KEYS})
    if "attachments" in doc and doc["attachments"] is not None:
        entries = _list(doc["attachments"], "attachments", "a list of attachments")
        values["attachments"] = tuple(_attachment(e, "attachments[%d]" % i, tls) for i, e in enumerate(entries))
    return AttachdConfig(**values)


# -- the YAML files ----------------------------------------------------------------


def load_yaml(path: str) -> object:
    """The document in ``path``; an unreadable file or bad YAML is one :class:`InvalidArgument` line."""
    import yaml  # noqa: PLC0415 - only the daemons read files

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as err:
        raise InvalidArgument("cannot read %s: %s" % (path, err.strerror or err)) from None
    except UnicodeDecodeError as err:
        raise InvalidArgument("%s is not UTF-8 text: %s" % (path, err.reason)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise InvalidArgument("%s is not valid YAML%s: %s" % (path, where, " ".join(str(problem).split()))) from None


def load(path: str, parse: Callable[[object], T]) -> T:
    """Read and validate a configuration file; errors are one line that names the file and the key."""
    data = load_yaml(path)
    try:
        return parse(data)
    except InvalidArgument as err:
        raise InvalidArgument("%s: %s" % (path, err)) from None
