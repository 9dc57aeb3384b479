# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbipd's command line as it reaches the sockets: ``-4``/``-6``, ``--tls-only``, ``-a``, ``--syslog``.

In-process, the options ``_options`` builds are bound by the server class the
daemon runs, and the sockets it holds are checked: ``-4`` alone listens on
IPv4 only, ``-6`` alone on IPv6 only, both or neither on both. Without
``--listen`` the daemon binds the wildcard addresses; here each wildcard is
replaced by the loopback address of its family (the network of the tests is
127.0.0.1 and ::1 only), which keeps the family the options chose.

Live, ``python -m usbip.cli.usbipd`` runs with ``-a`` and ``--syslog`` on a
fake tree: the allow-list given on the command line (over the file's) admits
127.0.0.2 and refuses 127.0.0.1, and both processes log to a stand-in for
``/dev/log``, nothing to stderr.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from typing import Optional

import pytest
import test_usbipd_process
from fake_usb import standard_tree
from test_usbipd_process import Notifications, children_of, devlist, free_port

from lab import pki
from tests.fuzz import MODULE_UTILS
from usbip.cli import usbipd
from usbip.config import UsbipdConfig, parse_usbipd
from usbip.daemon.catalog import Catalog
from usbip.errors import InvalidArgument, UsbipError
from usbip.net.server import UsbipServer
from usbip.sysfs.host import HostDriver

shared_dir = test_usbipd_process.shared_dir  # the fixture: a directory every account may read
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
FAMILY = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="this host has no IPv6 loopback (::1) to bind")


def port_free_on_both() -> int:
    """A port free on 127.0.0.1 and on ::1 (where there is one)."""
    for _attempt in range(50):
        port = free_port()
        try:
            if _ipv6_loopback():
                with socket.socket(socket.AF_INET6) as s:
                    s.bind(("::1", port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free on both loopback addresses")


def options_of(*argv: str, config: Optional[UsbipdConfig] = None):
    """``_options`` of this command line, over ``config`` (the defaults of an empty file when None)."""
    return usbipd._options(usbipd._parser().parse_args(list(argv)), config or UsbipdConfig())  # noqa: SLF001


@pytest.fixture
def tree(tmp_path):
    tree = standard_tree(tmp_path / "root")
    tree.kernel_host_bind("17-1")
    return tree


@pytest.fixture
def bound(tree, monkeypatch):
    """Bind a server with these options (wildcards on loopback); the families and ports it listens on."""
    targets = UsbipServer._bind_targets  # noqa: SLF001

    def loopback_targets(self):
        for family, host in targets(self):
            yield family, LOOPBACK.get(host, host)

    monkeypatch.setattr(UsbipServer, "_bind_targets", loopback_targets)
    servers = []

    def bind(options):
        server = UsbipServer(Catalog(HostDriver(tree.sysfs())), options)
        servers.append(server)
        server.bind()
        return sorted((FAMILY[s.family], s.getsockname()[1]) for s in server.listening)

    yield bind
    for server in servers:
        for sock in server.listening:
            sock.close()


# -- -4 and -6 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, ipv4, ipv6", [
    ([], True, True),
    (["-4"], True, False),
    (["-6"], False, True),
    (["-4", "-6"], True, True),
    (["--ipv4"], True, False),
    (["--ipv6"], False, True),
])
def test_ipv4_and_ipv6_flags_choose_the_families(flags, ipv4, ipv6):
    options = options_of(*flags)
    assert (options.ipv4, options.ipv6) == (ipv4, ipv6)
    server = UsbipServer(Catalog(None), options)
    expected = ([(socket.AF_INET, "0.0.0.0")] if ipv4 else []) + ([(socket.AF_INET6, "::")] if ipv6 else [])
    assert list(server._bind_targets()) == expected  # noqa: SLF001


def test_minus_4_listens_on_ipv4_only(bound):
    port = port_free_on_both()
    assert bound(options_of("-4", "-t", str(port))) == [("IPv4", port)]


@needs_ipv6
def test_minus_6_listens_on_ipv6_only(bound):
    port = port_free_on_both()
    assert bound(options_of("-6", "-t", str(port))) == [("IPv6", port)]


@needs_ipv6
@pytest.mark.parametrize("flags", [[], ["-4", "-6"]])
def test_both_or_neither_listen_on_both(bound, flags):
    port = port_free_on_both()
    assert bound(options_of(*flags, "-t", str(port))) == [("IPv4", port), ("IPv6", port)]


# -- --tls-only -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return pki.make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.mark.parametrize("only", [False, True], ids=["beside-plain", "tls-only"])
def test_tls_only_binds_the_tls_port_alone(bound, certs, only):
    plain, secure = free_port(), free_port()
    options = options_of("-l", "127.0.0.1", "-t", str(plain), "--tls-cert", certs["server"],
                         "--tls-key", certs["server-key"], "--tls-ca", certs["ca"], "--tls-port", str(secure),
                         *(["--tls-only"] if only else []))
    try:
        assert options.plain is not only and options.tls_port == secure
        expected = [("IPv4", secure)] if only else sorted([("IPv4", plain), ("IPv4", secure)])
        assert bound(options) == expected
        if only:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", plain), timeout=5).close()
    finally:
        options.tls.close()


def test_tls_only_from_the_file_too(certs, tmp_path):
    config = parse_usbipd({"tls": {"only": True, "port": 3241, "cert": certs["server"], "key": certs["server-key"],
                                   "ca": certs["ca"]}})
    options = options_of(config=config)
    try:
        assert options.plain is False and options.tls_port == 3241
    finally:
        options.tls.close()


def test_tls_only_without_a_certificate_is_one_error():
    with pytest.raises(InvalidArgument, match="TLS settings without a certificate"):
        options_of("--tls-only")


# -- -a -----------------------------------------------------------------------------------------
def test_allow_on_the_command_line_replaces_the_file_list():
    config = parse_usbipd({"allow": ["10.76.0.0/16"]})
    assert options_of(config=config).allow == (ipaddress.ip_network("10.76.0.0/16"),)
    options = options_of("-a", "127.0.0.2/32", "--allow", "fd00::/8", config=config)
    assert options.allow == (ipaddress.ip_network("127.0.0.2/32"), ipaddress.ip_network("fd00::/8"))


def test_a_bad_allow_entry_is_one_error():
    with pytest.raises(InvalidArgument, match="--allow"):
        options_of("-a", "10.0.0.300/8")


@pytest.mark.parametrize("argv, file_allow, admitted, refused", [
    (["-a", "127.0.0.2/32"], ["10.76.0.0/16"], ["127.0.0.2", "::ffff:127.0.0.2"], ["127.0.0.1", "10.76.0.1"]),
    ([], ["10.76.0.0/16"], ["10.76.0.1"], ["127.0.0.1"]),
    ([], [], ["127.0.0.1", "::1"], []),
])
def test_the_monitor_judges_exported_peers_by_the_allow_list_the_server_applies(
        tree, tmp_path, monkeypatch, argv, file_allow, admitted, refused):
    """``load_service`` hands the monitor the server's own check over the same list (-a over the file's)."""
    monkeypatch.setenv("USBIP_SYSFS_ROOT", str(tree.root))
    config = tmp_path / "usbipd.yml"
    config.write_text("allow: [%s]\n" % ", ".join(file_allow))
    service = usbipd.load_service(usbipd._parser().parse_args(["-c", str(config), *argv]))  # noqa: SLF001
    try:
        assert [a for a in admitted + refused if service.peer_allowed((a, 3240))] == admitted
    finally:
        service.release()


# -- live: -a and --syslog on the real daemon -------------------------------------------------------
#: The daemon with its syslog socket replaced (the module's constant, read when logging is set up).
LAUNCH = """
import sys
from usbip.cli import logs, usbipd
logs.SYSLOG_SOCKET = sys.argv[1]
raise SystemExit(usbipd.main(sys.argv[2:]))
"""


class Syslog:
    """A stand-in for /dev/log: a datagram socket that keeps what it receives."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.lines = []

    def wait_for(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.lines.append(self.sock.recv(65536).decode(errors="replace"))
            except socket.timeout:
                raise AssertionError("no %r in syslog; got %s" % (text, self.lines)) from None

    def close(self) -> None:
        self.sock.close()


def test_allow_and_syslog_on_the_live_daemon(shared_dir):
    tree = standard_tree(shared_dir / "root")
    tree.kernel_host_bind("17-1")
    (shared_dir / "usbipd.yml").write_text("allow: [127.0.0.1/32]\n")  # the command line's list wins
    syslog, notify = Syslog(shared_dir / "dev-log"), Notifications(shared_dir / "notify")
    port = free_port()
    env = dict(os.environ, USBIP_SYSFS_ROOT=str(tree.root), NOTIFY_SOCKET=notify.path,
               PYTHONPATH=os.pathsep.join(filter(None, [MODULE_UTILS, os.environ.get("PYTHONPATH")])))
    argv = [sys.executable, "-c", LAUNCH, syslog.path, "--syslog", "-t", str(port), "-l", "127.0.0.1",
            "-c", str(shared_dir / "usbipd.yml"), "-a", "127.0.0.2/32"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        notify.wait_for("READY=1")
        network = children_of(proc.pid)
        assert len(network) == 1
        assert devlist(port, "127.0.0.2") == ["17-1"]
        with pytest.raises((UsbipError, OSError)):
            devlist(port, "127.0.0.1")
        refused = syslog.wait_for("not in the allowed client networks")
        # From the network process, with its own pid, in syslog's format.
        assert "usbipd[%d]: warning: connection from 127.0.0.1:" % network[0] in refused
        assert syslog.wait_for("usbipd[%d]: info: network process %d serving" % (proc.pid, network[0]))
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode(errors="replace")
        syslog.close()
        notify.close()
    assert proc.returncode == 0, output
    assert output == ""  # every line went to syslog
