# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip-attachd and its TLS material: endpoints closed when a reload replaces them and at exit, and
``--check-config --check-files`` loading the certificate, key and CA as an attach would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_vhci import FakeVhci

from usbip.cli import attachd
from usbip.config import Declared, load, parse_attachd
from usbip.net import tls as tls_module
from usbip.sysfs.fs import Sysfs

MODULE_UTILS = str(Path(__file__).resolve().parents[3] / "plugins" / "module_utils")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from lab import pki

    return pki.make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def refusing_port():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: attempts fail at once
    yield closed.getsockname()[1]
    closed.close()


def declaration(certs, port, key=None, interval=2):
    return ("interval: %s\nretry: {initial: 0.2, max: 0.4}\ntimeout: 1\n"
            "tls: {ca: %s, cert: %s, key: %s}\n"
            "attachments:\n  - {server: 127.0.0.1, port: %d, tls: true, server_name: server1, busid: 1-1}\n"
            % (interval, certs["ca"], certs["client1"], key or certs["client1-key"], port))


# -- reload and exit -----------------------------------------------------------------------------
def test_a_reload_closes_the_endpoints_it_replaces_and_a_refused_one_keeps_them(
        tmp_path, certs, refusing_port, monkeypatch):
    from usbip.cli import systemd

    monkeypatch.setattr(systemd, "notify", lambda *assignments, environ=None: True)
    monkeypatch.setattr(systemd, "reloading", lambda: True)
    path = tmp_path / "attachments.yml"
    path.write_text(declaration(certs, refusing_port))
    config = load(str(path), parse_attachd)
    sysfs = Sysfs(str(tmp_path))
    sup = attachd.Supervisor([], lambda d: False, lambda d, hold: 0)
    io = attachd._apply(sup, config, sysfs)  # noqa: SLF001
    endpoint = io.endpoint(config.attachments[0])
    keylogs = endpoint.keylogs
    assert keylogs and not any(log.closed for log in keylogs)

    path.write_text("attachments: [\n")
    assert attachd._reload(str(path), config, sup, sysfs, io) == (config, io)  # noqa: SLF001
    assert not any(log.closed for log in keylogs)  # still in use

    path.write_text(declaration(certs, refusing_port))
    _config, new_io = attachd._reload(str(path), config, sup, sysfs, io)  # noqa: SLF001
    assert new_io is not io
    assert all(log.closed for log in keylogs) and io.endpoints == {}
    new_io.close()


def _memfds(pid: int, name: str) -> int:
    count = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("/memfd:" + name):
                count += 1
        except OSError:
            pass
    return count


def test_sighup_does_not_pile_up_tls_material(tmp_path, certs, refusing_port):
    """The daemon as systemd runs it: after three reloads it holds the key logs and certificate copies of one
    endpoint, not four (each reload used to leave the endpoint it replaced open, its memory files with it)."""
    root = tmp_path / "root"
    FakeVhci(root, controllers=1, hc_ports=2)
    config = tmp_path / "attachments.yml"
    config.write_text(declaration(certs, refusing_port, interval=0.2))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    env = dict(os.environ, PYTHONPATH=MODULE_UTILS, USBIP_SYSFS_ROOT=str(root), NOTIFY_SOCKET=str(tmp_path / "notify"))
    env.pop("JOURNAL_STREAM", None)
    err = tmp_path / "stderr"
    with open(err, "wb") as stderr:
        daemon = subprocess.Popen([sys.executable, "-m", "usbip.cli.attachd", "-c", str(config)],
                                  stderr=stderr, env=env)

    def attempts_failed() -> int:
        return sum(": attempt " in line and " failed: " in line for line in err.read_text().splitlines())

    def after_another_attempt() -> None:
        seen = attempts_failed()
        end = time.monotonic() + 10
        while attempts_failed() <= seen:
            assert time.monotonic() < end, err.read_text()
            time.sleep(0.05)

    try:
        assert notify.recv(4096).decode().startswith("READY=1")
        after_another_attempt()  # the endpoint is made by the first attempt
        counts = [(_memfds(daemon.pid, "usbip-tls-pem"), _memfds(daemon.pid, "usbip-tls-keylog"))]
        for _reload in range(3):
            daemon.send_signal(signal.SIGHUP)
            assert notify.recv(4096).decode().startswith("RELOADING=1")
            assert notify.recv(4096).decode().startswith("READY=1")
            after_another_attempt()
            counts.append((_memfds(daemon.pid, "usbip-tls-pem"), _memfds(daemon.pid, "usbip-tls-keylog")))
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        notify.close()
    assert counts[0][0] == 3 and counts[0][1] >= 1  # certificate, key, CA; one context's key log (and ssl's file)
    assert counts == [counts[0]] * 4
    assert "Traceback" not in err.read_text()


def test_the_exit_closes_the_endpoints(tmp_path, certs, refusing_port, monkeypatch):
    FakeVhci(tmp_path / "root", controllers=1, hc_ports=2)
    path = tmp_path / "attachments.yml"
    path.write_text(declaration(certs, refusing_port))
    monkeypatch.setenv("USBIP_SYSFS_ROOT", str(tmp_path / "root"))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    closed = []
    real_close = tls_module.TlsEndpoint.close

    def close(self):
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(tls_module.TlsEndpoint, "close", close)
    assert attachd.main(["--once", "-c", str(path)]) == 1  # the server refuses: not attached
    assert len(closed) == 1 and closed[0].keylogs == ()


# -- --check-files -----------------------------------------------------------------------------------
def check(*argv):
    return attachd.main(["--check-config", *argv])


def test_check_files_loads_good_material_silently(tmp_path, certs, capsys):
    path = tmp_path / "attachments.yml"
    path.write_text(declaration(certs, 3241))
    assert check("--check-files", "-c", str(path)) == 0
    assert capsys.readouterr() == ("", "")


def test_check_files_of_a_declaration_without_tls_loads_nothing(tmp_path, capsys):
    path = tmp_path / "attachments.yml"
    path.write_text("attachments:\n  - {server: 10.0.0.1, busid: 1-1}\n")
    assert check("--check-files", "-c", str(path)) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("broken", ["missing", "mismatched"])
def test_check_files_reports_the_error_an_attach_would_meet_on_one_line(tmp_path, certs, capsys, broken):
    key = str(tmp_path / "nowhere.key") if broken == "missing" else certs["client2-key"]
    path = tmp_path / "attachments.yml"
    path.write_text(declaration(certs, 3241, key=key))
    assert check("-c", str(path)) == 0  # --check-config alone reads no certificate
    assert capsys.readouterr() == ("", "")

    assert check("--check-files", "-c", str(path)) == 2
    out, err = capsys.readouterr()
    config = load(str(path), parse_attachd)
    io = attachd.HostIo(Sysfs(str(tmp_path)), config.tls.paths(), config.timeout)
    with pytest.raises(tls_module.TlsError) as attach_error:  # what an attempt meets and logs
        io.endpoint(Declared("127.0.0.1", 3241, "1-1", tls=True, server_name="server1"))
    assert out == ""
    assert err == "usbip-attachd: error: %s\n" % attach_error.value
    assert err.startswith("usbip-attachd: error: cannot load the TLS certificate, key or CA (%s, %s, %s): "
                          % (certs["client1"], key, certs["ca"]))


def test_check_files_checks_the_declaration_first(tmp_path, capsys):
    path = tmp_path / "attachments.yml"
    path.write_text("attachments: [{server: 10.0.0.1}]\n")
    assert check("--check-files", "-c", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("usbip-attachd: error: %s: attachments[0]" % path) and len(err.splitlines()) == 1


def test_check_files_goes_with_check_config(tmp_path, capsys):
    path = tmp_path / "attachments.yml"
    path.write_text("attachments: []\n")
    assert attachd.main(["--check-files", "-c", str(path)]) == 2
    assert capsys.readouterr().err == "usbip-attachd: error: --check-files goes with --check-config\n"
