# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz a live ``usbipd`` on 127.0.0.1: mutated and truncated requests, one per connection.

The daemon is :class:`usbip.net.server.UsbipServer` -- the class the
``usbipd`` command runs -- with the real sysfs drivers on a fake kernel tree
(``tests/unit/sysfs/fake_usb.py``): host mode exports ``17-1`` (bound to
usbip-host), device mode ``usbip-vudc.0`` (a gadget bound). Each input is a
mutation of a valid request (:mod:`tests.fuzz.mutator`), sent in one to
four pieces, and checked against what the codec says it is:

* not a request (a ProtocolError): the server closes without a byte;
* a request cut short: the server waits (no reply); we hang up, with a
  reset or, one time in eight, a FIN that the server must answer by closing;
* a whole request: the exact reply -- the device list, or for IMPORT the
  record (ST_OK) of an exported busid and ST_NODEV for any other -- or, if
  bytes follow the request, possibly nothing.

After every ``--check-every`` inputs a normal DEVLIST (``net.client``) must
list the exported device. The ``usbipd`` logger and the event loop's
exception handler are tapped: any "internal error", any ERROR record or any
exception reaching the loop is a failure. Traffic goes to 127.0.0.1 only and
every wait is bounded.

    .venv/bin/python -m tests.fuzz.server --inputs 1000000 [--mode host|device] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import errno
import logging
import socket
import struct
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

from fake_usb import standard_tree  # on the import path by tests/fuzz/__init__.py (or pytest's pythonpath)

from usbip.daemon.catalog import Catalog, exporter_for
from usbip.net import client
from usbip.net.server import ServerOptions, UsbipServer
from usbip.protocol import (
    NEED_DATA,
    DevlistReply,
    ImportReply,
    ProtocolError,
    RequestReader,
    Status,
    decode_reply,
)
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.uevents import UeventWatcher

from .mutator import Mutator, codec_seeds, request_seeds

EXPORTED = {"host": "17-1", "device": "usbip-vudc.0"}
_LINGER_RESET = struct.pack("ii", 1, 0)


class LogTap(logging.Handler):
    """Counts the daemon's log records and keeps the alarming ones."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.levels: Dict[str, int] = {}
        self.alarms: List[str] = []
        self.recent: collections.deque = collections.deque(maxlen=1000)

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] = self.levels.get(record.levelname, 0) + 1
        message = record.getMessage()
        self.recent.append("%s: %s" % (record.levelname, message))
        if record.levelno >= logging.ERROR or "internal error" in message or record.exc_info:
            if len(self.alarms) < 50:
                self.alarms.append("%s: %s" % (record.levelname, message))

    def loop_exception(self, loop, context) -> None:
        if len(self.alarms) < 50:
            self.alarms.append("event loop: %s %r" % (context.get("message"), context.get("exception")))


class _Forget(list):
    def append(self, item) -> None:  # FakeSysfs records every path read: not for a million inputs
        pass


def fake_kernel(root: str, mode: str) -> Sysfs:
    """The standard fake tree with one device offered in ``mode`` (and a gadget-less ``usbip-vudc.1``)."""
    tree = standard_tree(root)
    if mode == "host":
        tree.kernel_host_bind("17-1")
    sysfs = tree.sysfs()  # fails like the kernel: ENODEV from a gadget-less dev_desc
    sysfs.touched = _Forget()
    return sysfs


class LiveServer:
    """A UsbipServer on its own event-loop thread, logger and loop tapped."""

    def __init__(self, sysfs: Sysfs, mode: str, options: Optional[ServerOptions] = None) -> None:
        backend = exporter_for([mode], sysfs)
        self.tap = LogTap()
        self.log = logging.getLogger("usbipd")
        self._saved = (self.log.level, self.log.propagate)
        self.log.addHandler(self.tap)
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        self.server = UsbipServer(Catalog(backend), options or ServerOptions(
            port=0, addresses=["127.0.0.1"], read_timeout=5.0, max_connections=512, max_per_client=64),
            watcher=UeventWatcher)
        self.server.bind()
        self.port = self.server.listening[0].getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self.tap.loop_exception)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="usbipd-fuzz", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the server did not start")

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.log.removeHandler(self.tap)
            self.log.setLevel(self._saved[0])
            self.log.propagate = self._saved[1]


@dataclasses.dataclass
class Report:
    mode: str
    inputs: int = 0
    seconds: float = 0.0
    devlist_checks: int = 0
    outcomes: Dict[str, int] = dataclasses.field(default_factory=dict)
    failures: List[str] = dataclasses.field(default_factory=list)
    log_levels: Dict[str, int] = dataclasses.field(default_factory=dict)
    stats: Dict[str, int] = dataclasses.field(default_factory=dict)

    def count(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def text(self) -> str:
        lines = [
            "mode %s: %d inputs in %.1f s (%.0f/s), %d DEVLIST checks, %d failures"
            % (self.mode, self.inputs, self.seconds, self.inputs / max(self.seconds, 1e-9), self.devlist_checks,
               len(self.failures)),
            "  outcomes: " + ", ".join("%s %d" % kv for kv in sorted(self.outcomes.items())),
            "  usbipd log records: " + ", ".join("%s %d" % kv for kv in sorted(self.log_levels.items())),
            "  server stats: " + ", ".join("%s %d" % kv for kv in sorted(self.stats.items())),
        ]
        lines += ["FAILURE " + f for f in self.failures[:20]]
        return "\n".join(lines)


class Hang(Exception):
    """The server neither answered nor closed within the bound."""


def receive_all(sock: socket.socket, chunks: Optional[List[bytes]] = None) -> bytes:
    """Everything the peer sends until it closes or resets the connection; the socket's timeout propagates.

    Shared with the unit tests that talk to a server over plain sockets. ``chunks``, when given,
    collects what arrived, so that a caller can say how far a read that timed out got.
    """
    chunks = [] if chunks is None else chunks
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _receive_all(sock: socket.socket) -> bytes:
    chunks: List[bytes] = []
    try:
        return receive_all(sock, chunks)
    except socket.timeout:
        raise Hang("no reply and no close after %d bytes" % sum(map(len, chunks))) from None


def _send(sock: socket.socket, pieces: List[bytes]) -> bool:
    """False when the server hung up while we were still sending (it may: it read enough)."""
    try:
        for piece in pieces:
            sock.sendall(piece)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _expected_reply_check(request, reply: bytes, exported: str) -> Optional[str]:
    """None when ``reply`` is the right answer to ``request``, else what is wrong."""
    try:
        answer = decode_reply(reply, request)
    except ProtocolError as err:
        return "reply to %r does not decode: %s (%s)" % (request, err, reply[:64].hex())
    if isinstance(answer, DevlistReply):
        busids = [d.busid for d in answer.devices]
        return None if busids == [exported] else "DEVLIST listed %r" % busids
    assert isinstance(answer, ImportReply)
    want = Status.OK if request.busid == exported else Status.NODEV
    return None if answer.status == want else "IMPORT %r answered %s" % (request.busid, answer.status.name)


def run(inputs: int, mode: str = "host", seed: int = 0, check_every: int = 1000, timeout: float = 5.0,
        max_failures: int = 20, progress: bool = False, root: Optional[str] = None) -> Report:
    """Fuzz a fresh server with ``inputs`` inputs; failures are collected in the report."""
    report = Report(mode)
    with tempfile.TemporaryDirectory(prefix="usbipd-fuzz-") as tmp:
        live = LiveServer(fake_kernel(root or tmp, mode), mode)
        try:
            _fuzz(live, report, inputs, mode, seed, check_every, timeout, max_failures, progress)
        finally:
            live.stop()
            report.log_levels = dict(live.tap.levels)
            report.stats = dict(live.server.stats)
            report.failures += ["usbipd log: " + alarm for alarm in live.tap.alarms]
    return report


def _fuzz(live: LiveServer, report: Report, inputs: int, mode: str, seed: int, check_every: int, timeout: float,
          max_failures: int, progress: bool) -> None:
    exported = EXPORTED[mode]
    fuzz = Mutator(request_seeds() + codec_seeds()[-6:], seed=seed, max_size=1024)
    rng = fuzz.random
    started = time.monotonic()
    last_print = started
    for index in range(1, inputs + 1):
        data = fuzz.next()
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(4)))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)]) if b > a] or [b""]
        try:
            problem = _one(live.port, data, pieces, exported, rng, timeout, report)
        except (Hang, OSError) as err:
            problem = "%s: %s" % (type(err).__name__, err)
        if problem:
            report.failures.append("input %d %s: %s" % (index, data.hex(), problem))
        report.inputs = index
        if index % check_every == 0:
            report.devlist_checks += 1
            try:
                busids = [d.busid for d in client.list_devices("127.0.0.1", live.port, timeout=timeout)]
            except Exception as err:  # noqa: BLE001 - any failure of the check is the finding
                busids = ["error: %s" % err]
            if busids != [exported]:
                report.failures.append("DEVLIST check after %d inputs listed %r" % (index, busids))
        if live.tap.alarms or len(report.failures) >= max_failures:
            break
        if progress and time.monotonic() - last_print > 30:
            last_print = time.monotonic()
            print("  %d inputs, %.0f s, %d failures" % (index, last_print - started, len(report.failures)),
                  flush=True)
    report.seconds = time.monotonic() - started


def _one(port: int, data: bytes, pieces: List[bytes], exported: str, rng, timeout: float,
         report: Report) -> Optional[str]:
    reader = RequestReader()
    reader.feed(data)
    try:
        request = reader.next_message()
    except ProtocolError:
        request = None
        kind = "refused"
    else:
        kind = "incomplete" if request is NEED_DATA else ("request+trailing" if reader.trailing_data else "request")
    report.count(kind)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(("127.0.0.1", port))
        sent = _send(sock, pieces)
        if kind == "incomplete":
            sock.setblocking(False)
            try:
                early = sock.recv(1)
            except (BlockingIOError, InterruptedError):
                early = None
            except ConnectionResetError:
                return "reset while a request was incomplete"
            sock.settimeout(timeout)
            if early:
                return "a reply to an incomplete request"
            if early == b"":
                return "closed while a request was incomplete"
            if rng.randrange(8):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                return None
            sock.shutdown(socket.SHUT_WR)  # EOF mid-request: the server must close
            reply = _receive_all(sock)
            return "%d bytes answered a request cut by EOF" % len(reply) if reply else None
        reply = _receive_all(sock)
        if kind == "refused":
            return "%d bytes answered a malformed request" % len(reply) if reply else None
        if not reply:
            if kind == "request" and sent:
                return "no reply to %r" % (request,)
            return None
        return _expected_reply_check(request, reply, exported)
    finally:
        sock.close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100000)
    parser.add_argument("--mode", choices=("host", "device"), default="host")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-every", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    except (ImportError, ValueError, OSError) as err:
        if getattr(err, "errno", None) not in (None, errno.EPERM):
            raise
    report = run(args.inputs, args.mode, args.seed, args.check_every, progress=True)
    print(report.text())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
