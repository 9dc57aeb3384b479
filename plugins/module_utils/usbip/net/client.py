# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The importing side on the wire: ask a server for its devices, import one.

The socket an import returns is ready for vhci; handing it over is the
client use case's job (``usbip.attachments``), not the wire's.

Blocking sockets on purpose: a client does one exchange and hands the socket
to the kernel, so an event loop would only add start-up time to every
``usbip attach`` and every Ansible module run.
"""

from __future__ import annotations

import socket
import time
from typing import List, Optional, Tuple

from ..device import UsbDevice
from ..errors import UsbipError
from ..protocol import NEED_DATA, DevlistRequest, ImportRequest, ReplyReader, Status
from .sockets import tune

#: Seconds one exchange may take in all: connecting, the TLS handshake, the request and the whole reply.
DEFAULT_TIMEOUT = 20.0

_IMPORT_REPLY_MAX = 8 + 312


class ConnectError(UsbipError):
    """The server could not be reached."""


class NoReply(UsbipError):
    """The server did not complete its part of the exchange before the deadline."""


class ImportRefused(UsbipError):
    """The server answered an import with a status other than ST_OK."""

    def __init__(self, busid: str, status: Status) -> None:
        self.status = status
        super().__init__("Attach Request for %s failed - %s" % (busid, status.description))


def _seconds(value: float) -> str:
    """``20``, ``1.5``: to a tenth, without a trailing ``.0`` (what is left of a deadline shows as it was set)."""
    text = "%.1f" % value
    return text[:-2] if text.endswith(".0") else text


class _Deadline:
    """One bound for a whole exchange, so that no peer can stretch it.

    A timeout per wait starts again with every segment, and a server sending
    a byte a second would hold the client for as long as it likes. Every
    blocking call is given what is left of the one deadline instead.
    """

    def __init__(self, host: str, port: int, timeout: Optional[float]) -> None:
        self.host, self.port = host, port
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.end = time.monotonic() + self.timeout

    def expired(self) -> NoReply:
        return NoReply("no complete reply from %s:%d in %s s" % (self.host, self.port, _seconds(self.timeout)))

    def arm(self, sock: socket.socket) -> None:
        """Give ``sock``'s next blocking call what is left, or fail when nothing is."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.expired()
        sock.settimeout(left)


def connect(host: str, port: int, timeout: Optional[float] = None) -> socket.socket:
    """Connect to the first address of ``host`` that answers (IPv4 or IPv6), within ``timeout`` in all."""
    return _connect(_Deadline(host, port, timeout))


def _connect(deadline: _Deadline) -> socket.socket:
    """Try the addresses of the host in turn, by the one deadline.

    Each address may take its fair share of what is left: an address that
    never answers (an IPv6 route to nowhere, listed first) costs at most half
    of the time when there are two, and the next one still gets the rest. An
    address refused at once leaves its share to the ones after it.
    """
    host, port = deadline.host, deadline.port
    # A str host is passed through the "idna" codec, even when it is plain ASCII,
    # and importing that codec is a measurable part of `usbip attach`: bytes skip it.
    name = host.encode("ascii") if isinstance(host, str) and host.isascii() else host
    try:
        addresses = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise ConnectError("cannot resolve %s: %s" % (host, err)) from None
    reason = "no address"
    for index, (family, kind, proto, _canonname, address) in enumerate(addresses):
        left = deadline.end - time.monotonic()
        if left <= 0:
            reason = "no answer in %s s" % _seconds(deadline.timeout)
            break
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left / (len(addresses) - index))
            sock.connect(address)
            return sock
        except socket.timeout:
            sock.close()
            reason = "no answer in %s s" % _seconds(deadline.timeout)
        except OSError as err:
            sock.close()
            reason = err.strerror or str(err)
        except BaseException:
            sock.close()
            raise
    raise ConnectError("cannot connect to %s:%d: %s" % (host, port, reason))


def _send(sock: socket.socket, data: bytes, deadline: _Deadline) -> None:
    deadline.arm(sock)
    try:
        sock.sendall(data)
    except socket.timeout:
        raise deadline.expired() from None
    except OSError as err:
        raise UsbipError("connection to the server failed: %s" % err.strerror) from None


def _exchange(sock: socket.socket, request, deadline: _Deadline, limit: Optional[int] = None, session=None):
    """Send one request and read exactly its reply, by the deadline.

    ``limit`` caps what is read so that nothing past an import reply is taken
    off the socket: those bytes belong to the kernel. Over TLS (``session``, a
    :class:`~usbip.net.tls.TlsSession`) the socket is read a record at a time
    for the same reason.
    """
    if session is None:
        _send(sock, request.encode(), deadline)
    else:
        session.send(request.encode())
        _send(sock, session.data_to_send(), deadline)
    reader = ReplyReader(request)
    received = 0
    while True:
        reply = reader.next_message()
        if reply is not NEED_DATA:
            if session is not None and reader.trailing_data:
                raise UsbipError("the server sent %d bytes past its reply" % len(reader.trailing_data))
            return reply
        if session is not None:
            reader.feed(_tls_record(sock, session, deadline))
            continue
        size = 65536 if limit is None else limit - received
        data = _recv(sock, size, deadline)
        received += len(data)
        reader.feed(data)


def _recv(sock: socket.socket, size: int, deadline: _Deadline) -> bytes:
    deadline.arm(sock)
    try:
        data = sock.recv(size)
    except socket.timeout:
        raise deadline.expired() from None
    except OSError as err:
        raise UsbipError("connection to the server failed: %s" % err.strerror) from None
    if not data:
        raise UsbipError("the server closed the connection before a complete reply")
    return data


def _tls_record(sock: socket.socket, session, deadline: _Deadline) -> bytes:
    """Read one whole TLS record, no byte more; the plaintext it carried (maybe none)."""
    while True:
        plain = session.receive(_recv(sock, session.record_needed(), deadline))
        if session.buffered == 0:
            return plain


def _tls_handshake(sock: socket.socket, tls, deadline: _Deadline):
    session = tls.session(deadline.host)
    try:
        while True:
            out = session.data_to_send()
            if out:
                _send(sock, out, deadline)
            if session.established:
                return session
            _tls_record(sock, session, deadline)
    except BaseException:
        session.close()
        raise


def list_devices(host: str, port: int, timeout: Optional[float] = None, tls=None) -> List[UsbDevice]:
    """The server's exportable devices (OP_REQ_DEVLIST); over TLS with ``tls``
    (a client :class:`~usbip.net.tls.TlsEndpoint`).

    ``timeout`` (default :data:`DEFAULT_TIMEOUT`) bounds the whole exchange,
    from the connection to the last byte of the reply.
    """
    deadline = _Deadline(host, port, timeout)
    with _connect(deadline) as sock:
        if tls is None:
            reply = _exchange(sock, DevlistRequest(), deadline)
        else:
            session = _tls_handshake(sock, tls, deadline)
            try:
                reply = _exchange(sock, DevlistRequest(), deadline, session=session)
            finally:
                session.close()
    # ReplyReader(DevlistRequest()) yields nothing but a DevlistReply.
    if reply.status != Status.OK:
        raise UsbipError("the server refused to list devices: %s" % reply.status.description)
    return list(reply.devices)


class ImportConnection:
    """A connection made for one import, its TLS session established, the request not sent yet.

    The steps that only wait on the server (connecting, the TLS handshake)
    come first, so that a caller can make them before it takes a lock and keep
    the lock only for the import itself (``usbip-attachd``). The deadline
    given to :func:`open_import` goes on: the import has what is left of it.
    Close it when no import follows; an import hands the socket over.
    """

    def __init__(self, sock: socket.socket, session, deadline: _Deadline) -> None:
        self._sock: Optional[socket.socket] = sock
        self._session = session
        self._deadline = deadline

    def import_device(self, busid: str) -> Tuple[socket.socket, UsbDevice]:
        """Import ``busid``; returns the socket, ready for vhci, and the device record (once)."""
        sock, session, deadline = self._sock, self._session, self._deadline
        if sock is None:
            raise UsbipError("the connection to %s:%d is closed" % (deadline.host, deadline.port))
        try:
            reply = _exchange(sock, ImportRequest(busid), deadline, limit=_IMPORT_REPLY_MAX, session=session)
            # The codec guarantees an ImportReply that carries a device exactly when its status is OK.
            if reply.status != Status.OK:
                raise ImportRefused(busid, reply.status)
            if reply.device.busid != busid:
                raise UsbipError("the server answered for %s instead of %s" % (reply.device.busid, busid))
            if session is not None:
                session.hand_over(sock)
            sock.settimeout(None)
        except BaseException:
            self.close()
            raise
        self._sock = self._session = None  # the caller's now
        return sock, reply.device

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ImportConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_import(host: str, port: int, timeout: Optional[float] = None, tls=None) -> ImportConnection:
    """Connect for an import (and shake hands, with ``tls``); ``timeout`` bounds it and the import after it."""
    deadline = _Deadline(host, port, timeout)
    sock = _connect(deadline)
    try:
        tune(sock)
        session = _tls_handshake(sock, tls, deadline) if tls is not None else None
    except BaseException:
        sock.close()
        raise
    return ImportConnection(sock, session, deadline)


def import_device(
    host: str, port: int, busid: str, timeout: Optional[float] = None, tls=None
) -> Tuple[socket.socket, UsbDevice]:
    """Import ``busid``; returns the socket, ready for vhci, and the device record.

    With ``tls`` the exchange runs inside TLS and the socket comes back with
    the session's keys installed in the kernel. ``timeout`` (default
    :data:`DEFAULT_TIMEOUT`) bounds the whole exchange.
    """
    return open_import(host, port, timeout, tls).import_device(busid)
