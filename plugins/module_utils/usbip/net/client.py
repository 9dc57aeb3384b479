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
from typing import List, Optional, Tuple

from ..device import UsbDevice
from ..errors import UsbipError
from ..protocol import NEED_DATA, DevlistRequest, ImportRequest, ReplyReader, Status
from .sockets import DEFAULT_TIMEOUT, tune

_IMPORT_REPLY_MAX = 8 + 312


class ConnectError(UsbipError):
    """The server could not be reached."""


class ImportRefused(UsbipError):
    """The server answered an import with a status other than ST_OK."""

    def __init__(self, busid: str, status: Status) -> None:
        self.status = status
        super().__init__("Attach Request for %s failed - %s" % (busid, status.description))


def connect(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    """Connect to the first address of ``host`` that answers (IPv4 or IPv6)."""
    # A str host is passed through the "idna" codec, even when it is plain ASCII,
    # and importing that codec is a measurable part of `usbip attach`: bytes skip it.
    name = host.encode("ascii") if isinstance(host, str) and host.isascii() else host
    try:
        addresses = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise ConnectError("cannot resolve %s: %s" % (host, err)) from None
    last: Optional[OSError] = None
    for family, kind, proto, _canonname, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as err:
            last = err
            sock.close()
    raise ConnectError("cannot connect to %s:%d: %s" % (host, port, last.strerror if last else "no address"))


def _exchange(sock: socket.socket, request, limit: Optional[int] = None, session=None):
    """Send one request and read exactly its reply.

    ``limit`` caps what is read so that nothing past an import reply is taken
    off the socket: those bytes belong to the kernel. Over TLS (``session``, a
    :class:`~usbip.net.tls.TlsSession`) the socket is read a record at a time
    for the same reason.
    """
    if session is None:
        sock.sendall(request.encode())
    else:
        session.send(request.encode())
        sock.sendall(session.data_to_send())
    reader = ReplyReader(request)
    received = 0
    while True:
        reply = reader.next_message()
        if reply is not NEED_DATA:
            if session is not None and reader.trailing_data:
                raise UsbipError("the server sent %d bytes past its reply" % len(reader.trailing_data))
            return reply
        if session is not None:
            reader.feed(_tls_record(sock, session))
            continue
        size = 65536 if limit is None else limit - received
        data = _recv(sock, size)
        received += len(data)
        reader.feed(data)


def _recv(sock: socket.socket, size: int) -> bytes:
    try:
        data = sock.recv(size)
    except socket.timeout:
        raise UsbipError("the server did not answer in time") from None
    except OSError as err:
        raise UsbipError("connection to the server failed: %s" % err.strerror) from None
    if not data:
        raise UsbipError("the server closed the connection before a complete reply")
    return data


def _tls_record(sock: socket.socket, session) -> bytes:
    """Read one whole TLS record, no byte more; the plaintext it carried (maybe none)."""
    while True:
        plain = session.receive(_recv(sock, session.record_needed()))
        if session.buffered == 0:
            return plain


def _tls_handshake(sock: socket.socket, tls, host: str):
    session = tls.session(host)
    try:
        while True:
            out = session.data_to_send()
            if out:
                sock.sendall(out)
            if session.established:
                return session
            _tls_record(sock, session)
    except BaseException:
        session.close()
        raise


def list_devices(host: str, port: int, timeout: float = DEFAULT_TIMEOUT, tls=None) -> List[UsbDevice]:
    """The server's exportable devices (OP_REQ_DEVLIST); over TLS with ``tls``
    (a client :class:`~usbip.net.tls.TlsEndpoint`)."""
    with connect(host, port, timeout) as sock:
        if tls is None:
            reply = _exchange(sock, DevlistRequest())
        else:
            session = _tls_handshake(sock, tls, host)
            try:
                reply = _exchange(sock, DevlistRequest(), session=session)
            finally:
                session.close()
    # ReplyReader(DevlistRequest()) yields nothing but a DevlistReply.
    if reply.status != Status.OK:
        raise UsbipError("the server refused to list devices: %s" % reply.status.description)
    return list(reply.devices)


def import_device(
    host: str, port: int, busid: str, timeout: float = DEFAULT_TIMEOUT, tls=None
) -> Tuple[socket.socket, UsbDevice]:
    """Import ``busid``; returns the socket, ready for vhci, and the device record.

    With ``tls`` the exchange runs inside TLS and the socket comes back with
    the session's keys installed in the kernel.
    """
    sock = connect(host, port, timeout)
    session = None
    try:
        tune(sock)
        if tls is not None:
            session = _tls_handshake(sock, tls, host)
        reply = _exchange(sock, ImportRequest(busid), limit=_IMPORT_REPLY_MAX, session=session)
        # The codec guarantees an ImportReply that carries a device exactly when its status is OK.
        if reply.status != Status.OK:
            raise ImportRefused(busid, reply.status)
        if reply.device.busid != busid:
            raise UsbipError("the server answered for %s instead of %s" % (reply.device.busid, busid))
        if session is not None:
            session.hand_over(sock)
        sock.settimeout(None)
        return sock, reply.device
    except BaseException:
        if session is not None:
            session.close()
        sock.close()
        raise
