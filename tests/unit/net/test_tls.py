"""The TLS hand-over, without a kernel: key schedule, record accounting, identity checks.

Two sessions talk through memory; what the kernel would be given on each side
must mirror the other side (my TX is your RX, same key, same sequence number).
The real proof, a disk read through kTLS, is tests/integration/test_tls.py.
"""

from __future__ import annotations

import socket
import struct

import pytest

from lab import pki
from usbip import validate
from usbip.net import tls
from usbip.protocol import DevlistRequest, ImportRequest


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return pki.make_pki(str(tmp_path_factory.mktemp("pki")))


def endpoint(certs, who: str, server_side: bool, ca: str = "ca", **kw) -> tls.TlsEndpoint:
    return tls.TlsEndpoint(tls.TlsConfig(cert=certs[who], key=certs[who + "-key"], ca=certs[ca], **kw), server_side)


def handshake(client: tls.TlsSession, server: tls.TlsSession) -> None:
    for _round in range(10):
        data = client.data_to_send()
        if data:
            assert server.receive(data) == b""
        data = server.data_to_send()
        if data:
            assert client.receive(data) == b""
        if client.established and server.established:
            return
    raise AssertionError("no handshake in 10 rounds")


def test_expand_label_matches_rfc8448():
    # RFC 8448, section 3: server handshake traffic secret -> write key and IV.
    secret = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
    assert tls.expand_label(secret, b"key", 16).hex() == "3fce516009c21727d0f2e4e86ee403bc"
    assert tls.expand_label(secret, b"iv", 12).hex() == "5d313eb2671276ee13000b30"


@pytest.mark.parametrize("cipher", sorted(tls.SUITES))
def test_crypto_info_layout(cipher):
    suite = tls.SUITES[cipher]
    info = tls.crypto_info(cipher, b"\x11" * 48, 7)
    version, kind = struct.unpack_from("=HH", info)
    assert (version, kind) == (tls.TLS_1_3_VERSION, suite.kernel_cipher)
    # header, iv, key, salt, sequence number
    assert len(info) == 4 + (12 - suite.salt_size) + suite.key_size + suite.salt_size + 8
    assert info[-8:] == struct.pack("!Q", 7)


def test_unknown_cipher_is_refused():
    with pytest.raises(tls.TlsError, match="no kernel TLS"):
        tls.crypto_info("TLS_AES_128_CCM_8_SHA256", b"\0" * 32, 0)


def test_both_ends_give_the_kernel_mirrored_keys(certs):
    server_end = endpoint(certs, "server", True)
    client_end = endpoint(certs, "client1", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    handshake(client, server)
    assert client.cipher in tls.SUITES and client.cipher == server.cipher
    assert server.peer_names == {"dns:client1"}
    assert "ip:127.0.0.1" in client.peer_names

    request = ImportRequest("1-1").encode()
    client.send(request)
    assert server.receive(client.data_to_send()) == request
    server.send(b"reply")
    assert client.receive(server.data_to_send()) == b"reply"

    c_tx, c_rx = client.kernel_keys()
    s_tx, s_rx = server.kernel_keys()
    assert c_tx == s_rx and c_rx == s_tx
    assert c_tx[-8:] == struct.pack("!Q", 1) and c_rx[-8:] == struct.pack("!Q", 1)
    assert c_tx != c_rx


def test_sequence_numbers_count_records_not_writes(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    handshake(client, server)
    client.send(DevlistRequest().encode())
    client.send(b"x" * (2 ** 14 + 10))  # one write, two records
    assert client.sent_records == 3
    assert len(server.receive(client.data_to_send())) == 8 + 2 ** 14 + 10
    assert server.received_records == 3
    assert client.kernel_keys()[0] == server.kernel_keys()[1]


def test_records_arriving_a_byte_at_a_time(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, server = client_end.session("localhost"), server_end.session()
    hello = client.data_to_send()
    for byte in hello[:-1]:
        server.receive(bytes((byte,)))
        assert server.data_to_send() == b""
    server.receive(hello[-1:])
    assert server.data_to_send()


def test_a_client_of_another_ca_is_refused_in_the_handshake(certs):
    server_end = endpoint(certs, "server", True)
    client_end = endpoint(certs, "rogue", False)  # trusts our CA, but its own certificate is not ours
    client, server = client_end.session("127.0.0.1"), server_end.session()
    with pytest.raises(tls.TlsError, match="handshake failed"):
        handshake(client, server)
    assert not server.established


def test_the_server_name_must_match(certs):
    client_end = endpoint(certs, "client1", False, server_name="not-the-server")
    server_end = endpoint(certs, "server", True)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    with pytest.raises(tls.TlsError, match="handshake failed"):
        handshake(client, server)


def test_secrets_are_wiped_when_the_session_ends(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    handshake(client, server)
    keylog = server._context.keylog  # noqa: SLF001
    assert set(keylog.secrets(server._client_random)) == {"CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"}  # noqa: SLF001
    server.close()
    assert server_end.handshakes == 0
    assert keylog.size == 0 and keylog.secrets(server._client_random) == {}  # noqa: SLF001


def test_hand_over_refuses_with_bytes_left_in_userspace(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    handshake(client, server)
    client.send(b"abc")
    server.receive(client.data_to_send()[:4])  # part of a record
    a, b = socket.socketpair()
    with a, b, pytest.raises(tls.TlsError, match="left in userspace"):
        server.hand_over(a)


def test_hand_over_without_kernel_tls_says_what_to_load(certs):
    server_end, client_end = endpoint(certs, "server", True), endpoint(certs, "client1", False)
    client, server = client_end.session("127.0.0.1"), server_end.session()
    handshake(client, server)
    a, b = socket.socketpair()  # not TCP: no upper layer protocol may attach
    with a, b, pytest.raises(tls.TlsError, match="cannot hand TLS to the kernel"):
        server.hand_over(a)


def test_an_oversized_record_is_an_error(certs):
    server = endpoint(certs, "server", True).session()
    with pytest.raises(tls.TlsError, match="TLS record of"):
        server.receive(b"\x16\x03\x01\xff\xff")


def test_the_first_record_must_be_a_client_hello(certs):
    server = endpoint(certs, "server", True).session()
    with pytest.raises(tls.TlsError, match="ClientHello"):
        server.receive(b"\x17\x03\x03\x00\x01x")


def test_missing_files_are_a_clear_error(tmp_path, certs):
    config = tls.TlsConfig(cert=str(tmp_path / "none.crt"), key=str(tmp_path / "none.key"), ca=certs["ca"])
    with pytest.raises(tls.TlsError, match="cannot load the TLS certificate"):
        tls.TlsEndpoint(config, server_side=True)


# -- the daemon's TLS listener, over 127.0.0.1 (no kernel TLS here: DEVLIST and refusals only) -----------------
@pytest.fixture
def tls_served(certs):
    from test_server import Harness  # the same harness as the plain server's tests

    from usbip.net.server import ServerOptions

    options = ServerOptions(port=0, addresses=["127.0.0.1"], read_timeout=2.0, plain=False, tls_port=0,
                            tls=endpoint(certs, "server", True, allow_names=frozenset({"dns:client1"})))
    harness = Harness(options)
    yield harness
    harness.stop()


def test_devlist_inside_tls(tls_served, certs):
    from usbip.net import client

    devices = client.list_devices("127.0.0.1", tls_served.port, tls=endpoint(certs, "client1", False))
    assert [d.busid for d in devices] == ["17-1"]
    assert tls_served.server.stats["devlist"] == 1


@pytest.mark.parametrize("who", ["rogue", "client2"])
def test_a_refused_client_learns_nothing(tls_served, certs, who, caplog):
    from usbip.errors import UsbipError
    from usbip.net import client

    with pytest.raises(UsbipError):
        client.list_devices("127.0.0.1", tls_served.port, tls=endpoint(certs, who, False))
    with pytest.raises(UsbipError):
        client.import_device("127.0.0.1", tls_served.port, "17-1", tls=endpoint(certs, who, False))
    stats = tls_served.server.stats
    assert (stats["devlist"], stats["import"], stats["tls_refused"]) == (0, 0, 2)
    assert tls_served.backend.exported == []
    assert "refused" in caplog.text


def test_plain_usbip_on_the_tls_port_is_refused(tls_served):
    from test_server import _devlist_request, _exchange

    assert _exchange(tls_served.port, _devlist_request()) == b""
    assert tls_served.server.stats["tls_refused"] == 1


def test_only_the_tls_port_listens_with_tls_only(tls_served):
    assert len(tls_served.server.listening) == 1 == len(tls_served.server.tls_listening)


def test_an_import_the_kernel_cannot_encrypt_is_not_exported(tls_served, certs):
    from usbip.errors import UsbipError
    from usbip.net import client

    with pytest.raises(UsbipError, match="closed the connection"):
        client.import_device("127.0.0.1", tls_served.port, "17-1", tls=endpoint(certs, "client1", False))
    assert tls_served.backend.exported == []


@pytest.mark.parametrize("cert, names", [
    # SANs present: the CN does not count (RFC 6125, 6.4.4)
    ({"subject": ((("commonName", "admin"),),), "subjectAltName": (("DNS", "client1.example"),)},
     {"dns:client1.example"}),
    # DNS names compare without regard to case; a trailing dot is the same name
    ({"subjectAltName": (("DNS", "Client1.EXAMPLE."),)}, {"dns:client1.example"}),
    # OpenSSL writes IPv6 SANs in full, upper case, sometimes with a newline: compared as addresses
    ({"subjectAltName": (("IP Address", "2001:DB8:0:0:0:0:0:1\n"),)}, {"ip:2001:db8::1"}),
    # no DNS or IP SAN: the CN is the name, as a DNS name
    ({"subject": ((("commonName", "Client2"),),), "subjectAltName": (("email", "a@b"),)}, {"dns:client2"}),
    (None, set()),
])
def test_peer_names_follow_rfc_6125(cert, names):
    assert tls.peer_names(cert) == names


def test_a_dns_name_never_matches_an_address_that_reads_the_same():
    cert = {"subjectAltName": (("DNS", "10.0.0.5"),)}
    assert validate.peer_name("10.0.0.5") not in tls.peer_names(cert)
    assert validate.peer_name("dns:10.0.0.5") in tls.peer_names(cert)
