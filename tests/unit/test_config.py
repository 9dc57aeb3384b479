# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbipd.yml and attachments.yml: the schema, its typed results and its one-line errors (usbip/config.py).

The examples pin the findings of the configuration review; the property tests
generate documents from the schema's keys with valid and invalid values (and
unknown keys) and hold both validators to an oracle: an accepted document
round-trips to the typed configuration, a refused one raises
:class:`InvalidArgument` with one line that starts with a key path of the
schema.
"""

from __future__ import annotations

import ipaddress
import math
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usbip import config, validate
from usbip.cli.common import EXIT_USAGE, Reporter
from usbip.config import AttachdConfig, ClientTls, Declared, ServerTls, UsbipdConfig, parse_attachd, parse_usbipd
from usbip.daemon.exports import ExportRule
from usbip.errors import InvalidArgument
from usbip.matching import Match

#: A key path of the schema at the start of a message (``exports[2].match.vendor:``), or an unknown key.
_KEY = r"[a-z_][a-z0-9_]*(?:\[\d+\])?"
KEY_PATH = re.compile(r"^(?:%s(?:\.%s)*: |unknown key |the document: )" % (_KEY, _KEY))


def refused(parse, data) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse(data)
    message = str(info.value)
    assert "\n" not in message and KEY_PATH.match(message), message
    return message


# -- the findings ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", [1], {"s": 1}, None, True])
def test_a_read_timeout_that_is_no_number_is_refused_naming_the_key(value):
    """Before: float("abc") and float([1]) escaped as tracebacks."""
    message = refused(parse_usbipd, {"read_timeout": value})
    assert message.startswith("read_timeout: expected a number of seconds")


@pytest.mark.parametrize("value", [-5, 0, 0.0, math.inf, -math.inf, math.nan, 3601, 10 ** 400])
def test_a_read_timeout_out_of_range_is_refused(value):
    """Before: -5, .inf and .nan were accepted, and .inf removed the slow-client bound."""
    assert refused(parse_usbipd, {"read_timeout": value}).startswith("read_timeout: ")


@pytest.mark.parametrize("text", ["read_timeout: .inf", "read_timeout: .nan", "read_timeout: -5"])
def test_yaml_spellings_of_unbounded_timeouts_are_refused(text):
    refused(parse_usbipd, yaml.safe_load(text))


@pytest.mark.parametrize("value", [10, 2.5, "10", "2.5", 3600])
def test_a_read_timeout_is_a_finite_number_of_seconds(value):
    assert parse_usbipd({"read_timeout": value}).read_timeout == float(value)


@pytest.mark.parametrize("tls", [None, {}, {"port": 3242}, {"only": True}, {"cert": "/c", "key": "/k"}])
def test_a_tls_section_without_its_certificates_is_refused(tls):
    """Before: ``tls:`` with no certificate was silently ignored (the daemon served plain USB/IP only)."""
    assert refused(parse_usbipd, {"tls": tls}).startswith("tls")


def test_a_complete_tls_section_is_typed():
    parsed = parse_usbipd({"port": 3240, "tls": {"cert": "/c", "key": "/k", "ca": "/a", "port": 3241, "only": False,
                                                 "allow_names": ["client1"]}})
    assert parsed.tls == ServerTls(cert="/c", key="/k", ca="/a", port=3241, allow_names=("dns:client1",), only=False)


def test_the_tls_port_differs_from_the_plain_port_unless_tls_only():
    assert refused(parse_usbipd, {"port": 4000, "tls": {"cert": "/c", "key": "/k", "ca": "/a", "port": 4000}}) \
        .startswith("tls.port: ")
    assert parse_usbipd({"tls": {"cert": "/c", "key": "/k", "ca": "/a", "port": 3240, "only": True}}).tls.port == 3240


@pytest.mark.parametrize("data, key", [
    ({"allow": ["10.0.0.300/8"]}, "allow[0]: "),
    ({"allow": "10.0.0.0/8"}, "allow: "),
    ({"listen": ["usbip.example"]}, "listen[0]: "),
    ({"listen": ["10.0.0.1", 7]}, "listen[1]: "),
])
def test_listen_and_allow_are_checked_in_the_configuration_step(data, key):
    """Before: these were checked after the kernel probe, so the error said "usbip-host is not loaded"."""
    assert refused(parse_usbipd, data).startswith(key)


def test_networks_and_addresses_are_typed():
    parsed = parse_usbipd({"listen": ["10.76.0.1", "fd00::1"], "allow": ["10.76.0.5/16", "fd00::/64"]})
    assert parsed.listen == ("10.76.0.1", "fd00::1")
    assert parsed.allow == (ipaddress.ip_network("10.76.0.0/16"), ipaddress.ip_network("fd00::/64"))


@pytest.mark.parametrize("data, expected", [
    ({"prot": 3240}, "unknown key 'prot' (expected one of: port, listen, allow, modes, read_timeout,"),
    ({"exports": [{"busid": "1-1"}, {"busid": "1-2"}, {"match": {"vendor": "zz"}}]},
     "exports[2].match.vendor: expected a 4-digit hex USB ID"),
    ({"exports": [{"match": {"vendor": "1d6b", "colour": "red"}}]}, "exports[0].match: unknown key 'colour'"),
    ({"exports": [{"busid": "../x"}]}, "exports[0].busid: invalid busid '../x'"),
    ({"exports": [{"busid": "1-1", "match": {"vendor": "1d6b"}}]}, "exports[0]: expected exactly one of busid"),
    ({"exports": [{"match": {}}]}, "exports[0].match: expected at least one of vendor"),
    ({"modes": []}, "modes: expected a non-empty list"),
    ({"modes": ["device"], "exports": [{"busid": "1-1"}]}, "exports: export rules bind host-mode devices"),
    ({"modes": ["host", "hots"]}, "modes[1]: expected host or device, got 'hots'"),
    ({"port": "abc"}, "port: expected an integer from 1 to 65535, got 'abc'"),
    ({"max_connections": 0}, "max_connections: expected an integer from 1 to 65535, got 0"),
    ({"max_per_client": 1.5}, "max_per_client: expected an integer"),
    ({"tls": {"cert": "/c", "key": "/k", "ca": "/a", "only": "yes"}}, "tls.only: expected true or false"),
    ([1, 2], "the document: expected a mapping"),
])
def test_usbipd_errors_name_the_key_and_what_is_expected(data, expected):
    assert refused(parse_usbipd, data).startswith(expected)


def test_what_the_server_role_renders_is_accepted():
    """usbip_server__config and usbip_server__tls_config as ansible-core renders them (native types)."""
    parsed = parse_usbipd({
        "port": 3240, "listen": [], "allow": [], "modes": ["host", "device"], "read_timeout": 10,
        "max_connections": 512, "max_per_client": 64,
        "exports": [{"busid": "1-1"}, {"match": {"vendor": "1209", "product": "0001"}},
                    {"match": {"serial": "A1", "port_path": "dummy_hcd.0-1"}}],
        "tls": {"port": 3241, "only": False, "cert": "/etc/usbip/tls/server.crt", "key": "/etc/usbip/tls/server.key",
                "ca": "/etc/usbip/tls/ca.crt", "allow_names": []},
    })
    assert parsed.modes == ("host", "device") and parsed.read_timeout == 10.0
    assert parsed.exports == (ExportRule(busid="1-1"), ExportRule(match=Match(vendor=0x1209, product=0x0001)),
                              ExportRule(match=Match(serial="A1", port_path="dummy_hcd.0-1")))
    # The same values as strings, as an older template engine would render them.
    assert parse_usbipd({"port": "3240", "read_timeout": "10", "max_connections": "512"}) == UsbipdConfig(
        port=3240, read_timeout=10.0, max_connections=512)


def test_an_empty_usbipd_document_is_the_defaults():
    assert parse_usbipd(None) == parse_usbipd({}) == UsbipdConfig()


# -- attachments.yml -------------------------------------------------------------


@pytest.mark.parametrize("data, expected", [
    ({"interval": "abc"}, "interval: expected a number of seconds"),
    ({"interval": math.inf}, "interval: expected a number of seconds"),
    ({"retry": {"initial": -1}}, "retry.initial: expected a number of seconds"),
    ({"retry": {"initial": 5, "max": 1}}, "retry.max: expected at least retry.initial"),
    ({"retry": {"forever": True}}, "retry: unknown key 'forever' (expected one of: initial, max)"),
    ({"tls": {}}, "tls.ca: required"),
    ({"tls": None}, "tls: expected a mapping"),
    ({"attachments": {}}, "attachments: expected a list"),
    ({"attachments": [{"busid": "1-1"}]}, "attachments[0].server: required"),
    ({"attachments": [{"server": "a b", "busid": "1-1"}]}, "attachments[0].server: invalid server 'a b'"),
    ({"attachments": [{"server": "x", "busid": "1-1", "port": 70000}]}, "attachments[0].port: expected an integer"),
    ({"attachments": [{"server": "x", "busid": "1-1", "tls": True}]}, "attachments[0].tls: true needs the top-level"),
    ({"attachments": [{"server": "x", "busid": "1-1", "server_name": "s"}]}, "attachments[0].server_name: only with"),
    ({"attachments": [{"server": "x", "match": {"vendor": "1d6b", "serial": "A"}}]},
     "attachments[0].match.serial: a server's device list carries no serial number; match a remote device by"
     " vendor, product, port_path"),
    ({"attachments": [{"server": "x", "match": {"product": "zz"}}]},
     "attachments[0].match.product: expected a 4-digit"),
    ({"colour": "red"}, "unknown key 'colour' (expected one of: interval, retry, timeout, tls, attachments)"),
])
def test_attachd_errors_name_the_key_and_what_is_expected(data, expected):
    assert refused(parse_attachd, data).startswith(expected)


def test_what_the_client_role_renders_is_accepted():
    parsed = parse_attachd({
        "interval": 2, "retry": {"initial": 1, "max": 4},
        "tls": {"ca": "/etc/usbip/tls/ca.crt", "cert": "/etc/usbip/tls/client.crt", "key": "/etc/usbip/tls/client.key"},
        "attachments": [{"server": "10.76.0.1", "port": 3241, "tls": True, "server_name": "server1",
                         "busid": "usbip-vudc.0"},
                        {"server": "10.76.0.1", "port": 3240, "match": {"vendor": "1209", "product": "0001"}}],
    })
    assert parsed == AttachdConfig(
        interval=2.0, retry_initial=1.0, retry_max=4.0,
        tls=ClientTls(ca="/etc/usbip/tls/ca.crt", cert="/etc/usbip/tls/client.crt", key="/etc/usbip/tls/client.key"),
        attachments=(Declared("10.76.0.1", 3241, busid="usbip-vudc.0", tls=True, server_name="server1"),
                     Declared("10.76.0.1", 3240, match=Match(vendor=0x1209, product=0x0001))))


def test_an_empty_attachd_document_is_the_defaults():
    assert parse_attachd(None) == parse_attachd({}) == AttachdConfig()


# -- the files -------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("a: [\n", "is not valid YAML (line 2, column 1): "),
    ("port: 1\nport: 2: 3\n", "is not valid YAML (line 2, column"),
    ("\tport: 1\n", "is not valid YAML"),
    ("- 1\n- 2\n", ": the document: expected a mapping"),
])
def test_a_bad_file_is_one_line_naming_the_file(tmp_path, text, expected):
    path = tmp_path / "usbipd.yml"
    path.write_text(text)
    with pytest.raises(InvalidArgument) as info:
        config.load(str(path), parse_usbipd)
    assert str(info.value).startswith(str(path)) and expected in str(info.value) and "\n" not in str(info.value)


def test_an_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(InvalidArgument, match=r"^cannot read .*missing.yml: No such file or directory$"):
        config.load(str(tmp_path / "missing.yml"), parse_attachd)
    (tmp_path / "binary.yml").write_bytes(b"port: \xff\xfe\n")
    with pytest.raises(InvalidArgument) as info:
        config.load(str(tmp_path / "binary.yml"), parse_attachd)
    assert "\n" not in str(info.value)


# -- property: generated documents against an oracle -------------------------------

# Each generator draws (value, expected typed value) for a valid entry, or a value for an invalid one.
_HOSTS = st.sampled_from(["10.76.0.1", "server1", "fd00::1", "usbip.example.org"])
_BUSIDS = st.sampled_from(["1-1", "3-1.4.2", "17-2"])
_USB_IDS = st.sampled_from([("1d6b", 0x1D6B), ("0x1209", 0x1209), (4660, 4660), ("FFFF", 0xFFFF)])
_PATHS = st.sampled_from(["/etc/usbip/tls/a.pem", "b.pem"])


def _seconds_valid():
    return st.one_of(
        st.floats(min_value=0.001, max_value=3600.0).map(lambda f: (f, f)),
        st.integers(min_value=1, max_value=3600).map(lambda i: (i, float(i))),
        st.integers(min_value=1, max_value=3600).map(lambda i: (str(i), float(i))))


_SECONDS_INVALID = st.sampled_from(["abc", [1], {}, None, True, -5, 0, math.inf, -math.inf, math.nan, 3601.5, "inf",
                                    "nan", "-1"])
_INT_INVALID = st.sampled_from([0, -1, 65536, "abc", "-1", 1.5, True, None, [1]])


@st.composite
def _address(draw):
    return str(draw(st.ip_addresses()))


@st.composite
def _network(draw):
    address = draw(st.ip_addresses())
    prefix = draw(st.integers(0, 32 if address.version == 4 else 128))
    text = "%s/%d" % (address, prefix)
    return text, ipaddress.ip_network(text, strict=False)


@st.composite
def _export_valid(draw):
    if draw(st.booleans()):
        busid = draw(_BUSIDS)
        return {"busid": busid}, ExportRule(busid=busid)
    vendor, vendor_id = draw(_USB_IDS)
    doc, criteria = {"vendor": vendor}, {"vendor": vendor_id}
    if draw(st.booleans()):
        product, criteria["product"] = draw(_USB_IDS)
        doc["product"] = product
    if draw(st.booleans()):
        doc["serial"] = criteria["serial"] = draw(st.sampled_from(["A1", "4C530001230905113465"]))
    return {"match": doc}, ExportRule(match=Match(**criteria))


_EXPORT_INVALID = st.sampled_from([{"busid": "../x"}, {"match": {"vendor": "zz"}}, {"busid": "1-1", "match": {}},
                                   {}, "1-1", {"match": {}}, {"match": {"colour": 1}}, {"match": None},
                                   {"match": {"port_path": "x/y"}}])


@st.composite
def _server_tls_valid(draw):
    doc = {"cert": draw(_PATHS), "key": draw(_PATHS), "ca": draw(_PATHS)}
    typed = dict(doc)
    if draw(st.booleans()):
        doc["port"] = typed["port"] = draw(st.integers(3241, 65535))
    if draw(st.booleans()):
        written = {"client1": "dns:client1", "Client2.Example.": "dns:client2.example", "ip:10.0.0.5": "ip:10.0.0.5",
                   "2001:DB8::1": "ip:2001:db8::1", "dns:10.0.0.5": "dns:10.0.0.5"}
        names = draw(st.lists(st.sampled_from(sorted(written)), max_size=2))
        doc["allow_names"], typed["allow_names"] = names, tuple(written[n] for n in names)
    if draw(st.booleans()):
        doc["only"] = typed["only"] = draw(st.booleans())
    if draw(st.booleans()):
        doc["max_handshakes"] = typed["max_handshakes"] = draw(st.integers(1, 4096))
    return doc, ServerTls(**typed)


_SERVER_TLS_INVALID = st.sampled_from([
    None, {}, "yes", {"cert": "/c"}, {"cert": "/c", "key": "/k", "ca": "/a", "port": 0},
    {"cert": "/c", "key": "/k", "ca": "/a", "only": "yes"}, {"cert": "/c", "key": "/k", "ca": "/a", "allow_names": "x"},
    {"cert": "/c", "key": "/k", "ca": "/a", "colour": 1}, {"cert": "", "key": "/k", "ca": "/a"},
    {"cert": "/c", "key": "/k", "ca": "/a", "allow_names": [1]},
    {"cert": "/c", "key": "/k", "ca": "/a", "allow_names": ["ip:host"]},
    {"cert": "/c", "key": "/k", "ca": "/a", "allow_names": ["two words"]},
    {"cert": "/c", "key": "/k", "ca": "/a", "max_handshakes": 0}])

# key: (valid strategy of (value, typed), invalid strategy)
_USBIPD = {
    "port": (st.integers(1, 3000).flatmap(lambda i: st.sampled_from([(i, i), (str(i), i)])), _INT_INVALID),
    "listen": (st.lists(_address(), max_size=3).map(lambda a: (a, tuple(str(ipaddress.ip_address(x)) for x in a))),
               st.sampled_from(["10.0.0.1", ["foo"], [1], ["10.0.0.0/8"], {}])),
    "allow": (st.lists(_network(), max_size=3).map(lambda n: ([pair[0] for pair in n], tuple(pair[1] for pair in n))),
              st.sampled_from(["10.0.0.0/8", ["10.0.0.300/8"], [None], ["x"]])),
    "modes": (st.lists(st.sampled_from(config.MODES), min_size=1, max_size=3)
              .map(lambda m: (m, tuple(x for x in config.MODES if x in m))),
              st.sampled_from([[], ["hots"], "host", None, ["host", 1]])),
    "read_timeout": (_seconds_valid(), _SECONDS_INVALID),
    "max_connections": (st.integers(1, 65535).map(lambda i: (i, i)), _INT_INVALID),
    "max_per_client": (st.integers(1, 65535).map(lambda i: (i, i)), _INT_INVALID),
    "exports": (st.lists(_export_valid(), max_size=3)
                .map(lambda r: ([pair[0] for pair in r], tuple(pair[1] for pair in r))),
                st.one_of(st.sampled_from(["x", {}]),
                          st.tuples(st.lists(_export_valid(), max_size=2), _EXPORT_INVALID)
                          .map(lambda p: [pair[0] for pair in p[0]] + [p[1]]))),
    "tls": (_server_tls_valid(), _SERVER_TLS_INVALID),
    "user": (st.sampled_from(["usbip", "_usbip", "svc-usb.1"]).map(lambda u: (u, u)),
             st.sampled_from(["root", "", "-x", "1000", "a b", 1, ["usbip"]])),
    "client_prefix": (st.fixed_dictionaries({}, optional={"ipv4": st.integers(1, 32), "ipv6": st.integers(1, 128)})
                      .map(lambda d: (d, d)),
                      st.sampled_from([{"ipv4": 0}, {"ipv6": 129}, {"ipv5": 8}, "64", {"ipv4": "x"}])),
}
_UNKNOWN_KEYS = st.sampled_from(["prot", "Port", "read-timeout", "tls_port", "export", "colour", "", 1, None])


@st.composite
def _document(draw, schema):
    """(document, typed values of its valid keys, its invalid keys and unknown keys)."""
    doc, typed, bad = {}, {}, []
    faulty = draw(st.booleans())  # half the documents are clean, so that the round trip is exercised as often
    for key, (valid, invalid) in schema.items():
        choice = draw(st.sampled_from(["absent", "valid", "invalid"] if faulty else ["absent", "valid", "valid"]))
        if choice == "valid":
            doc[key], typed[key] = draw(valid)
        elif choice == "invalid":
            doc[key] = draw(invalid)
            bad.append(key)
    if faulty and (not bad or draw(st.integers(0, 3)) == 0):
        unknown = draw(_UNKNOWN_KEYS)
        doc[unknown] = draw(st.sampled_from([1, "x", None, [1]]))
        bad.append("unknown key %r" % (unknown,))
    keys = list(doc)
    order = draw(st.permutations(keys))
    return {k: doc[k] for k in order}, typed, bad


def _check_refusal(parse, doc, bad) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(doc)
    message = str(info.value)
    assert "\n" not in message and KEY_PATH.match(message), message
    assert any(message.startswith(key) for key in bad), (message, bad)
    assert Reporter("usbipd").failure(info.value) == EXIT_USAGE  # one line on stderr, exit status 2


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document(_USBIPD))
def test_usbipd_documents_round_trip_or_are_refused_naming_a_key(generated):
    doc, typed, bad = generated
    conflict = ["exports: export rules bind host-mode devices"] \
        if typed.get("exports") and "host" not in typed.get("modes", ("host",)) else []
    if bad or conflict:
        # valid export rules beside modes without host are refused as such, whichever bad key comes later
        _check_refusal(parse_usbipd, doc, bad + conflict)
        return
    # ``None`` is "not set" for the lists; the round trip keeps that meaning.
    for kind, bits in typed.pop("client_prefix", {}).items():
        typed["client_prefix_" + kind] = bits
    assert parse_usbipd(doc) == UsbipdConfig(**typed)


@st.composite
def _attachment_valid(draw, secure_allowed):
    server = draw(_HOSTS)
    doc = {"server": server}
    secure = secure_allowed and draw(st.booleans())
    if secure:
        doc["tls"] = True
    elif draw(st.booleans()):
        doc["tls"] = False
    port = 3241 if secure else 3240
    if draw(st.booleans()):
        doc["port"] = port = draw(st.integers(1, 65535))
    server_name = None
    if secure and draw(st.booleans()):
        doc["server_name"] = server_name = draw(_HOSTS)
    if draw(st.booleans()):
        doc["busid"] = busid = draw(st.sampled_from(["1-1", "usbip-vudc.0", "3-1.2"]))
        return doc, Declared(server, port, busid=busid, tls=secure, server_name=server_name)
    vendor, vendor_id = draw(_USB_IDS)
    product, product_id = draw(_USB_IDS)
    doc["match"] = {"vendor": vendor, "product": product}
    return doc, Declared(server, port, match=Match(vendor=vendor_id, product=product_id), tls=secure,
                         server_name=server_name)


_ATTACHMENT_INVALID = st.sampled_from([
    {"server": "a b", "busid": "1-1"}, {"busid": "1-1"}, {"server": "x"}, {"server": "x", "busid": "1-1", "port": 0},
    {"server": "x", "match": {"serial": "A"}}, {"server": "x", "busid": "1-1", "tls": "yes"},
    {"server": "x", "busid": "1-1", "match": {"vendor": "1d6b"}}, {"server": "x", "busid": "../x"}, "x", None,
    {"server": "x", "busid": "1-1", "server_name": "s"}, {"server": 7, "busid": "1-1"}])


@st.composite
def _attachd_document(draw):
    tls_choice = draw(st.sampled_from(["absent", "valid", "invalid"]))
    schema = {
        "interval": (_seconds_valid(), _SECONDS_INVALID),
        "timeout": (_seconds_valid(), _SECONDS_INVALID),
        "retry": (st.tuples(st.floats(0.01, 10.0), st.floats(10.0, 3600.0))
                  .map(lambda r: ({"initial": r[0], "max": r[1]}, (r[0], r[1]))),
                  st.sampled_from([{"initial": 5, "max": 1}, {"forever": True}, "x", {"initial": "abc"},
                                   {"max": math.nan}, {"initial": 0}])),
        "attachments": (st.lists(_attachment_valid(tls_choice == "valid"), max_size=3)
                        .map(lambda a: ([pair[0] for pair in a], tuple(pair[1] for pair in a))),
                        st.one_of(st.sampled_from(["x", {}]),
                                  st.tuples(st.lists(_attachment_valid(False), max_size=2), _ATTACHMENT_INVALID)
                                  .map(lambda p: [pair[0] for pair in p[0]] + [p[1]]))),
    }
    doc, typed, bad = draw(_document(schema))
    if tls_choice == "valid":
        paths = {"ca": draw(_PATHS), "cert": draw(_PATHS), "key": draw(_PATHS)}
        doc["tls"], typed["tls"] = paths, ClientTls(**paths)
    elif tls_choice == "invalid":
        doc["tls"] = draw(st.sampled_from([None, {}, {"ca": "/c"}, "x", {"ca": 1, "cert": "/c", "key": "/k"},
                                           {"ca": "/a", "cert": "/c", "key": "/k", "pem": "/p"}]))
        bad.append("tls")
    if "retry" in typed:
        typed["retry_initial"], typed["retry_max"] = typed.pop("retry")
    return doc, typed, bad


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_attachd_document())
def test_attachd_documents_round_trip_or_are_refused_naming_a_key(generated):
    doc, typed, bad = generated
    if bad:
        _check_refusal(parse_attachd, doc, bad)
        return
    assert parse_attachd(doc) == AttachdConfig(**typed)


# -- validate.seconds, the primitive behind every duration -----------------------------


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, 3600.5, 10 ** 400, True, "1", None])
def test_seconds_refuses_what_is_no_finite_duration_in_range(value):
    with pytest.raises(InvalidArgument, match="^invalid read_timeout "):
        validate.seconds(value, "read_timeout", 0.0, 3600.0)


@pytest.mark.parametrize("value", [0.001, 1, 2.5, 3600])
def test_seconds_accepts_finite_durations_in_range(value):
    assert validate.seconds(value, "read_timeout", 0.0, 3600.0) == float(value)
