"""The TLS server against hostile clients: replayed ClientHellos, floods of abandoned handshakes,
too many handshakes at once, and secrets that outlive the hand-over.

Sessions talk through memory (as in test_tls.py); one test goes through the
daemon's TLS listener on 127.0.0.1. The key logs are found the way an
auditor would: every memory file named ``usbip-tls-keylog`` in
/proc/self/fd, whatever endpoint owns it.
"""

from __future__ import annotations

import os
import socket
import ssl
import time

import pytest
from test_tls import endpoint, handshake

from lab import pki
from usbip.net import tls

#: Bare ClientHellos of the flood (with one handshake held open), and the growth it may cause.
FLOOD = 6000
FLOOD_BUDGET = 4 * 2 ** 20


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return pki.make_pki(str(tmp_path_factory.mktemp("pki")))


def keylog_files():
    """Descriptor -> size of each key log memory file of this process, one descriptor per file."""
    files = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink("/proc/self/fd/" + name).startswith("/memfd:usbip-tls-keylog"):
                continue
            status = os.fstat(int(name))
        except OSError:
            continue
        files.setdefault(status.st_ino, (int(name), status.st_size))
    return dict(files.values())


def keylog_lines(client_random: bytes):
    """Every key log line of this process that names ``client_random``."""
    wanted = client_random.hex().encode()
    lines = []
    for fd, size in keylog_files().items():
        lines += [line for line in os.pread(fd, size, 0).splitlines() if wanted in line.lower()]
    return lines


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def footprint() -> int:
    """What a flood could grow: the resident set and the key logs (memory files count outside it)."""
    return rss() + sum(keylog_files().values())


def finish(client: tls.TlsSession, server: tls.TlsSession) -> None:
    """Complete a handshake whose ClientHello the server already has."""
    client.receive(server.data_to_send())
    server.receive(client.data_to_send())
    assert client.established and server.established


def mirrored(client: tls.TlsSession, server: tls.TlsSession) -> bool:
    c_tx, c_rx = client.kernel_keys()
    s_tx, s_rx = server.kernel_keys()
    return (c_tx, c_rx) == (s_rx, s_tx)


class RecordingSocket:
    """Stands for a TCP socket with kernel TLS: keeps what ``setsockopt`` was given, and the object itself."""

    def __init__(self):
        self.calls = []

    def setsockopt(self, level, option, value):
        self.calls.append((level, option, bytes(value), value))


# -- replayed ClientHello ---------------------------------------------------------
def test_a_replayed_client_hello_is_refused_and_the_first_session_keeps_its_keys(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, first = client_end.session("127.0.0.1"), server_end.session()
    hello = client.data_to_send()
    first.receive(hello)
    replay = server_end.session()  # another connection, the same bytes
    try:
        replay.receive(hello)
        refusal = None
    except tls.TlsError as err:
        refusal = str(err)
    replay.close()
    finish(client, first)
    assert mirrored(client, first), "the legitimate session would get another session's keys"
    assert refusal == "duplicate TLS client random (replayed ClientHello?)"


def test_a_client_hello_replayed_after_its_session_ended_is_refused(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    hello = client.data_to_send()
    server.receive(hello)
    server.close()
    with pytest.raises(tls.TlsError, match="duplicate TLS client random"):
        server_end.session().receive(hello)


# -- a flood of abandoned handshakes ------------------------------------------------
def test_a_flood_of_client_hellos_grows_nothing(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    # One handshake held open all along: the old shared key log was emptied only when none was.
    client, held = client_end.session("127.0.0.1"), server_end.session()
    held.receive(client.data_to_send())
    sender = client_end.session("127.0.0.1")
    hello = bytearray(sender.data_to_send())
    sender.close()

    def flood(count):
        for _round in range(count):
            hello[11:43] = os.urandom(32)  # the client random: each ClientHello is new
            session = server_end.session()
            session.receive(bytes(hello))
            assert session.data_to_send()  # the server answered: it ran the handshake and logged its secrets
            session.close()

    flood(200)  # allocator and pool warm-up
    before, started = footprint(), time.monotonic()
    flood(FLOOD)
    elapsed, growth = time.monotonic() - started, footprint() - before
    print("%d ClientHellos in %.1f s: RSS + key logs grew by %d KiB" % (FLOOD, elapsed, growth // 1024))
    assert growth < FLOOD_BUDGET
    assert server_end.handshakes == 1
    assert len(server_end._recent_randoms) == tls.RECENT_RANDOMS  # noqa: SLF001 - bounded
    finish(client, held)
    assert mirrored(client, held)


# -- the cap on handshakes in progress ------------------------------------------------
def test_the_cap_refuses_one_handshake_too_many_and_admits_again_after_one_ends(certs):
    server_end, client_end = endpoint(certs, "server", True, max_handshakes=3), endpoint(certs, "client1", False)
    sessions = [server_end.session() for _index in range(3)]
    with pytest.raises(tls.TlsError, match=r"^too many TLS handshakes in progress \(3\)$") as refused:
        server_end.session()
    assert isinstance(refused.value, tls.TlsBusy)
    sessions.pop().close()
    client = client_end.session("127.0.0.1")
    sessions.append(server_end.session())
    handshake(client, sessions[-1])  # a session admitted again works
    with pytest.raises(tls.TlsError, match="too many TLS handshakes"):
        server_end.session()
    # A failed handshake ends its session too.
    with pytest.raises(tls.TlsError, match="ClientHello"):
        sessions.pop(0).receive(b"\x17\x03\x03\x00\x01x")
    sessions.pop(0).close()
    assert server_end.handshakes == 1
    server_end.session()
    assert len(server_end.keylogs) == 3  # the pool never grows past the cap


def test_a_client_endpoint_has_no_cap(certs):
    client_end = endpoint(certs, "client1", False, max_handshakes=1)
    sessions = [client_end.session("127.0.0.1") for _index in range(3)]
    assert client_end.handshakes == 3
    for session in sessions:
        session.close()


# -- one key log per handshake -----------------------------------------------------
def test_each_session_has_a_key_log_of_its_own(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    pairs = [(client_end.session("127.0.0.1"), server_end.session()) for _index in range(3)]
    for client, server in pairs:
        handshake(client, server)
    for client, server in pairs:
        keylog = server._context.keylog  # noqa: SLF001
        text = os.pread(keylog._fd, keylog.size, 0)  # noqa: SLF001
        randoms = {line.split()[1] for line in text.splitlines() if line and not line.startswith(b"#")}
        assert randoms == {server._client_random.hex().encode()}  # noqa: SLF001
        assert mirrored(client, server)
    assert len(server_end.keylogs) == 3 and server_end.handshakes == 3
    for _client, server in pairs:
        server.close()
    assert server_end.handshakes == 0 and [keylog.size for keylog in server_end.keylogs] == [0, 0, 0]
    server_end.session().close()
    assert len(server_end.keylogs) == 3  # a free context serves the next session


def test_contexts_made_later_need_no_access_to_the_certificate_files(certs, tmp_path):
    # As in usbipd's network process, which cannot read the key once it has dropped root.
    copies = {}
    for name in ("server", "server-key", "ca"):
        copies[name] = str(tmp_path / os.path.basename(certs[name]))
        with open(certs[name], "rb") as source, open(copies[name], "wb") as target:
            target.write(source.read())
    server_end = tls.TlsEndpoint(tls.TlsConfig(cert=copies["server"], key=copies["server-key"], ca=copies["ca"]),
                                 server_side=True)
    for path in copies.values():
        os.unlink(path)
    client_end = endpoint(certs, "client1", False)
    pairs = [(client_end.session("127.0.0.1"), server_end.session()) for _index in range(3)]
    for client, server in pairs:
        handshake(client, server)
        assert mirrored(client, server)


# -- secrets after the hand-over ---------------------------------------------------
def _secrets(client_random: bytes):
    """The traffic secrets both ends logged for one handshake, as bytes."""
    return {bytes.fromhex(line.split()[2].decode()) for line in keylog_lines(client_random)
            if line.startswith((b"CLIENT_TRAFFIC_SECRET_0", b"SERVER_TRAFFIC_SECRET_0"))}


def _holds(value, needle: bytes) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return needle in bytes(value)
    if isinstance(value, dict):
        return any(_holds(item, needle) for pair in value.items() for item in pair)
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds(item, needle) for item in value)
    return False


def test_after_the_hand_over_nothing_secret_is_left(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    busy = server_end.session()  # another handshake in progress on the same server
    busy.receive(client_end.session("127.0.0.1").data_to_send())
    client, server = client_end.session("127.0.0.1"), server_end.session()
    handshake(client, server)
    client.send(b"request")
    server.receive(client.data_to_send())
    client_random = client._client_random  # noqa: SLF001
    secrets = _secrets(client_random)
    assert len(secrets) == 2
    server_tx, server_rx = server.kernel_keys()
    keys = {bytes(server_tx), bytes(server_rx)}

    sockets = {}
    for session in (server, client):
        sockets[session] = RecordingSocket()
        session.hand_over(sockets[session])
    for session, sock in sockets.items():
        (_l0, ulp, name, _v0), (_l1, opt_tx, tx, given_tx), (_l2, opt_rx, rx, given_rx) = sock.calls
        assert (ulp, name, opt_tx, opt_rx) == (tls.TCP_ULP, b"tls", tls.TLS_TX, tls.TLS_RX)
        # The kernel got the right keys, and the buffers it read hold zeros now.
        assert (tx, rx) == ((server_tx, server_rx) if session is server else (server_rx, server_tx))
        assert not any(given_tx) and not any(given_rx)
    assert keylog_lines(client_random) == [], "a key log still holds the session's secrets"
    assert (server_end.handshakes, client_end.handshakes) == (1, 1)  # the busy handshake and its client
    for session in (server, client):
        for name, value in vars(session).items():
            assert not isinstance(value, (ssl.SSLObject, ssl.MemoryBIO)), name
            for needle in secrets | keys:
                assert not _holds(value, needle), name
        assert session.cipher in tls.SUITES and session.peer_names  # what the log needs is still there


def test_a_failed_hand_over_wipes_too(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    handshake(client, server)
    keylog = server._context.keylog  # noqa: SLF001
    assert keylog.size
    a, b = socket.socketpair()  # no kernel TLS on a UNIX socket
    with a, b, pytest.raises(tls.TlsError, match="cannot hand TLS to the kernel"):
        server.hand_over(a)
    assert keylog.size == 0 and server_end.handshakes == 0
    with pytest.raises(tls.TlsError, match="ended"):
        server.receive(b"\x17\x03\x03\x00\x01x")


def test_a_failed_handshake_wipes_its_key_log(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "rogue", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    keylog = server._context.keylog  # noqa: SLF001
    with pytest.raises(tls.TlsError, match="handshake failed"):
        handshake(client, server)
    assert keylog.size == 0 and server_end.handshakes == 0


# -- through the daemon's listener -------------------------------------------------
@pytest.fixture
def tls_one_handshake(certs):
    from test_server import Harness

    from usbip.net.server import ServerOptions

    options = ServerOptions(port=0, addresses=["127.0.0.1"], read_timeout=5.0, plain=False, tls_port=0,
                            tls=endpoint(certs, "server", True, max_handshakes=1))
    harness = Harness(options)
    yield harness
    harness.stop()


def _wait(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_the_listener_refuses_a_handshake_past_the_cap(tls_one_handshake, certs):
    from usbip.net import client as usbip_client

    harness, client_end = tls_one_handshake, endpoint(certs, "client1", False)
    held = socket.create_connection(("127.0.0.1", harness.port), timeout=5)
    with held:
        held.sendall(client_end.session("127.0.0.1").data_to_send())
        assert held.recv(65536)  # the server's flight: this handshake is in progress
        with socket.create_connection(("127.0.0.1", harness.port), timeout=5) as second:
            second.sendall(client_end.session("127.0.0.1").data_to_send())
            try:
                answer = second.recv(65536)
            except ConnectionResetError:
                answer = b""
            assert answer == b""  # closed without a byte of TLS
        assert harness.server.options.tls.handshakes == 1
    _wait(lambda: harness.server.options.tls.handshakes == 0)
    devices = usbip_client.list_devices("127.0.0.1", harness.port, tls=client_end)
    assert [d.busid for d in devices] == ["17-1"]


# -- the server process's memory after an import -----------------------------------
SERVER = """
import gc, socket, sys
from usbip.net import tls

class Kernel:  # takes the keys as setsockopt would, keeps nothing
    def setsockopt(self, *args):
        pass

cert, key, ca, fd = sys.argv[1:]
sock = socket.socket(fileno=int(fd))
session = tls.TlsEndpoint(tls.TlsConfig(cert=cert, key=key, ca=ca), server_side=True).session()
request = b""
while not request:
    request = session.receive(sock.recv(65536))
    sock.sendall(session.data_to_send())
session.hand_over(Kernel())
del session, request
gc.collect()
sock.sendall(b"handed over")
sock.recv(1)
"""


def _readable_memory(pid: int):
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            span, permissions = line.split()[:2]
            if "r" not in permissions:
                continue
            start, end = (int(address, 16) for address in span.split("-"))
            try:
                mem.seek(start)
                yield mem.read(end - start)
            except (OSError, OverflowError, ValueError):  # [vvar] and the like
                continue


def test_no_copy_of_the_secrets_is_left_in_the_server_process(certs):
    import subprocess
    import sys

    client_end = endpoint(certs, "client1", False)
    ours, theirs = socket.socketpair()
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(tls.__file__))))
    server = subprocess.Popen([sys.executable, "-c", SERVER, certs["server"], certs["server-key"], certs["ca"],
                               str(theirs.fileno())], pass_fds=[theirs.fileno()], env=env)
    theirs.close()
    with ours:
        ours.settimeout(10)
        client = client_end.session("127.0.0.1")
        while not client.established:
            ours.sendall(client.data_to_send())
            client.receive(ours.recv(65536))
        client.send(b"IMPORT")
        ours.sendall(client.data_to_send())
        assert ours.recv(64) == b"handed over"
        suite = tls.SUITES[client.cipher]
        needles = {}
        for number, secret in enumerate(sorted(_secrets(client._client_random))):  # noqa: SLF001
            needles.update({("secret", number): secret, ("secret in hex", number): secret.hex().encode(),
                            ("SECRET IN HEX", number): secret.hex().upper().encode(),
                            ("key", number): bytes(tls.expand_label(secret, b"key", suite.key_size, suite.digest)),
                            ("iv", number): bytes(tls.expand_label(secret, b"iv", 12, suite.digest))})
        assert len(needles) == 10
        try:
            found = dict.fromkeys(needles, 0)
            for region in _readable_memory(server.pid):
                for name, needle in needles.items():
                    found[name] += region.count(needle)
        except PermissionError:
            pytest.skip("cannot read the memory of a child process here")
        print("copies left in the server process: %s" % ({name: n for name, n in found.items() if n} or "none"))
        assert found == dict.fromkeys(needles, 0)
    assert server.wait(10) == 0


def test_a_session_that_ends_after_its_endpoint_closed_ends_quietly(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    handshake(client, server)
    keylogs = server_end.keylogs
    server_end.close()
    assert all(keylog.closed for keylog in keylogs) and server_end.keylogs == ()
    server.close()  # nothing to give back to, and no error
    assert server_end.handshakes == 0
