# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Access control of usbipd: listen addresses, client allow-list, limits, read timeouts.

* The daemon listens on exactly the addresses it is given: the kernel's
  socket tables (``/proc/net/tcp``, ``tcp6``) are read, and the other
  loopback address refuses connections.
* An allow-list of client networks (IPv4 and IPv6 CIDR) refuses other
  clients as they connect -- the server closes without waiting for, or
  reading, a request -- and logs a line saying so (further refusals of the
  same client in the interval are counted into one line).
* ``max_per_client`` counts per client network: an IPv4 address, an IPv6 /64.
* The read timeout is per request: a client trickling its request a byte at
  a time is closed when the time is up, however busy it keeps the socket.
* 500 idle or byte-at-a-time clients do not delay a normal client's DEVLIST
  beyond 100 ms: measured against the real ``usbipd`` command (on a fake
  sysfs tree) in its own process, with bounded loops on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import pathlib
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Set

import pytest
from fake_usb import standard_tree

from tests.fuzz import MODULE_UTILS
from tests.fuzz.server import LiveServer, receive_all
from usbip.daemon.catalog import Catalog
from usbip.net import client
from usbip.net.server import ServerOptions, UsbipServer, _Connection, parse_networks
from usbip.protocol import DevlistRequest, ImportRequest
from usbip.sysfs.host import HostDriver

DEVLIST = DevlistRequest().encode()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


def listening(port: int) -> Set[str]:
    """Addresses with a socket in LISTEN state on ``port``, from the kernel's tables."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET6 if _ipv6_loopback() else socket.AF_INET) as s:
        s.bind(("::" if s.family == socket.AF_INET6 else "0.0.0.0", 0))
        return s.getsockname()[1]


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Shared: these servers only read it (no import here succeeds)."""
    tree = standard_tree(tmp_path_factory.mktemp("tree"))
    tree.kernel_host_bind("17-1")
    return tree


@pytest.fixture
def sysfs(tree):
    return tree.sysfs()


# -- listen addresses ---------------------------------------------------------------
@pytest.mark.parametrize("addresses", [
    pytest.param(["127.0.0.1"], id="ipv4-loopback"),
    pytest.param(["::1"], id="ipv6-loopback", marks=needs_ipv6),
    pytest.param(["127.0.0.1", "::1"], id="both", marks=needs_ipv6),
    pytest.param(["127.0.0.2"], id="another-ipv4-loopback"),
])
def test_binds_only_the_listen_addresses(sysfs, addresses):
    port = free_port()
    server = UsbipServer(Catalog(HostDriver(sysfs)), ServerOptions(port=port, addresses=addresses))
    server.bind()
    try:
        assert listening(port) == set(addresses)
        for other in {"127.0.0.1", "::1", "127.0.0.2"} - set(addresses):
            if other != "::1" or _ipv6_loopback():
                assert refused(other, port), other
    finally:
        for sock in server.listening:
            sock.close()
    assert listening(port) == set()


@needs_ipv6
def test_without_listen_addresses_every_address_on_separate_sockets(sysfs):
    port = free_port()
    server = UsbipServer(Catalog(HostDriver(sysfs)), ServerOptions(port=port))
    server.bind()
    try:
        assert listening(port) == {"0.0.0.0", "::"}
        v6 = [s for s in server.listening if s.family == socket.AF_INET6]
        assert v6 and v6[0].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        for sock in server.listening:
            sock.close()


# -- the allow-list --------------------------------------------------------------------
def _refused_before_reading(live: LiveServer, host: str, source: Optional[str] = None) -> bytes:
    """Connect and wait: a refused client is closed although it never sent a byte."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)  # far below the server's read timeout (1 hour): only a refusal closes it
        if source:
            s.bind((source, 0))
        s.connect((host, live.port))
        try:
            return s.recv(100)
        except ConnectionResetError:
            return b""


def _live(sysfs, addresses: List[str], allow: List[str]) -> LiveServer:
    return LiveServer(sysfs, "host", ServerOptions(port=0, addresses=addresses, allow=parse_networks(allow),
                                                   read_timeout=3600))


def _devlist(port: int, host: str = "127.0.0.1", source: Optional[str] = None) -> List[str]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        s.sendall(DEVLIST)
        data = receive_all(s)
    if not data:
        return []
    from usbip.protocol import decode_reply

    return [d.busid for d in decode_reply(data, DevlistRequest()).devices]


@pytest.mark.parametrize("allow", [["10.0.0.0/8"], ["127.0.0.2/32"], ["::1/128"], ["192.168.0.0/16", "fd00::/8"]])
def test_ipv4_client_outside_the_allow_list_is_refused_unread(sysfs, allow):
    live = _live(sysfs, ["127.0.0.1"], allow)
    try:
        assert _refused_before_reading(live, "127.0.0.1") == b""
        assert _devlist(live.port) == []  # a whole request, sent at once, is not answered either
    finally:
        live.stop()
    assert live.server.stats["refused"] == 2
    assert live.server.stats["accepted"] == live.server.stats["devlist"] == live.server.stats["bad"] == 0
    lines = [m for m in live.tap.recent if "refused: not in the allowed client networks" in m]
    assert lines == [lines[0], "WARNING: 1 more connections from 127.0.0.1 refused: not in the allowed client networks"]
    assert lines[0].startswith("WARNING: connection from 127.0.0.1:")


@pytest.mark.parametrize("allow, source", [
    (["127.0.0.0/8"], None), (["127.0.0.1/32"], None), (["10.0.0.0/8", "127.0.0.2/31"], "127.0.0.2"),
    (["::1/128", "127.0.0.3/32"], "127.0.0.3"),
])
def test_ipv4_client_inside_the_allow_list_is_served(sysfs, allow, source):
    live = _live(sysfs, ["127.0.0.1"], allow)
    try:
        assert _devlist(live.port, source=source) == ["17-1"]
    finally:
        live.stop()
    assert live.server.stats["refused"] == 0


@needs_ipv6
@pytest.mark.parametrize("allow, served", [
    (["::1/128"], True), (["::/0"], True), (["fd00::/8"], False), (["127.0.0.0/8"], False),
    (["::2/127"], False), (["::/127"], True),
])
def test_ipv6_allow_list(sysfs, allow, served):
    live = _live(sysfs, ["::1"], allow)
    try:
        if served:
            assert _devlist(live.port, "::1") == ["17-1"]
        else:
            assert _refused_before_reading(live, "::1") == b""
    finally:
        live.stop()
    assert live.server.stats["refused"] == (0 if served else 1)
    if not served:
        assert any("connection from ::1:" in m and "not in the allowed client networks" in m for m in live.tap.recent)


@pytest.mark.parametrize("peer, allow, admitted", [
    (("::ffff:127.0.0.1", 5, 0, 0), ["127.0.0.0/8"], True),  # IPv4-mapped: judged as IPv4
    (("::ffff:10.1.2.3", 5, 0, 0), ["127.0.0.0/8"], False),
    (("fe80::1%eth0", 5, 0, 2), ["fe80::/10"], True),  # a scope id does not hide the address
    (("fe80::1%eth0", 5, 0, 2), ["fd00::/8"], False),
    (("10.1.2.3", 5), ["10.0.0.0/8", "::1/128"], True),
    (("10.1.2.3", 5), ["10.1.2.4/32"], False),
    (None, ["0.0.0.0/0"], False),  # no peer address: refused when there is a list
    (("garbage", 5), ["0.0.0.0/0", "::/0"], False),
])
def test_admission_of_addresses(sysfs, peer, allow, admitted):
    server = UsbipServer(Catalog(HostDriver(sysfs)), ServerOptions(allow=parse_networks(allow)))
    reason = server.admit(peer)
    assert (reason is None) == admitted, reason


# -- limits and the read timeout ----------------------------------------------------------
def _until(condition, bound: float = 10.0) -> None:
    """Poll the server's counters (bounded): the loop thread accepts in its own time."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in %.0f s" % bound
        time.sleep(0.01)


def test_global_and_per_client_limits_refuse_with_a_log_line(sysfs):
    live = LiveServer(sysfs, "host", ServerOptions(port=0, addresses=["127.0.0.1"], read_timeout=3600,
                                                    max_connections=6, max_per_client=3))
    held = []
    try:
        held += [socket.create_connection(("127.0.0.1", live.port), source_address=("127.0.0.2", 0))
                 for _ in range(4)]
        _until(lambda: live.server.stats["refused"] == 1 and live.server.active == 3)
        assert _devlist(live.port) == ["17-1"]  # another client is not affected by 127.0.0.2's excess
        held += [socket.create_connection(("127.0.0.1", live.port), source_address=("127.0.0.3", 0))
                 for _ in range(3)]
        _until(lambda: live.server.active == 6)
        assert _devlist(live.port) == []  # 3 + 3 held: the global limit of 6 is reached
    finally:
        for s in held:
            s.close()
        live.stop()
    recent = list(live.tap.recent)
    assert any("127.0.0.2:" in m and "too many connections from this client (3)" in m for m in recent)
    assert any("127.0.0.1:" in m and "too many connections (6)" in m for m in recent)


class _Transport:
    def __init__(self, peer) -> None:
        self.peer, self.aborted = peer, False

    def get_extra_info(self, name, default=None):
        return self.peer if name == "peername" else default

    def abort(self) -> None:
        self.aborted = True


def _connect(server: UsbipServer, peers) -> List[bool]:
    """Connections from ``peers`` as asyncio makes them (no sockets); whether each was admitted. All stay open."""
    async def run() -> List[bool]:
        admitted = []
        for peer in peers:
            transport = _Transport(peer)
            _Connection(server).connection_made(transport)
            admitted.append(not transport.aborted)
        return admitted

    return asyncio.run(run())


@pytest.mark.parametrize("prefix, admitted", [
    (64, [True, True, True, False, False, True]),  # the default: one /64 is one client
    (128, [True, True, True, True, True, True]),  # per address, as before client_prefix_ipv6 existed
    (48, [True, True, True, False, False, False]),
])
def test_the_per_client_limit_counts_an_ipv6_network_as_one_client(sysfs, prefix, admitted):
    server = UsbipServer(Catalog(HostDriver(sysfs)), ServerOptions(max_per_client=3, client_prefix_ipv6=prefix,
                                                                   read_timeout=3600))
    peers = [("2001:db8:0:1::%x" % n, 4000, 0, 0) for n in (1, 2, 3, 0xffff)] + \
        [("2001:db8:0:1:ffff:ffff:ffff:ffff", 4000, 0, 0), ("2001:db8:0:2::1", 4000, 0, 0)]
    assert _connect(server, peers) == admitted
    first = ipaddress.ip_network("2001:db8:0:1::1/%d" % prefix, strict=False)
    assert server.connections[first] == (3 if prefix != 128 else 1)
    # The allow-list still judges the address itself.
    server.options.allow = parse_networks(["2001:db8:0:1::1/128"])
    assert server.admit(("2001:db8:0:1::2", 4000, 0, 0)) == "not in the allowed client networks"


def test_the_per_client_limit_counts_an_ipv4_network_as_one_client(sysfs):
    """Live, with client_prefix_ipv4 24: 127.0.0.2, .3, .4 fill their /24's three slots; 127.0.1.2 is another client."""
    live = LiveServer(sysfs, "host", ServerOptions(port=0, addresses=["127.0.0.1"], read_timeout=3600,
                                                    max_per_client=3, client_prefix_ipv4=24))
    held = []
    try:
        held += [socket.create_connection(("127.0.0.1", live.port), source_address=("127.0.0.%d" % n, 0))
                 for n in (2, 3, 4)]
        _until(lambda: live.server.active == 3)
        assert _devlist(live.port, source="127.0.0.5") == []
        assert _devlist(live.port, source="127.0.1.2") == ["17-1"]
        assert live.server.connections == {ipaddress.ip_network("127.0.0.0/24"): 3}
    finally:
        for s in held:
            s.close()
        live.stop()
    assert live.server.stats["refused"] == 1
    assert any("connection from 127.0.0.5:" in m and "too many connections from this client (3)" in m
               for m in live.tap.recent)


def test_the_read_timeout_is_per_request_not_per_byte(sysfs):
    """A client sending a byte every 100 ms keeps the socket busy; it is still closed at the 0.5 s timeout."""
    live = LiveServer(sysfs, "host", ServerOptions(port=0, addresses=["127.0.0.1"], read_timeout=0.5))
    request = ImportRequest("17-1").encode()  # 40 bytes: 4 s at this pace
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
            selector = selectors.DefaultSelector()
            selector.register(s, selectors.EVENT_READ)
            closed = False
            for byte in request:
                try:
                    s.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                sent += 1
                if selector.select(0.1):
                    try:
                        closed = s.recv(100) == b""
                    except ConnectionResetError:
                        closed = True
                    break
            selector.close()
    finally:
        live.stop()
    assert closed and sent < len(request), "sent %d of %d bytes" % (sent, len(request))
    assert live.server.stats["import"] == 0 and live.server.stats["exported"] == 0
    assert any("sent no complete request" in m for m in live.tap.recent)


# -- 500 hostile clients against the usbipd process ------------------------------------------
class Daemon:
    """``python -m usbip.cli.usbipd`` on a fake tree, its log in a file."""

    def __init__(self, tmp_path, config: str) -> None:
        # Started as root, usbipd serves from a network process that runs as nobody: the fake tree
        # must be readable by that account, and pytest's temporary directories are root's alone.
        self.shared = tempfile.mkdtemp(prefix="usbipd-access-")
        os.chmod(self.shared, 0o755)
        tree = standard_tree(pathlib.Path(self.shared) / "root")
        tree.kernel_host_bind("17-1")
        (tmp_path / "usbipd.yml").write_text(config)
        self.log_path = tmp_path / "usbipd.log"
        self.port = free_port()
        env = dict(os.environ, USBIP_SYSFS_ROOT=str(tree.root),
                   PYTHONPATH=os.pathsep.join(filter(None, [MODULE_UTILS, os.environ.get("PYTHONPATH")])))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "usbip.cli.usbipd", "-t", str(self.port), "-l", "127.0.0.1",
                 "-c", str(tmp_path / "usbipd.yml")], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while "listening on" not in self.log():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.shared, ignore_errors=True)
        return self.log()


def _open_many(port: int, sources: List[str], count: int) -> List[socket.socket]:
    """``count`` connected sockets, spread over ``sources``, opened in batches (bounded waits)."""
    opened: List[socket.socket] = []
    for start in range(0, count, 100):
        batch = []
        for n in range(start, min(count, start + 100)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((sources[n % len(sources)], 0))
            s.connect_ex(("127.0.0.1", port))
            batch.append(s)
        selector = selectors.DefaultSelector()
        for s in batch:
            selector.register(s, selectors.EVENT_WRITE)
        pending, deadline = len(batch), time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(0.5):
                selector.unregister(key.fileobj)
                pending -= 1
        selector.close()
        assert pending == 0, "%d connections did not complete" % pending
        opened += batch
    return opened


def _timed_devlist(port: int) -> float:
    started = time.perf_counter()
    devices = client.list_devices("127.0.0.1", port, timeout=10)
    elapsed = (time.perf_counter() - started) * 1000
    assert [d.busid for d in devices] == ["17-1"]
    return elapsed


def _close_all(sockets: List[socket.socket]) -> None:
    for s in sockets:
        s.close()


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))  # the daemon inherits it
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_500_idle_or_trickling_clients_do_not_delay_a_normal_devlist(tmp_path, many_fds):
    daemon = Daemon(tmp_path, "read_timeout: 60\nmax_connections: 512\nmax_per_client: 64\n")
    figures = {}
    attackers: List[socket.socket] = []
    try:
        baseline = [_timed_devlist(daemon.port) for _ in range(5)]
        figures["no attackers"] = baseline

        # 500 idle clients from ten addresses: 50 each, under the per-client limit, so all are held open.
        spread = ["127.0.0.%d" % n for n in range(2, 12)]
        attackers = _open_many(daemon.port, spread, 500)
        time.sleep(0.3)
        figures["500 idle"] = [_timed_devlist(daemon.port) for _ in range(15)]

        # The same 500 sending their requests a byte at a time: a byte from each of them before every DEVLIST.
        request = ImportRequest("9-9").encode()
        dropped = 0
        trickle: List[float] = []
        for round_no in range(15):
            for s in attackers:
                try:
                    s.send(request[round_no:round_no + 1])
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    dropped += 1
            trickle.append(_timed_devlist(daemon.port))
            time.sleep(0.02)
        figures["500 byte-at-a-time"] = trickle
        assert dropped == 0  # within the read timeout nobody was closed: they really were held
        _close_all(attackers)

        # 500 from one address: 64 held, the rest refused as they connect.
        attackers = _open_many(daemon.port, ["127.0.0.2"], 500)
        time.sleep(0.3)
        figures["500 from one address"] = [_timed_devlist(daemon.port) for _ in range(15)]
    finally:
        _close_all(attackers)
        log = daemon.stop()

    report = "; ".join("%s: median %.1f ms, max %.1f ms" % (k, statistics.median(v), max(v))
                       for k, v in figures.items())
    print("DEVLIST latency with hostile clients: " + report)
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]
    assert refusals(log, "too many connections from this client (64)") >= 400, log[-2000:]
    assert log.count("\n") < 20, log[-2000:]  # the first refusal, then one line counting the others
    for values in figures.values():
        assert statistics.median(values) < 100, report


def refusals(log: str, reason: str) -> int:
    """Refused connections a log reports for ``reason``: lines of their own, and those counted in summaries."""
    first = len(re.findall(r"connection from \S+ refused: %s$" % re.escape(reason), log, re.M))
    more = re.findall(r"(\d+) more connections from \S+ refused: %s$" % re.escape(reason), log, re.M)
    return first + sum(int(n) for n in more)


def test_networks_are_checked_when_parsed():
    assert parse_networks(["10.0.0.1/8"]) == (ipaddress.ip_network("10.0.0.0/8"),)
    for bad in ("10.0.0.0/33", "example.org", "", "::1/129", "1.2.3"):
        with pytest.raises(Exception, match="invalid client network"):
            parse_networks([bad])


def test_a_refused_peer_is_refused_again_while_others_connect(sysfs):
    """Refusal keeps nothing of the refused peer: no slot of the limits is taken."""
    live = _live(sysfs, ["127.0.0.1"], ["127.0.0.1/32"])
    try:
        for _ in range(20):
            assert _refused_before_reading(live, "127.0.0.1", source="127.0.0.5") == b""
        assert _devlist(live.port) == ["17-1"]
        assert live.server.active in (0, 1)
        assert live.server.connections.get(ipaddress.ip_network("127.0.0.5/32")) is None
    finally:
        live.stop()
    assert live.server.stats["refused"] == 20
