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

No key log is shared between handshakes: an endpoint keeps a pool of
:class:`ssl.SSLContext` objects, each with a key log of its own, and a
session holds one context from its first byte to its end (hand-over, failure
or close). So a session reads nothing but its own handshake's secrets; when
it ends, its key log is overwritten with zeros and emptied before the
context serves another handshake, and a flood of abandoned handshakes grows
nothing. Contexts are made when needed, from certificate, key and CA bytes
read once when the endpoint is made (a daemon may read its key only before
it drops privileges); a context costs 1 to 2 ms, 30 to 40 KiB and two
descriptors (the key log and OpenSSL's handle on it), the material three
descriptors for the endpoint. A server endpoint runs at most
``max_handshakes`` sessions at once (:class:`TlsBusy` past that), so its
pool never holds more contexts, and it refuses a ClientHello whose random
it has seen on a session in progress or among the last
:data:`RECENT_RANDOMS`: a replay can never complete, and refusing it early
saves the server's signature.

Secrets are dropped as soon as the kernel has them: the key log is read into
a ``bytearray``, the traffic secrets, the derived keys and the
``crypto_info`` blocks live in ``bytearray`` objects overwritten with zeros
right after ``setsockopt`` (or its failure), the key log is wiped, and the
SSL object and its buffers are released. Beyond what Python controls, two
copies are scrubbed on a best-effort basis (see :meth:`TlsEndpoint._scrub`):
OpenSSL frees an SSL object without clearing the secrets in it, and the C
library's buffer of the key log file keeps the last line written. What
Python cannot promise: objects it makes immutable, such as the ``bytes``
each :mod:`hmac` block comes back as (and the intermediate values inside
:mod:`hmac` on Pythons that compute it in Python), are freed, not cleared,
and stay readable in the process until the memory is reused; OpenSSL holds
its own copies as long as the SSL object lives; and after a session that
ends without a hand-over (a DEVLIST, a failure), its last key log line
stays in that C library buffer until the context's next handshake. Core
dumps and swap are the service unit's concern.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import fcntl
import hmac
import ipaddress
import os
import socket
import ssl
import struct
import threading
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

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
#: Client randoms a server endpoint remembers after their sessions end, to refuse replayed ClientHellos.
RECENT_RANDOMS = 4096
#: The key log labels of the two application traffic secrets (NSS key log format).
_TRAFFIC_SECRETS = ("CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0")


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


class TlsBusy(TlsError):
    """A server endpoint already runs ``max_handshakes`` sessions: refuse the connection."""


def wipe(buffer: bytearray) -> None:
    """Overwrite ``buffer`` with zeros in place (its size stays, so it is not reallocated)."""
    with memoryview(buffer) as view:
        view[:] = bytes(len(view))


# -- key schedule ----------------------------------------------------------------
def expand_label(secret: bytes, label: bytes, length: int, digest: str = "sha256", context: bytes = b"") -> bytearray:
    """HKDF-Expand-Label of RFC 8446, 7.1, into a ``bytearray`` the caller wipes."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + struct.pack("!B", len(context)) + context
    out = bytearray(length)
    block, filled, counter = b"", 0, 1
    while filled < length:
        mac = hmac.new(secret, digestmod=digest)
        mac.update(block)
        mac.update(info)
        mac.update(bytes((counter,)))
        block = mac.digest()
        size = min(len(block), length - filled)
        out[filled:filled + size] = memoryview(block)[:size]
        filled += size
        counter += 1
    return out


def crypto_info(cipher: str, secret: bytes, sequence: int) -> bytearray:
    """The ``struct tls12_crypto_info_*`` for one direction, as ``setsockopt`` takes it
    (a ``bytearray`` the caller wipes once the kernel has it)."""
    suite = SUITES.get(cipher)
    if suite is None:
        raise TlsError("cipher suite %s has no kernel TLS counterpart" % cipher)
    key = expand_label(secret, b"key", suite.key_size, suite.digest)
    iv = expand_label(secret, b"iv", 12, suite.digest)
    try:
        nonce = 12 - suite.salt_size
        # version, cipher, iv (the IV's last bytes), key, salt (its first bytes), record sequence number
        info = bytearray(4 + nonce + suite.key_size + suite.salt_size + 8)
        struct.pack_into("=HH", info, 0, TLS_1_3_VERSION, suite.kernel_cipher)
        at = 4
        info[at:at + nonce] = memoryview(iv)[suite.salt_size:]
        at += nonce
        info[at:at + suite.key_size] = key
        at += suite.key_size
        info[at:at + suite.salt_size] = memoryview(iv)[:suite.salt_size]
        struct.pack_into("!Q", info, at + suite.salt_size, sequence)
    finally:
        wipe(key)
        wipe(iv)
    return info


#: Hex digit -> value, -1 for anything else.
_HEX_DIGITS = tuple(int(chr(c), 16) if chr(c) in "0123456789abcdefABCDEF" else -1 for c in range(256))


def _unhex(text: bytearray, start: int, end: int) -> Optional[bytearray]:
    """``text[start:end]`` read as hex, into a new ``bytearray`` (no immutable copy of the digits)."""
    if (end - start) % 2:
        return None
    out = bytearray((end - start) // 2)
    for index in range(len(out)):
        high, low = _HEX_DIGITS[text[start + 2 * index]], _HEX_DIGITS[text[start + 2 * index + 1]]
        if high < 0 or low < 0:
            wipe(out)
            return None
        out[index] = high << 4 | low
    return out


class KeyLog:
    """Traffic secrets that :mod:`ssl` writes for the handshakes of one :class:`ssl.SSLContext`.

    An anonymous in-memory file: it never touches a disk and is not inherited
    by programs this one runs (``MFD_CLOEXEC``). A pooled context has one
    handshake at a time, so its key log holds that handshake's lines alone.
    """

    def __init__(self) -> None:
        self._fd = os.memfd_create("usbip-tls-keylog", os.MFD_CLOEXEC)
        self.path = "/proc/self/fd/%d" % self._fd

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def secrets(self, client_random: bytes, labels: Iterable[str] = _TRAFFIC_SECRETS) -> Dict[str, bytearray]:
        """Label -> secret of the handshake of ``client_random``, for the labels asked
        (``bytearray`` objects the caller wipes)."""
        wanted_labels = frozenset(labels)
        wanted_random = client_random.hex().encode("ascii")
        text = bytearray(self.size)
        found: Dict[str, bytearray] = {}
        try:
            length = os.preadv(self._fd, [text], 0) if text else 0
            start = 0
            while start < length:
                end = text.find(b"\n", start, length)
                end = length if end < 0 else end
                # LABEL <client random in hex> <secret in hex>
                first = text.find(b" ", start, end)
                second = text.find(b" ", first + 1, end) if first > start else -1
                if second > first + 1:
                    label = text[start:first].decode("ascii", "replace")
                    if label in wanted_labels and text[first + 1:second].lower() == wanted_random:
                        secret = _unhex(text, second + 1, end)
                        if secret is not None:
                            previous = found.pop(label, None)
                            if previous is not None:
                                wipe(previous)
                            found[label] = secret
                start = end + 1
        finally:
            wipe(text)
        return found

    def wipe(self) -> None:
        """Overwrite what was written with zeros, then empty the file (its pages are freed)."""
        size = self.size
        if size:
            os.pwrite(self._fd, bytes(size), 0)
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        if self._fd >= 0:
            self.wipe()
            os.close(self._fd)
            self._fd = -1


class _Material:
    """The PEM files of an endpoint, read once into sealed memory files.

    Contexts made later load them from ``/proc/self/fd``, which works after
    the process has given up the right to read the original files. The bytes
    go from file to memory file through one ``bytearray``, wiped after.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        self._fds: List[int] = []
        try:
            for path in paths:
                self._fds.append(self._copy(path))
        except OSError:
            self.close()
            raise
        self.paths = tuple("/proc/self/fd/%d" % fd for fd in self._fds)

    @staticmethod
    def _copy(path: str) -> int:
        fd = os.memfd_create("usbip-tls-pem", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        chunk = bytearray(65536)
        try:
            with open(path, "rb", buffering=0) as source, memoryview(chunk) as view:
                while True:
                    size = source.readinto(chunk)
                    if not size:
                        break
                    written = 0
                    while written < size:
                        written += os.write(fd, view[written:size])
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        except OSError:
            os.close(fd)
            raise
        finally:
            wipe(chunk)
        return fd

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


class _Context:
    """One :class:`ssl.SSLContext` of a pool and the key log it writes."""

    __slots__ = ("ssl_context", "keylog")

    def __init__(self, ssl_context: ssl.SSLContext, keylog: KeyLog) -> None:
        self.ssl_context = ssl_context
        self.keylog = keylog


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
    """One end of USB/IP over kTLS: a pool of :class:`ssl.SSLContext`, each with its own key log.

    A session takes a context from the pool (a new one if none is free) and
    gives it back, its key log wiped, when it ends. The first context is made
    here, so that a bad certificate, key or CA is an error now.
    """

    def __init__(self, config: TlsConfig, server_side: bool) -> None:
        self.config = config
        self.server_side = server_side
        self._lock = threading.Lock()
        self._contexts: List[_Context] = []
        self._free: List[_Context] = []
        self._open_randoms: Set[bytes] = set()
        self._recent_randoms: "collections.OrderedDict[bytes, None]" = collections.OrderedDict()
        self._hello: Optional[bytes] = None
        try:
            self._material = _Material((config.cert, config.key, config.ca))
        except OSError as err:
            raise self._load_error(err) from None
        try:
            self._free.append(self._new_context())
        except TlsError:
            self._material.close()
            raise

    def _load_error(self, err: Exception) -> TlsError:
        return TlsError("cannot load the TLS certificate, key or CA (%s, %s, %s): %s"
                        % (self.config.cert, self.config.key, self.config.ca, err))

    def _new_context(self) -> _Context:
        cert, key, ca = self._material.paths
        keylog = KeyLog()
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if self.server_side else ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.maximum_version = ssl.TLSVersion.TLSv1_3
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_cert_chain(cert, key)
            ctx.load_verify_locations(cafile=ca)
            if self.server_side:
                ctx.num_tickets = 0
            ctx.post_handshake_auth = False
            ctx.keylog_filename = keylog.path
        except (OSError, ssl.SSLError) as err:
            keylog.close()
            raise self._load_error(err) from None
        keylog.wipe()  # the header line :mod:`ssl` writes to a new key log
        context = _Context(ctx, keylog)
        self._contexts.append(context)
        return context

    @property
    def handshakes(self) -> int:
        """Sessions in progress (each holds a context until it ends)."""
        return len(self._contexts) - len(self._free)

    @property
    def keylogs(self) -> Tuple[KeyLog, ...]:
        """The key log of every context made so far, free or in use."""
        return tuple(context.keylog for context in self._contexts)

    def session(self, server_hostname: Optional[str] = None) -> "TlsSession":
        """A new connection's session; a server endpoint raises :class:`TlsBusy` when
        ``max_handshakes`` sessions are in progress."""
        name = None if self.server_side else (self.config.server_name or server_hostname)
        return TlsSession(self, self._acquire(), name)

    def _acquire(self) -> _Context:
        with self._lock:
            if self.server_side and self.handshakes >= self.config.max_handshakes:
                raise TlsBusy("too many TLS handshakes in progress (%d)" % self.config.max_handshakes)
            if self._free:
                return self._free.pop()
            return self._new_context()

    def _release(self, context: _Context, client_random: Optional[bytes], handed_over: bool) -> None:
        """A session ended (its SSL object already dropped): wipe its key log and give its context back."""
        try:
            if not context.keylog.closed:
                self._scrub(context, handed_over)
                context.keylog.wipe()
        finally:
            with self._lock:
                if client_random is not None:
                    self._open_randoms.discard(client_random)
                if context in self._contexts:  # not after close()
                    self._free.append(context)

    def _scrub(self, context: _Context, handed_over: bool) -> None:
        """Best effort against the copies of a session's secrets that OpenSSL and the C library keep.

        OpenSSL frees an SSL object without clearing the secrets inside it, and
        allocates a new one zeroed, most likely in the memory just freed: so one
        throw-away SSL object follows every session. The C library's buffer of
        the key log file keeps the last line OpenSSL wrote; after a server's
        hand-over, a throw-away handshake on the same context writes lines of
        its own over it (about 0.3 ms, once per import).
        """
        incoming = ssl.MemoryBIO()
        scratch = context.ssl_context.wrap_bio(incoming, ssl.MemoryBIO(), server_side=self.server_side,
                                               server_hostname=None if self.server_side else "localhost")
        if handed_over and self.server_side:
            incoming.write(self._scratch_hello())
            try:
                scratch.do_handshake()
            except ssl.SSLError:  # it waits for a client flight that never comes
                pass
        del scratch

    def _scratch_hello(self) -> bytes:
        """A ClientHello of an anonymous client of no consequence, for :meth:`_scrub` (made once)."""
        if self._hello is None:
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
            client.minimum_version = ssl.TLSVersion.TLSv1_3
            outgoing = ssl.MemoryBIO()
            try:
                client.wrap_bio(ssl.MemoryBIO(), outgoing).do_handshake()
            except ssl.SSLWantReadError:
                pass
            self._hello = outgoing.read()
        return self._hello

    def _claim_random(self, client_random: bytes) -> None:
        """Refuse a client random seen on a session in progress or recently (a replayed ClientHello)."""
        with self._lock:
            if client_random in self._open_randoms or client_random in self._recent_randoms:
                raise TlsError("duplicate TLS client random (replayed ClientHello?)")
            self._open_randoms.add(client_random)
            self._recent_randoms[client_random] = None
            if len(self._recent_randoms) > RECENT_RANDOMS:
                self._recent_randoms.popitem(last=False)

    def close(self) -> None:
        """Wipe and close every key log and the certificate material (sessions still open fail)."""
        with self._lock:
            contexts, self._contexts, self._free = self._contexts, [], []
        for context in contexts:
            context.ssl_context.keylog_filename = None  # closes the context's own handle on the file
            context.keylog.close()
        self._material.close()


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
    done, which is what :meth:`kernel_keys` needs. The session holds one
    context of its endpoint's pool until :meth:`hand_over` or :meth:`close`
    (or a failed handshake); then the SSL object is gone and only the peer's
    names and the cipher's name remain.
    """

    def __init__(self, endpoint: TlsEndpoint, context: _Context, server_hostname: Optional[str]) -> None:
        self.endpoint = endpoint
        self._context: Optional[_Context] = context
        self._raw = bytearray()
        self._outgoing = bytearray()
        self._client_random: Optional[bytes] = None
        self._random_claimed = False
        self._handed_over = False
        self._peer_names: FrozenSet[str] = frozenset()
        self._cipher = "?"
        self.established = False
        self.received_records = 0
        self.sent_records = 0
        try:
            self._in: Optional[ssl.MemoryBIO] = ssl.MemoryBIO()
            self._out: Optional[ssl.MemoryBIO] = ssl.MemoryBIO()
            self._ssl: Optional[ssl.SSLObject] = context.ssl_context.wrap_bio(
                self._in, self._out, server_side=endpoint.server_side, server_hostname=server_hostname)
        except BaseException:
            self._done()
            raise
        if not endpoint.server_side:
            self._handshake()

    def _live(self) -> ssl.SSLObject:
        if self._ssl is None:
            raise TlsError("the TLS session has ended")
        return self._ssl

    # bytes in ------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        """Take raw bytes from the peer; return the application data they complete.

        A :class:`TlsError` ends the session (nothing can follow a bad record).
        """
        self._live()
        try:
            return self._receive(data)
        except TlsError:
            self._done()
            raise

    def _receive(self, data: bytes) -> bytes:
        self._raw += data
        plain = bytearray()
        for record in _records(self._raw):
            if self._client_random is None and self.endpoint.server_side:
                self._client_random = _client_random(record)
                self.endpoint._claim_random(self._client_random)  # noqa: SLF001 - the endpoint's own session
                self._random_claimed = True
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
        self._peer_names = peer_names(self._ssl.getpeercert())
        self._cipher = (self._ssl.cipher() or ("?",))[0]
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
        self._live().write(data)
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
        """The names of the peer's verified certificate (see :func:`peer_names`); empty before the handshake."""
        return self._peer_names

    @property
    def cipher(self) -> str:
        return self._cipher

    def kernel_keys(self) -> Tuple[bytearray, bytearray]:
        """The (TX, RX) ``crypto_info`` of this end, with the sequence numbers reached
        (``bytearray`` objects the caller wipes)."""
        if not self.established or self._client_random is None:
            raise TlsError("TLS handshake not complete")
        if self._context is None:
            raise TlsError("the TLS session has ended")
        secrets = self._context.keylog.secrets(self._client_random)
        try:
            try:
                client, server = secrets["CLIENT_TRAFFIC_SECRET_0"], secrets["SERVER_TRAFFIC_SECRET_0"]
            except KeyError:
                raise TlsError("the TLS library logged no traffic secrets for this connection") from None
            mine, theirs = (server, client) if self.endpoint.server_side else (client, server)
            tx = crypto_info(self._cipher, mine, self.sent_records)
            try:
                rx = crypto_info(self._cipher, theirs, self.received_records)
            except BaseException:
                wipe(tx)
                raise
            return tx, rx
        finally:
            for secret in secrets.values():
                wipe(secret)

    def hand_over(self, sock: socket.socket) -> None:
        """Install this session's keys in the kernel: from now on ``sock`` speaks TLS by itself.

        Whatever happens, the session ends here: its keys are wiped, its key
        log emptied and its SSL object released.
        """
        try:
            self._live()
            if self._raw or self._outgoing or self._in.pending:
                raise TlsError("TLS bytes left in userspace; the kernel would lose them")
            tx, rx = self.kernel_keys()
            self._handed_over = True
            try:
                self._install(sock, tx, rx)
            finally:
                wipe(tx)
                wipe(rx)
        finally:
            self._done()

    def _install(self, sock: socket.socket, tx: bytearray, rx: bytearray) -> None:
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
            raise TlsError("the kernel cannot run %s: %s" % (self._cipher, err.strerror),
                           hint="the kernel loads the cipher's crypto modules (such as gcm) on demand; load them "
                           "if that is disabled here" if err.errno == errno.ENOENT else None) from None

    def close(self) -> None:
        self._done()

    def _done(self) -> None:
        """End the session: drop the SSL object and its buffers, wipe the key log, give the context back."""
        context, self._context = self._context, None
        self._ssl = self._in = self._out = None
        if context is not None:
            claimed = self._client_random if self._random_claimed else None
            self.endpoint._release(context, claimed, self._handed_over)  # noqa: SLF001 - the endpoint's own session
