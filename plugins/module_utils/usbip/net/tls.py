# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""USB/IP inside TLS 1.3, with the record layer handed to the kernel (kTLS).

The handshake and the one USB/IP exchange (DEVLIST or IMPORT) run in
userspace through :mod:`ssl`; then both traffic keys and record sequence
numbers are installed on the socket with ``setsockopt(SOL_TLS, ...)`` and the
socket goes to usbip-host, usbip-vudc or vhci-hcd as usual. The kernel
drivers call ``sendmsg``/``recvmsg`` on whatever socket they are given, so
URBs are then encrypted by the kernel with no copy through userspace.

Python's :mod:`ssl` does not hand out traffic secrets, but it writes them to
a key log (``SSLContext.keylog_filename``). :class:`KeyLog` points that at an
anonymous in-memory file (``memfd``) and the keys are derived from the
secrets with HKDF-Expand-Label (RFC 8446, section 7). What could break the
hand-over, and how it is kept out:

* bytes buffered by the userspace TLS library: :class:`TlsSession` feeds it
  whole records, one at a time, and the client reads the socket record by
  record, so nothing past the last record of the exchange leaves the socket;
* post-handshake messages: the server sends no session tickets
  (``num_tickets = 0``), TLS 1.3 only, no post-handshake authentication, and
  the exchange is a single request and a single reply, so no key update;
* sequence numbers: counted per direction over the application records the
  session saw after its handshake.
"""

from __future__ import annotations

import dataclasses
import errno
import hmac
import ipaddress
import os
import socket
import ssl
import struct
from typing import Dict, FrozenSet, Iterable, Optional, Tuple

from ..errors import UsbipError

# <linux/tls.h>, <linux/tcp.h>, <linux/socket.h>
SOL_TLS = 282
TLS_TX = 1
TLS_RX = 2
TCP_ULP = 31
TLS_1_3_VERSION = 0x0304

_RECORD_HEADER = 5
#: RFC 8446, 5.2: a TLSCiphertext carries at most 2^14 + 256 bytes.
_RECORD_MAX = 2 ** 14 + 256
_HANDSHAKE = 22
_APPLICATION_DATA = 23
#: change_cipher_spec, alert, handshake, application_data
_RECORD_TYPES = frozenset((20, 21, 22, 23))


@dataclasses.dataclass(frozen=True)
class _Suite:
    kernel_cipher: int
    key_size: int
    #: Bytes of the 12-byte IV the kernel takes as "salt" (the rest is "iv").
    salt_size: int
    digest: str


#: TLS 1.3 suites OpenSSL negotiates by default, as the kernel knows them.
SUITES: Dict[str, _Suite] = {
    "TLS_AES_128_GCM_SHA256": _Suite(51, 16, 4, "sha256"),
    "TLS_AES_256_GCM_SHA384": _Suite(52, 32, 4, "sha384"),
    "TLS_CHACHA20_POLY1305_SHA256": _Suite(54, 32, 0, "sha256"),
}


class TlsError(UsbipError):
    """The TLS layer failed: handshake, peer identity, or handing it to the kernel."""


# -- key schedule ----------------------------------------------------------------
def expand_label(secret: bytes, label: bytes, length: int, digest: str = "sha256", context: bytes = b"") -> bytes:
    """HKDF-Expand-Label of RFC 8446, 7.1."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + struct.pack("!B", len(context)) + context
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes((counter,)), digest).digest()
        out += block
        counter += 1
    return out[:length]


def crypto_info(cipher: str, secret: bytes, sequence: int) -> bytes:
    """The ``struct tls12_crypto_info_*`` for one direction, as ``setsockopt`` takes it."""
    suite = SUITES.get(cipher)
    if suite is None:
        raise TlsError("cipher suite %s has no kernel TLS counterpart" % cipher)
    key = expand_label(secret, b"key", suite.key_size, suite.digest)
    iv = expand_label(secret, b"iv", 12, suite.digest)
    salt, nonce = iv[:suite.salt_size], iv[suite.salt_size:]
    return struct.pack("=HH", TLS_1_3_VERSION, suite.kernel_cipher) + nonce + key + salt + struct.pack("!Q", sequence)


class KeyLog:
    """Traffic secrets that :mod:`ssl` writes, kept in memory and keyed by client random.

    One per :class:`ssl.SSLContext`; the file never touches a disk and is not
    inherited by children (``MFD_CLOEXEC``).
    """

    def __init__(self) -> None:
        self._fd = os.memfd_create("usbip-tls-keylog", os.MFD_CLOEXEC)
        self.path = "/proc/self/fd/%d" % self._fd

    def secrets(self, client_random: bytes) -> Dict[str, bytes]:
        """Label -> secret for one handshake (NSS key log format)."""
        size = os.fstat(self._fd).st_size
        text = os.pread(self._fd, size, 0).decode("ascii", "replace")
        wanted = client_random.hex()
        found = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].lower() == wanted:
                found[parts[0]] = bytes.fromhex(parts[2])
        return found

    def forget(self) -> None:
        """Drop every secret written so far (call when no handshake is in progress)."""
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        os.close(self._fd)


# -- configuration ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """Paths of this end's certificate and key and of the CA that signs the peers."""

    cert: str
    key: str
    ca: str
    #: Server: client certificate names admitted, as :func:`usbip.validate.peer_name` writes them
    #: (``dns:name``, ``ip:address``); empty admits any certificate the CA signed.
    allow_names: FrozenSet[str] = frozenset()
    #: Server: handshakes in progress at once.
    max_handshakes: int = 64
    #: Client: the name the server's certificate must carry (default: the host connected to).
    server_name: Optional[str] = None


class TlsEndpoint:
    """An :class:`ssl.SSLContext` for USB/IP over kTLS and the key log behind it."""

    def __init__(self, config: TlsConfig, server_side: bool) -> None:
        self.config = config
        self.server_side = server_side
        self.keylog = KeyLog()
        self.handshakes = 0
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.maximum_version = ssl.TLSVersion.TLSv1_3
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_cert_chain(config.cert, config.key)
            ctx.load_verify_locations(cafile=config.ca)
        except (OSError, ssl.SSLError) as err:
            self.keylog.close()
            raise TlsError("cannot load the TLS certificate, key or CA (%s, %s, %s): %s"
                           % (config.cert, config.key, config.ca, err)) from None
        if server_side:
            ctx.num_tickets = 0
        ctx.post_handshake_auth = False
        ctx.keylog_filename = self.keylog.path
        self.context = ctx

    def session(self, server_hostname: Optional[str] = None) -> "TlsSession":
        name = None if self.server_side else (self.config.server_name or server_hostname)
        return TlsSession(self, name)

    def close(self) -> None:
        self.keylog.close()


def peer_names(cert: Optional[dict]) -> FrozenSet[str]:
    """The names a verified peer certificate is valid for, as RFC 6125 reads them.

    Subject alternative names when the certificate has any DNS or IP SAN: DNS
    names in lower case (they compare case-insensitively), IP addresses as
    addresses (OpenSSL renders IPv6 SANs in full, upper case, sometimes with a
    trailing newline). The subject CN counts only in a certificate without
    such SANs. Each name carries its kind (``dns:``, ``ip:``), as
    :func:`usbip.validate.peer_name` writes the allowed ones, so a DNS name
    never matches an address that reads the same.
    """
    if not cert:
        return frozenset()
    names = set()
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            names.add("dns:" + value.rstrip(".").lower())
        elif kind == "IP Address":
            try:
                names.add("ip:%s" % ipaddress.ip_address(value.strip()))
            except ValueError:
                continue
    if not any(kind in ("DNS", "IP Address") for kind, _value in cert.get("subjectAltName", ())):
        names.update("dns:" + value.rstrip(".").lower()
                     for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName")
    return frozenset(names)


# -- one connection --------------------------------------------------------------
def _records(buffer: bytearray) -> Iterable[bytes]:
    """Take whole TLS records off the front of ``buffer``."""
    while buffer:
        if buffer[0] not in _RECORD_TYPES or (len(buffer) > 1 and buffer[1] != 3):
            raise TlsError("not a TLS record (plain USB/IP on the TLS port?)")
        if len(buffer) < _RECORD_HEADER:
            return
        length = struct.unpack_from("!H", buffer, 3)[0]
        if length > _RECORD_MAX:
            raise TlsError("TLS record of %d bytes (at most %d)" % (length, _RECORD_MAX))
        end = _RECORD_HEADER + length
        if len(buffer) < end:
            return
        record = bytes(buffer[:end])
        del buffer[:end]
        yield record


def _client_random(record: bytes) -> bytes:
    # record header (5), handshake type and length (4), legacy_version (2), random (32)
    if len(record) < 43 or record[0] != _HANDSHAKE or record[5] != 1:
        raise TlsError("the first TLS record is not a ClientHello")
    return record[11:43]


class TlsSession:
    """One TLS 1.3 connection up to the hand-over: bytes in, bytes out, no socket.

    Raw bytes from the peer go to :meth:`receive`, which returns the plaintext
    they completed; :meth:`send` queues plaintext; :meth:`data_to_send` gives
    what to write. Records are counted per direction once the handshake is
    done, which is what :meth:`kernel_keys` needs.
    """

    def __init__(self, endpoint: TlsEndpoint, server_hostname: Optional[str]) -> None:
        self.endpoint = endpoint
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl = endpoint.context.wrap_bio(self._in, self._out, server_side=endpoint.server_side,
                                              server_hostname=server_hostname)
        self._raw = bytearray()
        self._outgoing = bytearray()
        self._client_random: Optional[bytes] = None
        self.established = False
        self.received_records = 0
        self.sent_records = 0
        endpoint.handshakes += 1
        self._counted = True
        if not endpoint.server_side:
            self._handshake()

    # bytes in ------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        """Take raw bytes from the peer; return the application data they complete."""
        self._raw += data
        plain = bytearray()
        for record in _records(self._raw):
            if self._client_random is None and self.endpoint.server_side:
                self._client_random = _client_random(record)
            self._in.write(record)
            if not self.established:
                self._handshake()
                continue
            if record[0] != _APPLICATION_DATA:
                raise TlsError("unexpected TLS record of type %d after the handshake" % record[0])
            self.received_records += 1
            plain += self._read()
        return bytes(plain)

    def record_needed(self) -> int:
        """How many more bytes complete the next record: a reader that takes no more
        than this never removes from the socket what belongs to the kernel."""
        if len(self._raw) < _RECORD_HEADER:
            return _RECORD_HEADER - len(self._raw)
        return _RECORD_HEADER + struct.unpack_from("!H", self._raw, 3)[0] - len(self._raw)

    @property
    def buffered(self) -> int:
        """Raw bytes received that are not a whole record yet."""
        return len(self._raw)

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._drain()
            return
        except ssl.SSLError as err:
            self._drain()
            self._done()
            raise TlsError("TLS handshake failed: %s" % (err.reason or err)) from None
        self._drain()
        self.established = True
        # Anything decrypted together with the last handshake record is application data.
        leftover = self._read()
        if leftover:
            raise TlsError("application data inside the handshake flight")

    def _read(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self._ssl.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as err:
                raise TlsError("TLS error: %s" % (err.reason or err)) from None
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    # bytes out -----------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Encrypt application data (after the handshake)."""
        if not self.established:
            raise TlsError("TLS handshake not complete")
        self._ssl.write(data)
        before = len(self._outgoing)
        self._drain()
        self.sent_records += sum(1 for _record in _records(bytearray(self._outgoing[before:])))

    def data_to_send(self) -> bytes:
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def _drain(self) -> None:
        data = self._out.read()
        if data and self._client_random is None and not self.endpoint.server_side:
            self._client_random = _client_random(data)
        self._outgoing += data

    # identity and hand-over -------------------------------------------------------
    @property
    def peer_names(self) -> FrozenSet[str]:
        return peer_names(self._ssl.getpeercert())

    @property
    def cipher(self) -> str:
        return (self._ssl.cipher() or ("?",))[0]

    def kernel_keys(self) -> Tuple[bytes, bytes]:
        """The (TX, RX) ``crypto_info`` of this end, with the sequence numbers reached."""
        if not self.established or self._client_random is None:
            raise TlsError("TLS handshake not complete")
        secrets = self.endpoint.keylog.secrets(self._client_random)
        try:
            client, server = secrets["CLIENT_TRAFFIC_SECRET_0"], secrets["SERVER_TRAFFIC_SECRET_0"]
        except KeyError:
            raise TlsError("the TLS library logged no traffic secrets for this connection") from None
        mine, theirs = (server, client) if self.endpoint.server_side else (client, server)
        return (crypto_info(self.cipher, mine, self.sent_records),
                crypto_info(self.cipher, theirs, self.received_records))

    def hand_over(self, sock: socket.socket) -> None:
        """Install this session's keys in the kernel: from now on ``sock`` speaks TLS by itself."""
        if self._raw or self._outgoing or self._in.pending:
            raise TlsError("TLS bytes left in userspace; the kernel would lose them")
        tx, rx = self.kernel_keys()
        try:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
            except OSError as err:
                raise TlsError("cannot hand TLS to the kernel: %s" % err.strerror,
                               hint="load the tls kernel module (modprobe tls)" if err.errno == errno.ENOENT
                               else None) from None
            try:
                sock.setsockopt(SOL_TLS, TLS_TX, tx)
                sock.setsockopt(SOL_TLS, TLS_RX, rx)
            except OSError as err:
                raise TlsError("the kernel cannot run %s: %s" % (self.cipher, err.strerror),
                               hint="the kernel loads the cipher's crypto modules (such as gcm) on demand; load them "
                               "if that is disabled here" if err.errno == errno.ENOENT else None) from None
        finally:
            self._done()

    def close(self) -> None:
        self._done()

    def _done(self) -> None:
        if self._counted:
            self._counted = False
            self.endpoint.handshakes -= 1
            if self.endpoint.handshakes == 0:
                self.endpoint.keylog.forget()
