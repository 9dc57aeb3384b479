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

    def attach(decl, hold):
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

    def attach(decl, hold):
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
    """present and attach are attachments.find, .resolve, .prepare_attach and its attach: the module and the CLI
    agree with it. The list and the connection come before the attach lock; the second look and the import
    under it."""
    import contextlib

    from usbip import attachments
    from usbip.cli.attachd import HostIo
    from usbip.matching import Match
    from usbip.sysfs.fs import Sysfs

    calls = []
    holding = []

    class Prepared:
        def __init__(self, host, port, timeout):
            calls.append(("connect", host, port, 0 < timeout <= 20, bool(holding)))

        def attach(self, busid):
            calls.append(("import", busid, bool(holding)))
            return type("A", (), {"port": 3})()

        def close(self):
            calls.append(("close", bool(holding)))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    @contextlib.contextmanager
    def hold(wait):
        calls.append(("hold", 0 < wait <= 20))
        holding.append(True)
        yield
        holding.pop()

    monkeypatch.setattr(attachments, "find", lambda vhci, host, port, busid=None, match=None:
                        calls.append(("find", host, port, busid, match, bool(holding))) or [])
    monkeypatch.setattr(attachments, "resolve", lambda host, port, busid=None, match=None, timeout=None, tls=None:
                        calls.append(("resolve", host, port, match, timeout, bool(holding)))
                        or type("D", (), {"busid": "17-2"})())
    monkeypatch.setattr(attachments, "prepare_attach", lambda host, port, vhci, timeout=None, tls=None:
                        Prepared(host, port, timeout))
    io = HostIo(Sysfs(str(tmp_path)), {}, 20.0)
    match = Match(vendor=0x1d6b)
    d = Declared("server1", 3240, match=match)
    assert io.present(d) is False
    assert io.attach(d, hold) == 3
    assert io.present(d) is False  # the resolved busid is looked for from now on
    # one deadline for the attempt: the list has the whole timeout, the connection and the import what is left
    assert calls == [("find", "server1", 3240, None, match, False),
                     ("resolve", "server1", 3240, match, 20.0, False),
                     ("connect", "server1", 3240, True, False),
                     ("hold", True),
                     ("find", "server1", 3240, "17-2", match, True),
                     ("import", "17-2", True),
                     ("close", False),
                     ("find", "server1", 3240, "17-2", match, False)]

    calls.clear()
    monkeypatch.setattr(attachments, "find", lambda vhci, host, port, busid=None, match=None:
                        calls.append(("find", bool(holding))) or ["attached by the module meanwhile"])
    assert io.attach(d, hold) is None
    assert ("import", "17-2", True) not in calls  # looked again under the lock, and imported nothing
    assert calls[-2:] == [("find", True), ("close", False)]


def test_a_connection_that_waited_long_for_the_lock_is_made_again_under_it(monkeypatch, tmp_path):
    import contextlib

    from usbip import attachments
    from usbip.cli import attachd
    from usbip.sysfs.fs import Sysfs

    made = []

    class Prepared:
        def __init__(self):
            self.closed = False
            made.append(self)

        def attach(self, busid):
            assert not self.closed
            return type("A", (), {"port": len(made)})()

        def close(self):
            self.closed = True

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    now = [1000.0]
    monkeypatch.setattr(attachd.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(attachments, "find", lambda *args, **kwargs: [])
    monkeypatch.setattr(attachments, "prepare_attach", lambda *args, **kwargs: Prepared())

    @contextlib.contextmanager
    def slow_hold(wait):
        now[0] += attachd.IDLE_MAX + 0.5  # the module held the lock meanwhile
        yield

    io = attachd.HostIo(Sysfs(str(tmp_path)), {}, 20.0)
    assert io.attach(Declared("s", 3240, "1-1"), slow_hold) == 2  # imported on the second connection
    assert [p.closed for p in made] == [True, True]
    made.clear()
    assert io.attach(Declared("s", 3240, "1-1"), lambda wait: contextlib.nullcontext()) == 1


# -- one pass, attempts side by side -------------------------------------------------------------
def test_a_slow_server_does_not_hold_back_the_other_attachments(caplog):
    """The slow server's attempt is first and blocks until the other one has attached: in a serial pass
    it would wait out its deadline (5 s here) and fail, and the other would come after it."""
    import threading
    import time

    slow, fast = Declared("slow", 3240, "1-1"), Declared("fast", 3240, "2-1")
    attached = {}
    fast_attached = threading.Event()
    order = []

    def attach(d, hold):
        if d == slow:
            if not fast_attached.wait(5):
                raise UsbipError("no complete reply from slow:3240 in 5 s")
            order.append("slow done")
            attached[d] = 1
            return 1
        attached[d] = 2
        order.append("fast attached")
        fast_attached.set()
        return 2

    caplog.set_level(logging.INFO, logger="usbip-attachd")
    sup = Supervisor([slow, fast], lambda d: d in attached, attach)
    started = time.monotonic()
    assert sup.step() is True
    assert time.monotonic() - started < 2
    assert order == ["fast attached", "slow done"]
    lines = sorted(r.getMessage() for r in caplog.records if r.name == "usbip-attachd")
    assert lines == ["fast:3240/2-1: attempt 1: attached on port 2", "slow:3240/1-1: attempt 1: attached on port 1"]


def test_the_attempts_of_a_pass_are_bounded_in_number():
    import threading
    import time

    running, most = [0], [0]
    mutex = threading.Lock()

    def attach(d, hold):
        with mutex:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with mutex:
            running[0] -= 1
        return 0

    declared = [Declared("s", 3240, "1-%d" % n) for n in range(1, 7)]
    sup = Supervisor(declared, lambda d: False, attach, workers=2)
    assert sup.step() is True  # each attempt attached
    assert most[0] == 2
    assert sup.attempts == {d: 1 for d in declared}


def test_an_attempt_that_finds_its_device_attached_meanwhile_is_no_failure(caplog):
    d = Declared("s", 3240, "1-2")
    caplog.set_level(logging.INFO, logger="usbip-attachd")
    sup = Supervisor([d], lambda d: False, lambda d, hold: None)
    assert sup.step() is True
    assert "s:3240/1-2: attached meanwhile by another attach" in caplog.text
    assert sup.attempts == {} and sup.delay == {}


def test_a_busy_attach_lock_postpones_the_attempt(caplog):
    class Busy:
        def __enter__(self):
            raise UsbipError("another attach has held /run/usbip/attach.lock for 60 s")

        def __exit__(self, *exc):
            return False

    def attach(d, hold):
        with hold(0.1):
            raise AssertionError("attached without the lock")

    d = Declared("s", 3240, "1-1")
    sup = Supervisor([d], lambda d: False, attach, lock=lambda wait: Busy())
    assert sup.step() is False
    assert "s:3240/1-1: attempt postponed: another attach has held /run/usbip/attach.lock for 60 s" in caplog.text
    assert sup.attempts == {} and sup.next_try == {}  # tried again on the next pass, not counted


def test_a_trickling_server_and_an_answering_one_with_real_io(tmp_path):
    """_real_io against two live servers on 127.0.0.1 and a fake vhci: the answering server's device is
    attached in the same pass, while the other trickles until its attempt's deadline."""
    import threading
    import time

    from cli_fakes import FakeServer, recv_exact
    from fake_vhci import FakeVhci

    from usbip import attachments
    from usbip.cli.attachd import HostIo
    from usbip.device import Speed, UsbDevice
    from usbip.protocol import ImportReply, ImportRequest, Status

    device = UsbDevice(path="/sys/devices/platform/dummy_hcd.0/usb17/17-1", busid="17-1", busnum=17, devnum=2,
                       speed=Speed.HIGH, id_vendor=0x1209, id_product=1, bcd_device=0x100, device_class=0,
                       device_subclass=0, device_protocol=0, configuration_value=1, num_configurations=1,
                       num_interfaces=1)
    reply = ImportReply(Status.OK, device).encode()
    stop = threading.Event()
    handed_over = []

    def answer(conn):
        assert recv_exact(conn, 40) == ImportRequest("17-1").encode()
        conn.sendall(reply)
        handed_over.append(time.monotonic())

    def trickle(conn):
        recv_exact(conn, 40)
        for byte in reply:
            if stop.wait(0.3):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return

    slow_server, fast_server = FakeServer(trickle), FakeServer(answer)
    fake = FakeVhci(tmp_path / "root", controllers=1, hc_ports=4)
    try:
        sysfs = fake.sysfs()
        io = HostIo(sysfs, {}, 2.0)
        present = io.present
        slow, fast = Declared("127.0.0.1", slow_server.port, "17-1"), Declared("127.0.0.1", fast_server.port, "17-1")
        sup = Supervisor([slow, fast], present, io.attach, lock=lambda wait: attachments.attach_lock(sysfs, wait=wait))
        started = time.monotonic()
        assert sup.step() is False  # the slow one failed
        ended = time.monotonic()
    finally:
        stop.set()
        slow_server.close()
        fast_server.close()
    assert handed_over and handed_over[0] - started < 1.0  # not after the slow one's 2 s
    assert 1.9 < ended - started < 3.5  # the pass lasts as long as its slowest attempt's deadline
    assert present(fast) and not present(slow)
    assert sup.delay == {slow: 1.0} and set(sup.next_try) == {slow}
    assert fake.overlaps == 0


# -- the daemon: systemd notifications, SIGHUP -------------------------------------------------
def test_a_reload_with_a_bad_file_keeps_the_declaration_loaded_before(tmp_path, monkeypatch, caplog):
    from usbip.cli import attachd, systemd
    from usbip.config import load, parse_attachd
    from usbip.sysfs.fs import Sysfs

    sent = []
    monkeypatch.setattr(systemd, "notify", lambda *assignments, environ=None: sent.append(assignments) or True)
    monkeypatch.setattr(systemd, "reloading", lambda: sent.append(("RELOADING=1",)) or True)
    path = tmp_path / "attachments.yml"
    path.write_text("attachments:\n  - {server: 10.0.0.1, busid: 1-1}\n")
    config = load(str(path), parse_attachd)
    sysfs = Sysfs(str(tmp_path))
    sup = Supervisor([], lambda d: False, lambda d, hold: 0)
    io = attachd._apply(sup, config, sysfs)  # noqa: SLF001
    old = list(sup.declared)

    path.write_text("attachments: [\n")
    caplog.set_level(logging.INFO, logger="usbip-attachd")
    assert attachd._reload(str(path), config, sup, sysfs, io) == (config, io)  # noqa: SLF001
    assert sup.declared == old
    assert sent == [("RELOADING=1",), ("READY=1", "STATUS=supervising 1 attachment(s)")]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("reload refused, the declaration loaded before stays: ")

    path.write_text("attachments:\n  - {server: 10.0.0.1, busid: 1-1}\n  - {server: 10.0.0.2, busid: 2-1}\n")
    new, _io = attachd._reload(str(path), config, sup, sysfs, io)  # noqa: SLF001
    assert [str(d) for d in sup.declared] == ["10.0.0.1:3240/1-1", "10.0.0.2:3240/2-1"]
    assert new.attachments == tuple(sup.declared)
    assert sent[-1] == ("READY=1", "STATUS=supervising 2 attachment(s)")


def test_a_reload_keeps_the_backoff_of_what_is_still_declared():
    kept, dropped = Declared("s", 3240, "1-1"), Declared("s", 3240, "1-2")
    sup = Supervisor([kept, dropped], lambda d: False, lambda d, hold: 0)
    for state in (sup.delay, sup.next_try, sup.attempts):
        state.update({kept: 4, dropped: 4})
    sup.declare([kept], lambda d: True, lambda d, hold: 1, 1.0, 8.0)
    assert (sup.delay, sup.next_try, sup.attempts) == ({kept: 4}, {kept: 4}, {kept: 4})


def test_the_daemon_says_ready_reloads_on_sighup_and_says_stopping(tmp_path):
    """usbip-attachd as systemd runs it: READY=1 once vhci is there, RELOADING=1 and READY=1 around each
    SIGHUP (a bad file is one line and changes nothing), STOPPING=1 on SIGTERM, exit 0."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from fake_vhci import FakeVhci

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, never listening: attempts fail at once
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    config = tmp_path / "attachments.yml"
    declaration = "interval: 0.2\nretry: {initial: 0.2, max: 0.4}\ntimeout: 1\nattachments:\n%s"
    config.write_text(declaration % "  - {server: 127.0.0.1, port: %d, busid: 1-1}\n" % port)
    root = tmp_path / "root"
    root.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3] / "plugins" / "module_utils"),
               USBIP_SYSFS_ROOT=str(root), NOTIFY_SOCKET=str(tmp_path / "notify"))
    env.pop("JOURNAL_STREAM", None)
    err = tmp_path / "stderr"
    with open(err, "wb") as stderr:
        daemon = subprocess.Popen([sys.executable, "-m", "usbip.cli.attachd", "-c", str(config)],
                                  stderr=stderr, env=env)

    def received():
        return notify.recv(4096).decode().split("\n")

    def log_lines():
        return err.read_text().splitlines()

    try:
        # no vhci yet: one line, and no READY=1
        notify.settimeout(0.8)
        with pytest.raises(socket.timeout):
            received()
        assert [line for line in log_lines() if "waiting for vhci-hcd" in line] == [
            "usbip-attachd: warning: waiting for vhci-hcd: vhci_hcd is not loaded"
            " (/sys/devices/platform/vhci_hcd.0 is missing) (modprobe vhci-hcd)"]
        FakeVhci(root, controllers=1, hc_ports=2)
        notify.settimeout(10)
        assert received() == ["READY=1", "STATUS=supervising 1 attachment(s)"]

        config.write_text("attachments: [\n")
        daemon.send_signal(signal.SIGHUP)
        assert received()[0] == "RELOADING=1"
        assert received() == ["READY=1", "STATUS=supervising 1 attachment(s)"]
        time.sleep(0.6)  # a few more passes
        lines = log_lines()
        refused = [n for n, line in enumerate(lines) if "reload refused" in line]
        assert len(refused) == 1 and lines[refused[0]].startswith(
            "usbip-attachd: error: reload refused, the declaration loaded before stays: %s" % config)
        after = lines[refused[0] + 1:]
        assert any("127.0.0.1:%d/1-1: attempt" % port in line for line in after)  # the old one, still tried

        config.write_text(declaration % "  - {server: 127.0.0.1, port: %d, busid: 2-1}\n" % port)
        daemon.send_signal(signal.SIGHUP)
        assert received()[0] == "RELOADING=1"
        assert received() == ["READY=1", "STATUS=supervising 1 attachment(s)"]
        time.sleep(0.6)
        lines = log_lines()
        assert "usbip-attachd: info: supervising 1 attachment(s): 127.0.0.1:%d/2-1" % port in lines
        assert any("127.0.0.1:%d/2-1: attempt 1 failed" % port in line for line in lines)

        daemon.send_signal(signal.SIGTERM)
        assert received() == ["STOPPING=1"]
        assert daemon.wait(10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        notify.close()
        closed.close()
    assert not [line for line in log_lines() if "Traceback" in line]
