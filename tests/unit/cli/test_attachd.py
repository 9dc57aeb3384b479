"""The attach supervisor: re-attaches what is missing, with bounded exponential backoff."""

from __future__ import annotations

import logging

import pytest

from usbip.cli.attachd import Declared, Supervisor, parse_config
from usbip.errors import UsbipError


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_missing_attachment_is_retried_with_capped_backoff(caplog):
    d = Declared("10.76.0.1", 3240, "17-1")
    attached = set()
    attempts = []
    server_up = [False]

    def attach(decl):
        attempts.append(clock.now)
        if not server_up[0]:
            raise UsbipError("cannot connect to 10.76.0.1:3240: Connection refused")
        attached.add(decl)
        return 3

    clock = Clock()
    sup = Supervisor([d], lambda decl: decl in attached, attach, initial=1, maximum=4, clock=clock)
    caplog.set_level(logging.INFO, logger="usbip-attachd")
    for _ in range(40):  # 20 s in 0.5 s steps
        sup.step()
        clock.now += 0.5
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[:4] == [1.0, 2.0, 4.0, 4.0]  # 1, 2, 4, then capped
    assert "attempt 1 failed" in caplog.text and "next in 1 s" in caplog.text
    server_up[0] = True
    before = len(attempts)
    for _ in range(10):
        sup.step()
        clock.now += 0.5
    assert len(attempts) == before + 1  # back within one capped delay, then no more attempts
    assert attached == {d}
    assert "attached on port 3" in caplog.text
    assert sup.step() is True


def test_present_attachments_cost_no_attach():
    d = Declared("srv", 3240, "17-1")

    def attach(decl):
        raise AssertionError("attached although present")

    assert Supervisor([d], lambda decl: True, attach).step() is True


def test_config_parsing():
    config = parse_config({"interval": 1, "retry": {"initial": 0.5, "max": 4}, "attachments": [
        {"server": "10.76.0.1", "port": 3240, "busid": "17-1"},
        {"server": "10.76.0.1", "match": {"vendor": "1d6b", "product": "0104"}},
    ]})
    assert config.interval == 1 and config.retry_initial == 0.5 and config.retry_max == 4
    first, second = config.attachments
    assert (first.server, first.port, first.busid) == ("10.76.0.1", 3240, "17-1")
    assert second.busid is None and second.match.vendor == 0x1d6b and second.port == 3240


def test_tls_attachments_default_to_the_tls_port():
    config = parse_config({"tls": {"ca": "/etc/usbip/tls/ca.crt", "cert": "/c.crt", "key": "/c.key"}, "attachments": [
        {"server": "10.76.0.1", "busid": "usbip-vudc.0", "tls": True, "server_name": "server1"},
        {"server": "10.76.0.1", "busid": "usbip-vudc.1"},
    ]})
    secure, plain = config.attachments
    assert (secure.tls, secure.port, secure.server_name) == (True, 3241, "server1")
    assert (plain.tls, plain.port) == (False, 3240)
    assert config.tls.cert == "/c.crt"
    assert str(secure) == "tls://10.76.0.1:3241/usbip-vudc.0"


@pytest.mark.parametrize("data", [
    {"attachments": [{"server": "x", "busid": "../../x"}]},
    {"attachments": [{"server": "x", "busid": "1-1", "match": {"vendor": "1"}}]},
    {"attachments": [{"server": "x", "match": {"serial": "A"}}]},
    {"attachments": [{"server": "x", "port": 70000, "busid": "1-1"}]},
    {"attachments": [{"busid": "1-1"}]},
    {"colour": "red"},
    {"retry": {"forever": True}},
    {"attachments": [{"server": "x", "busid": "1-1", "tls": True}]},  # tls without certificates
    {"tls": {"ca": "/c"}, "attachments": []},  # some of the certificates
    {"tls": {"ca": "/c", "cert": "/d", "key": "/k"}, "attachments": [{"server": "x", "busid": "1-1", "tls": "yes"}]},
])
def test_bad_config_is_refused(data):
    with pytest.raises(UsbipError):
        parse_config(data)


def test_a_server_that_is_no_host_name_is_refused():
    with pytest.raises(UsbipError, match="invalid server 'a b': a host name or an address is expected"):
        parse_config({"attachments": [{"server": "a b", "busid": "1-1"}]})


def test_the_supervisor_uses_the_client_use_case(monkeypatch, tmp_path):
    """present and attach are attachments.find, .resolve and .attach: the module and the CLI agree with it."""
    from usbip import attachments
    from usbip.cli.attachd import _real_io  # noqa: PLC2701
    from usbip.matching import Match
    from usbip.sysfs.fs import Sysfs

    calls = []
    monkeypatch.setattr(attachments, "find", lambda vhci, host, port, busid=None, match=None:
                        calls.append(("find", host, port, busid, match)) or [])
    monkeypatch.setattr(attachments, "resolve", lambda host, port, busid=None, match=None, timeout=10.0, tls=None:
                        calls.append(("resolve", host, port, match)) or type("D", (), {"busid": "17-2"})())
    monkeypatch.setattr(attachments, "attach", lambda host, port, busid, vhci, timeout=10.0, tls=None:
                        calls.append(("attach", host, port, busid)) or type("A", (), {"port": 3})())
    present, attach = _real_io(Sysfs(str(tmp_path)), {})
    match = Match(vendor=0x1d6b)
    d = Declared("server1", 3240, match=match)
    assert present(d) is False
    assert attach(d) == 3
    assert present(d) is False  # the resolved busid is looked for from now on
    assert calls == [("find", "server1", 3240, None, match), ("resolve", "server1", 3240, match),
                     ("attach", "server1", 3240, "17-2"), ("find", "server1", 3240, "17-2", match)]
