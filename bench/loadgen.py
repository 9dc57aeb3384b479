"""A DEVLIST load generator that speaks the USB/IP wire protocol itself.

The same generator drives both daemons: it keeps ``clients`` connections in
flight on one epoll loop; each connects to 127.0.0.1, sends OP_REQ_DEVLIST,
reads until the server closes, checks the reply (header, device count, total
length) and starts over. The latency of a request runs from ``connect()`` to
the end of the reply. It is independent of ``usbip.protocol`` on purpose, so
that a codec bug cannot flatter our daemon.

It also holds idle connections open for the memory measurement
(:func:`open_idle`).
"""

from __future__ import annotations

import errno
import resource
import select
import socket
import struct
import time
from typing import Dict, List, Optional

USBIP_VERSION = 0x0111
OP_REQ_DEVLIST = 0x8005
OP_REP_DEVLIST = 0x0005
REQUEST = struct.pack(">HHI", USBIP_VERSION, OP_REQ_DEVLIST, 0)
DEVICE_RECORD = 312
INTERFACE_RECORD = 4


def check_reply(data: bytes, devices: Optional[int]) -> Optional[str]:
    """Why a DEVLIST reply is not a whole, well-formed one (None when it is)."""
    if len(data) < 12:
        return "short reply (%d bytes)" % len(data)
    version, code, status, ndev = struct.unpack_from(">HHII", data)
    if (version, code, status) != (USBIP_VERSION, OP_REP_DEVLIST, 0):
        return "bad header %04x %04x %d" % (version, code, status)
    if devices is not None and ndev != devices:
        return "%d devices instead of %d" % (ndev, devices)
    offset = 12
    for _ in range(ndev):
        if len(data) < offset + DEVICE_RECORD:
            return "truncated device record"
        offset += DEVICE_RECORD + INTERFACE_RECORD * data[offset + DEVICE_RECORD - 1]
    if offset != len(data):
        return "%d bytes instead of %d" % (len(data), offset)
    return None


class _Request:
    __slots__ = ("sock", "started", "chunks", "sent")

    def __init__(self, sock: socket.socket, started: float) -> None:
        self.sock = sock
        self.started = started
        self.chunks: List[bytes] = []
        self.sent = False


def run(port: int, clients: int, duration: float, devices: Optional[int] = None,
        host: str = "127.0.0.1") -> Dict[str, object]:
    """Keep ``clients`` DEVLIST requests in flight for ``duration`` seconds.

    Returns the completed count, replies/s, latencies (s, sorted), errors
    and the generator's own CPU time (to show it was not the bottleneck).
    """
    ep = select.epoll()
    inflight: Dict[int, _Request] = {}
    latencies: List[float] = []
    errors: Dict[str, int] = {}
    usage0 = resource.getrusage(resource.RUSAGE_SELF)

    def fail(reason: str) -> None:
        errors[reason] = errors.get(reason, 0) + 1

    def start() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        now = time.monotonic()
        rc = sock.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            sock.close()
            fail("connect: " + errno.errorcode.get(rc, str(rc)))
            return
        inflight[sock.fileno()] = _Request(sock, now)
        ep.register(sock.fileno(), select.EPOLLOUT)

    def finish(fd: int, reason: Optional[str]) -> None:
        req = inflight.pop(fd)
        ep.unregister(fd)
        req.sock.close()
        if reason is None:
            latencies.append(time.monotonic() - req.started)
        else:
            fail(reason)

    t0 = time.monotonic()
    stop_at = t0 + duration
    for _ in range(clients):
        start()
    while inflight:
        for fd, _ in ep.poll(1.0):
            req = inflight[fd]
            if not req.sent:
                err = req.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(fd, "connect: " + errno.errorcode.get(err, str(err)))
                else:
                    try:
                        req.sock.send(REQUEST)
                        req.sent = True
                        ep.modify(fd, select.EPOLLIN)
                        continue
                    except OSError as e:
                        finish(fd, "send: " + errno.errorcode.get(e.errno, str(e.errno)))
            else:
                try:
                    data = req.sock.recv(65536)
                except OSError as e:
                    finish(fd, "recv: " + errno.errorcode.get(e.errno, str(e.errno)))
                else:
                    if data:
                        req.chunks.append(data)
                        continue
                    finish(fd, check_reply(b"".join(req.chunks), devices))
            if time.monotonic() < stop_at:
                start()
        if not inflight and time.monotonic() < stop_at:
            for _ in range(clients):  # every connection failed at once
                start()
        if time.monotonic() > stop_at + 30:
            for fd in list(inflight):
                finish(fd, "no reply within 30 s")
    elapsed = time.monotonic() - t0
    ep.close()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    return {
        "clients": clients,
        "completed": len(latencies),
        "elapsed": elapsed,
        "rate": len(latencies) / elapsed if elapsed else 0.0,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "errors": errors,
        "generator_cpu": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
    }


def percentile(values: List[float], pct: float) -> Optional[float]:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return None
    rank = max(1, -(-len(values) * pct // 100))
    return values[int(rank) - 1]


def open_idle(port: int, count: int, host: str = "127.0.0.1", timeout: float = 60) -> List[socket.socket]:
    """``count`` established connections that send nothing (the caller closes them)."""
    socks: List[socket.socket] = []
    ep = select.epoll()
    pending = {}
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            socks.append(sock)
            rc = sock.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                raise OSError(rc, "connect: %s" % errno.errorcode.get(rc, rc))
            pending[sock.fileno()] = sock
            ep.register(sock.fileno(), select.EPOLLOUT)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for fd, _ in ep.poll(1.0):
                sock = pending.pop(fd)
                ep.unregister(fd)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect: %s" % errno.errorcode.get(err, err))
        if pending:
            raise OSError(errno.ETIMEDOUT, "%d connections not established" % len(pending))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    finally:
        ep.close()
    return socks
