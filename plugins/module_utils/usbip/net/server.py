# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exporting side: an asyncio USB/IP server.

One process serves every client (the C daemon forks per connection). A
connection lives for one request: DEVLIST is answered and closed; a
successful IMPORT hands the socket to the kernel, which serves URBs on it
from then on. Nothing a client sends can stop the loop: malformed bytes, an
unknown opcode, a client that stalls or hangs up mid-message each end that
connection alone, with a log line.

Nor can a flood of connections: the descriptor limit is checked against
``max_connections`` before binding, asyncio accepts a bounded number of
connections per pass of the loop, and refusals, timeouts and bad requests
are logged once per client network and interval, the rest counted
(:mod:`usbip.net.limits`, :mod:`usbip.throttle`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import logging
import resource
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
from ..throttle import LogThrottle
from .limits import ACCEPTS_PER_PASS, descriptors_needed, ensure_descriptors
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
    #: ``max_per_client`` counts per client network of these prefix lengths (one IPv4 host, one IPv6 /64):
    #: whoever holds an IPv6 /64 has billions of addresses. Log lines about clients are grouped the same way.
    max_per_client: int = 64
    client_prefix_ipv4: int = 32
    client_prefix_ipv6: int = 64
    #: Seconds over which further refusals, timeouts and bad requests of one client network are
    #: counted into one line (see :class:`usbip.throttle.LogThrottle`).
    log_interval: float = 10.0
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


def allows(allow: Sequence[Network], peer) -> bool:
    """Whether the allow-list ``allow`` admits ``peer`` (a socket's peer address): everyone when it is empty.

    The one check of a client against ``allow``: the server applies it as
    a connection comes in, and usbipd's monitor again to every socket it is
    asked to export. An IPv4-mapped IPv6 peer is judged as its IPv4 address.
    """
    if not allow:
        return True
    address = _client_address(peer)
    return address is not None and any(address in net for net in allow)


#: Parsed client addresses by peer host string: a busy server sees the same few over and over.
_ADDRESSES: Dict[object, Optional[ipaddress._BaseAddress]] = {}  # noqa: SLF001
#: OP_REQ_DEVLIST, the one request that comes whole in one segment nearly always.
_DEVLIST_REQUEST = DevlistRequest().encode()
#: How asyncio reports an accept() that failed for want of descriptors, buffers or memory.
_ACCEPT_FAILED = "socket.accept() out of system resource"


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
        #: Connections held per client network (see :meth:`client_network`).
        self.connections: Dict[Optional[Network], int] = {}
        self.active = 0
        self.on_change = on_change
        self.watcher = watcher(self._changed)
        self.stats = {"accepted": 0, "refused": 0, "devlist": 0, "import": 0, "exported": 0, "bad": 0,
                      "tls_refused": 0, "accept_failed": 0}
        self.throttle = LogThrottle(log, options.log_interval)
        #: The last DEVLIST reply, keyed on the catalog generation and the devices in it.
        self._devlist: Tuple[object, bytes] = (None, b"")
        self._networks: Dict[ipaddress._BaseAddress, Network] = {}  # noqa: SLF001
        self._loop_handler: Optional[tuple] = None

    def _changed(self) -> None:
        self.catalog.invalidate()
        if self.on_change is not None:
            self.on_change()

    def bind(self) -> None:
        """Open the listening sockets now, so that a daemon reports a taken port
        or a wrong address before it detaches from its terminal.

        First the descriptor limit: raised to what ``max_connections`` needs,
        or a :class:`UsbipError` if the hard limit is too low for it."""
        ensure_descriptors(descriptors_needed(self.options), self.options.max_connections)
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
        self._loop_handler = (loop, loop.get_exception_handler())
        loop.set_exception_handler(self._loop_exception)
        self.throttle.schedule = loop.call_later
        log.info("device list kept current by %s", self.watcher.start(loop))
        for sock in self.listening:
            secure = sock in self.tls_listening
            kind = _TlsConnection if secure else _Connection
            # asyncio uses ``backlog`` twice: for listen(), and as the number of connections it accepts
            # in one go when the socket is readable. A burst must wait in a deep kernel queue, but be
            # accepted a few at a time: thousands accepted at once are thousands of descriptors before
            # the first is refused and closed. So asyncio gets the small number, which it passes to
            # listen() while it starts serving (here, once), and the queue is deepened again right after.
            server = await loop.create_server(lambda kind=kind: kind(self), sock=sock, backlog=ACCEPTS_PER_PASS)
            sock.listen(socket.SOMAXCONN)
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
        loop = asyncio.get_running_loop()
        self.watcher.stop(loop)
        for server in self.servers:
            server.close()
        self.throttle.flush()
        self.throttle.schedule = None
        if self._loop_handler is not None and self._loop_handler[0] is loop:
            loop.set_exception_handler(self._loop_handler[1])
            self._loop_handler = None

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """Failed accepts as a counted warning, not a traceback each; the rest to the previous handler.

        asyncio reports each failed accept() (EMFILE, ENFILE, ENOBUFS, ENOMEM)
        with a traceback and tries again a second later; a flood repeats that
        thousands of times a second unless it is throttled.
        """
        if context.get("message") == _ACCEPT_FAILED:
            self.stats["accept_failed"] += 1
            err = context.get("exception")
            reason = (err.strerror if isinstance(err, OSError) and err.strerror else str(err)) or "unknown error"
            self.throttle.event("failed accepts: %s" % reason, logging.WARNING,
                                "cannot accept connections: %s (descriptor limit %d); new clients wait",
                                reason, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
            return
        previous = self._loop_handler[1] if self._loop_handler is not None else None
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    # -- admission -------------------------------------------------------------
    def admit(self, peer) -> Optional[str]:
        """Why a new connection must be refused before reading it, or None.

        The allow-list judges the address itself; ``max_per_client`` counts
        the connections of the client's network (:meth:`client_network`).
        """
        if not allows(self.options.allow, peer):
            return "not in the allowed client networks"
        address = _client_address(peer)
        if self.active >= self.options.max_connections:
            return "too many connections (%d)" % self.options.max_connections
        if self.connections.get(self.client_network(address), 0) >= self.options.max_per_client:
            return "too many connections from this client (%d)" % self.options.max_per_client
        return None

    def client_network(self, address: Optional[ipaddress._BaseAddress]) -> Optional[Network]:  # noqa: SLF001
        """The network ``address`` counts in: its ``client_prefix_ipv4`` or ``client_prefix_ipv6`` prefix."""
        if address is None:
            return None
        network = self._networks.get(address)
        if network is None:
            if address.version == 6:
                network = ipaddress.IPv6Network((address, self.options.client_prefix_ipv6), strict=False)
            else:
                network = ipaddress.IPv4Network((address, self.options.client_prefix_ipv4), strict=False)
            if len(self._networks) >= 4096:
                self._networks.clear()
            self._networks[address] = network
        return network

    def refused(self, peer: str, network: Optional[Network], reason: str) -> None:
        """Log a refused connection: the first of its network and reason in the interval, the rest counted."""
        self.throttle.event("connections from %s refused: %s" % (_subject(network), reason), logging.WARNING,
                            "connection from %s refused: %s", peer, reason)

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

    def import_device(self, request: ImportRequest, sock: socket.socket, peer: str,
                      network: Optional[Network] = None) -> Tuple[bytes, bool]:
        """Export the requested device on ``sock``; returns the reply and whether it succeeded.

        ``network`` (the client's, see :meth:`client_network`) groups the log lines of refused imports.
        """
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
            self.throttle.event("imports from %s refused: %s" % (_subject(network), status.description), logging.INFO,
                                "import of %r for %s refused: %s (%s)", request.busid, peer, err, status.description)
            return ImportReply(status).encode(), False
        self.stats["exported"] += 1
        log.info("exported %s to %s", busid, peer)
        return ImportReply(Status.OK, device).encode(), True


def _subject(network: Optional[Network]) -> str:
    """A client network as log lines name it: the address alone for a single host."""
    if network is None:
        return "an unknown address"
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


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
        self.network: Optional[Network] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.counted = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = "%s:%s" % (peer[0], peer[1]) if peer else "?"
        self.network = self.server.client_network(_client_address(peer))
        reason = self.server.admit(peer)
        if reason:
            self.server.stats["refused"] += 1
            self.server.refused(self.peer, self.network, reason)
            transport.abort()
            return
        self.server.stats["accepted"] += 1
        self.server.active += 1
        self.server.connections[self.network] = self.server.connections.get(self.network, 0) + 1
        self.counted = True
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.server.options.read_timeout, self._timed_out)

    def connection_lost(self, exc) -> None:
        if self.timer:
            self.timer.cancel()
        if self.counted:
            self.counted = False
            self.server.active -= 1
            left = self.server.connections.get(self.network, 1) - 1
            if left:
                self.server.connections[self.network] = left
            else:
                self.server.connections.pop(self.network, None)

    def _timed_out(self) -> None:
        seconds = self.server.options.read_timeout
        self.server.throttle.event(
            "clients of %s closed for sending no complete request in %.0f s" % (_subject(self.network), seconds),
            logging.INFO, "%s sent no complete request in %.0f s: closed", self.peer, seconds)
        self.server.stats["bad"] += 1
        self.transport.abort()

    def _bad(self, message: str, *args) -> None:
        """A request that cannot be served: counted, logged (throttled), and the connection closed."""
        self.server.stats["bad"] += 1
        self.server.throttle.event("bad requests from %s: closed" % _subject(self.network), logging.INFO,
                                   message, *args)
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
            self._bad("bad request from %s: %s: closed", self.peer, err)
            return
        if request is NEED_DATA:
            return
        self.timer.cancel()
        if self.reader.trailing_data:
            # A client may only speak after our reply; bytes past the request
            # would otherwise reach the kernel as URBs.
            self._bad("%s sent %d bytes past its request: closed", self.peer, len(self.reader.trailing_data))
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
            reply, exported = self.server.import_device(request, raw, self.peer, self.network)
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
        if not self.counted:
            return
        try:
            self.session = self.server.options.tls.session()
        except TlsError as err:  # too many handshakes in progress
            self.server.stats["tls_refused"] += 1
            self.server.refused(self.peer, self.network, str(err))
            transport.abort()

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if self.session is not None:
            self.session.close()

    def data_received(self, data: bytes) -> None:
        if self.session is None:  # refused in connection_made: the transport is closing
            return
        try:
            plain = self.session.receive(data)
            out = self.session.data_to_send()
            if out:
                self.transport.write(out)
        except TlsError as err:
            self.server.stats["tls_refused"] += 1
            self.server.refused(self.peer, self.network, str(err))
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
                self.server.refused(self.peer, self.network, "certificate %s is not an allowed client name"
                                    % (", ".join(sorted(names)) or "(no name)"))
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
