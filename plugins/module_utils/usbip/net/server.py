# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exporting side: an asyncio USB/IP server.

One process serves every client (the C daemon forks per connection). A
connection lives for one request: DEVLIST is answered and closed; a
successful IMPORT hands the socket to the kernel, which serves URBs on it
from then on. Nothing a client sends can stop the loop: malformed bytes, an
unknown opcode, a client that stalls or hangs up mid-message each end that
connection alone, with a log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import logging
import socket
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from .. import validate
from ..device import UsbDevice
from ..errors import UsbipError
from ..protocol import (
    NEED_DATA,
    USBIP_PORT,
    USBIP_TLS_PORT,
    DevlistReply,
    DevlistRequest,
    ImportReply,
    ImportRequest,
    ProtocolError,
    RequestReader,
    Status,
)
from .sockets import tune
from .tls import TlsError

log = logging.getLogger("usbipd")

Network = ipaddress._BaseNetwork  # noqa: SLF001 - the common base of IPv4Network and IPv6Network


@dataclasses.dataclass
class ServerOptions:
    """How the daemon listens and whom it serves.

    ``addresses`` empty means every address, IPv4 and IPv6 on separate
    sockets (as the C daemon). ``allow`` empty means every client.
    """

    port: int = USBIP_PORT
    addresses: Sequence[str] = ()
    allow: Sequence[Network] = ()
    read_timeout: float = 10.0
    max_connections: int = 512
    max_per_client: int = 64
    #: ``max_per_client`` counts per client network of these prefix lengths (one IPv4 host, one IPv6 /64).
    client_prefix_ipv4: int = 32
    client_prefix_ipv6: int = 64
    ipv4: bool = True
    ipv6: bool = True
    #: USB/IP inside TLS on ``tls_port`` (a server :class:`~usbip.net.tls.TlsEndpoint`), and
    #: whether plain USB/IP stays on ``port`` beside it.
    tls: Optional[object] = None
    tls_port: int = USBIP_TLS_PORT
    plain: bool = True


def parse_networks(values: Sequence[str]) -> Tuple[Network, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as err:
            raise UsbipError("invalid client network %r: %s" % (value, err)) from None
    return tuple(networks)


def _client_address(peer) -> Optional[ipaddress._BaseAddress]:  # noqa: SLF001
    try:
        host = peer[0]
        return _ADDRESSES[host]
    except KeyError:
        pass
    except (TypeError, IndexError):
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except (AttributeError, TypeError, ValueError):
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if len(_ADDRESSES) >= 4096:
        _ADDRESSES.clear()
    _ADDRESSES[host] = address
    return address


#: Parsed client addresses by peer host string: a busy server sees the same few over and over.
_ADDRESSES: Dict[object, Optional[ipaddress._BaseAddress]] = {}  # noqa: SLF001
#: OP_REQ_DEVLIST, the one request that comes whole in one segment nearly always.
_DEVLIST_REQUEST = DevlistRequest().encode()


class Devices(Protocol):
    """What the server serves from: in usbipd, the daemon's catalog (``usbip.daemon.catalog``).

    The server knows nothing of drivers or sysfs: it asks for the devices to
    list, hands a socket over, and asks which ST_* code answers an export
    that raised.
    """

    #: Changes whenever the device records may have changed (the encoded DEVLIST reply is keyed on it).
    generation: int

    def invalidate(self) -> None:
        """The world may have changed: rebuild on the next request."""

    def available(self) -> List[UsbDevice]:
        """What DEVLIST answers."""

    def export(self, busid: str, sockfd: int) -> UsbDevice:
        """Hand ``sockfd`` to the kernel for ``busid``; raises :class:`UsbipError` to refuse."""

    def refusal(self, error: UsbipError) -> Status:
        """The ST_* code that answers an export that raised ``error``."""


class Watcher(Protocol):
    """Tells the server when the devices may have changed (``usbip.sysfs.uevents.UeventWatcher``)."""

    #: How the device list is kept current, for the log.
    method: str

    @property
    def watching(self) -> bool:
        """False when nothing is watched: the server then rebuilds the list for every request."""

    def start(self, loop: asyncio.AbstractEventLoop) -> str:
        """Hook into ``loop``; returns :attr:`method`."""

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Unhook from ``loop``."""


class Rescan:
    """The watcher when none is given: nothing is watched, every request rebuilds the list."""

    method = "rescan on every request"
    watching = False

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change

    def start(self, loop: asyncio.AbstractEventLoop) -> str:
        return self.method

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        pass


class UsbipServer:
    """Listens, accepts, and answers DEVLIST and IMPORT from ``devices`` (see :class:`Devices`)."""

    def __init__(self, catalog: Devices, options: ServerOptions,
                 on_change: Optional[Callable[[], None]] = None,
                 watcher: Callable[[Callable[[], None]], Watcher] = Rescan) -> None:
        """``watcher`` makes the watcher from the callback to run on a change (usbipd gives the
        kernel uevent source); ``on_change`` runs after each such change (export rules use it)."""
        self.catalog = catalog
        self.options = options
        self.listening: List[socket.socket] = []
        #: The listening sockets that speak TLS.
        self.tls_listening: List[socket.socket] = []
        self.servers: list = []
        self.connections: Dict[object, int] = {}
        self.active = 0
        self.on_change = on_change
        self.watcher = watcher(self._changed)
        self.stats = {"accepted": 0, "refused": 0, "devlist": 0, "import": 0, "exported": 0, "bad": 0,
                      "tls_refused": 0}
        #: The last DEVLIST reply, keyed on the catalog generation and the devices in it.
        self._devlist: Tuple[object, bytes] = (None, b"")

    def _changed(self) -> None:
        self.catalog.invalidate()
        if self.on_change is not None:
            self.on_change()

    def bind(self) -> None:
        """Open the listening sockets now, so that a daemon reports a taken port
        or a wrong address before it detaches from its terminal."""
        ports = ([(self.options.port, False)] if self.options.plain else []) + \
            ([(self.options.tls_port, True)] if self.options.tls is not None else [])
        for (family, host), (port, secure) in ((t, p) for t in self._bind_targets() for p in ports):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, port))
            except OSError as err:
                sock.close()
                if not self.options.addresses and err.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    log.warning("not listening on %s: %s", _show(host, family), err.strerror)
                    continue
                raise UsbipError("cannot listen on %s port %d: %s"
                                 % (_show(host, family), port, err.strerror)) from None
            if secure:
                self.tls_listening.append(sock)
            # As deep as the C daemon's: a burst of clients (1000 connecting at once in the
            # benchmarks) must wait in the queue, not overflow it and be dropped by the kernel.
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
            self.listening.append(sock)
        if not self.listening:
            raise UsbipError("no address to listen on")

    async def start(self) -> None:
        """Serve on the sockets from :meth:`bind` (bound now if it was not called)."""
        if not self.listening:
            self.bind()
        loop = asyncio.get_running_loop()
        log.info("device list kept current by %s", self.watcher.start(loop))
        for sock in self.listening:
            secure = sock in self.tls_listening
            kind = _TlsConnection if secure else _Connection
            server = await loop.create_server(lambda kind=kind: kind(self), sock=sock, backlog=socket.SOMAXCONN)
            self.servers.append(server)
            name = sock.getsockname()
            log.info("listening on %s port %d%s", _show(name[0], sock.family), name[1],
                     " (USB/IP over TLS)" if secure else "")

    def _bind_targets(self):
        if self.options.addresses:
            for host in self.options.addresses:
                try:
                    address = ipaddress.ip_address(host)
                except ValueError:
                    raise UsbipError("invalid listen address %r (an IPv4 or IPv6 address)" % host) from None
                yield (socket.AF_INET6 if address.version == 6 else socket.AF_INET), host
            return
        if self.options.ipv4:
            yield socket.AF_INET, "0.0.0.0"
        if self.options.ipv6 and socket.has_ipv6:
            yield socket.AF_INET6, "::"

    @property
    def sockets(self) -> list:
        return [s for server in self.servers for s in server.sockets]

    async def serve_forever(self) -> None:
        await asyncio.gather(*(server.serve_forever() for server in self.servers))

    def close(self) -> None:
        self.watcher.stop(asyncio.get_running_loop())
        for server in self.servers:
            server.close()

    # -- admission -------------------------------------------------------------
    def admit(self, peer) -> Optional[str]:
        """Why a new connection must be refused before reading it, or None."""
        address = _client_address(peer)
        if self.options.allow and (address is None or not any(address in net for net in self.options.allow)):
            return "not in the allowed client networks"
        if self.active >= self.options.max_connections:
            return "too many connections (%d)" % self.options.max_connections
        if self.connections.get(address, 0) >= self.options.max_per_client:
            return "too many connections from this client (%d)" % self.options.max_per_client
        return None

    # -- requests --------------------------------------------------------------
    def devlist(self) -> bytes:
        self.stats["devlist"] += 1
        if not self.watcher.watching:
            self.catalog.invalidate()
        devices = tuple(self.catalog.available())
        key = (self.catalog.generation, tuple(d.busid for d in devices))
        if key != self._devlist[0]:
            self._devlist = (key, DevlistReply(devices).encode())
        return self._devlist[1]

    def import_device(self, request: ImportRequest, sock: socket.socket, peer: str) -> Tuple[bytes, bool]:
        """Export the requested device on ``sock``; returns the reply and whether it succeeded."""
        self.stats["import"] += 1
        if not self.watcher.watching:
            self.catalog.invalidate()
        try:
            busid = validate.busid(request.busid)
            tune(sock)
            sock.setblocking(True)  # the kernel's socket, as the C daemon hands it over
            device = self.catalog.export(busid, sock.fileno())
        except UsbipError as err:
            status = self.catalog.refusal(err)
            log.info("import of %r for %s refused: %s (%s)", request.busid, peer, err, status.description)
            return ImportReply(status).encode(), False
        self.stats["exported"] += 1
        log.info("exported %s to %s", busid, peer)
        return ImportReply(Status.OK, device).encode(), True


def _show(host: str, family) -> str:
    if host in ("", "0.0.0.0"):
        return "0.0.0.0 (all IPv4)"
    if host == "::":
        return ":: (all IPv6)"
    return "[%s]" % host if family == socket.AF_INET6 else host


class _Connection(asyncio.Protocol):
    """One client, one request."""

    def __init__(self, server: UsbipServer) -> None:
        self.server = server
        self.reader = RequestReader()
        self.transport: Optional[asyncio.Transport] = None
        self.peer = "?"
        self.address = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.counted = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = "%s:%s" % (peer[0], peer[1]) if peer else "?"
        reason = self.server.admit(peer)
        if reason:
            self.server.stats["refused"] += 1
            log.warning("connection from %s refused: %s", self.peer, reason)
            transport.abort()
            return
        self.server.stats["accepted"] += 1
        self.address = _client_address(peer)
        self.server.active += 1
        self.server.connections[self.address] = self.server.connections.get(self.address, 0) + 1
        self.counted = True
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.server.options.read_timeout, self._timed_out)

    def connection_lost(self, exc) -> None:
        if self.timer:
            self.timer.cancel()
        if self.counted:
            self.counted = False
            self.server.active -= 1
            left = self.server.connections.get(self.address, 1) - 1
            if left:
                self.server.connections[self.address] = left
            else:
                self.server.connections.pop(self.address, None)

    def _timed_out(self) -> None:
        log.info("%s sent no complete request in %.0f s: closed", self.peer, self.server.options.read_timeout)
        self.server.stats["bad"] += 1
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if data == _DEVLIST_REQUEST and self.timer is not None and not self.reader.trailing_data:
            # The common case, whole in one segment: what the reader would conclude, without it.
            self.timer.cancel()
            try:
                self.transport.write(self.server.devlist())
                self.transport.close()
            except Exception:  # the loop must outlive any one request
                log.exception("internal error serving %s", self.peer)
                self.transport.abort()
            return
        self._request_bytes(data)

    def _request_bytes(self, data: bytes) -> None:
        """Bytes of the request (plaintext, over TLS): answer it once it is whole."""
        self.reader.feed(data)
        try:
            request = self.reader.next_message()
        except ProtocolError as err:
            self.server.stats["bad"] += 1
            log.info("bad request from %s: %s: closed", self.peer, err)
            self.transport.abort()
            return
        if request is NEED_DATA:
            return
        self.timer.cancel()
        if self.reader.trailing_data:
            # A client may only speak after our reply; bytes past the request
            # would otherwise reach the kernel as URBs.
            self.server.stats["bad"] += 1
            log.info("%s sent %d bytes past its request: closed", self.peer, len(self.reader.trailing_data))
            self.transport.abort()
            return
        try:
            if isinstance(request, DevlistRequest):
                self._reply(self.server.devlist())
                self.transport.close()
            elif isinstance(request, ImportRequest):
                self._import(request)
        except Exception:  # the loop must outlive any one request
            log.exception("internal error serving %s", self.peer)
            self.transport.abort()

    def _reply(self, data: bytes) -> None:
        self.transport.write(data)

    def _prepare_import(self, raw: socket.socket) -> None:
        """Last step before the socket is the kernel's (over TLS: install the keys)."""

    def _import(self, request: ImportRequest) -> None:
        self.transport.pause_reading()  # from here on the bytes are the kernel's
        sock = self.transport.get_extra_info("socket")
        raw = socket.socket(fileno=sock.fileno())
        try:
            self._prepare_import(raw)
            reply, exported = self.server.import_device(request, raw, self.peer)
            raw.sendall(reply)
        except TlsError as err:
            self.server.stats["bad"] += 1
            log.warning("%s: %s: closed", self.peer, err)
        except OSError as err:
            log.info("%s: reply not sent: %s", self.peer, err)
        finally:
            raw.detach()  # the transport owns the descriptor and closes it
        self.transport.abort()


class _TlsConnection(_Connection):
    """One client, one request, inside TLS 1.3; an exported socket goes to the kernel with its keys.

    The client must present a certificate of the configured CA, and one of the
    allowed names if a list is configured, before a byte of USB/IP is read.
    """

    def __init__(self, server: UsbipServer) -> None:
        super().__init__(server)
        self.session = None
        self.identified = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.counted:
            self.session = self.server.options.tls.session()

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if self.session is not None:
            self.session.close()

    def data_received(self, data: bytes) -> None:
        try:
            plain = self.session.receive(data)
            out = self.session.data_to_send()
            if out:
                self.transport.write(out)
        except TlsError as err:
            self.server.stats["tls_refused"] += 1
            log.warning("connection from %s refused: %s", self.peer, err)
            self.transport.abort()
            return
        except Exception:  # the loop must outlive any one connection
            log.exception("internal error in the TLS session with %s", self.peer)
            self.transport.abort()
            return
        if self.session.established and not self.identified:
            names = self.session.peer_names
            allowed = self.server.options.tls.config.allow_names
            if allowed and not names & allowed:
                self.server.stats["tls_refused"] += 1
                log.warning("connection from %s refused: certificate %s is not an allowed client name",
                            self.peer, ", ".join(sorted(names)) or "(no name)")
                self.transport.abort()
                return
            self.identified = True
            log.debug("%s identified as %s (%s)", self.peer, ", ".join(sorted(names)), self.session.cipher)
        if plain:
            self._request_bytes(plain)

    def _reply(self, data: bytes) -> None:
        self.session.send(data)
        self.transport.write(self.session.data_to_send())

    def _prepare_import(self, raw: socket.socket) -> None:
        self.session.hand_over(raw)
