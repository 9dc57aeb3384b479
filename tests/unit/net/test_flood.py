# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbipd's server under connection floods, in a process of its own on 127.0.0.1.

The server (:class:`usbip.net.server.UsbipServer`, the class the daemon runs,
with the daemon's logging from :mod:`usbip.cli.logs`) runs in a child process
on the standard fake kernel tree, so that its descriptor limit and its stderr
are its own. It serves 127.0.0.2 only; the flood comes from 127.0.0.1 (Linux
routes all of 127/8 to the loopback device, and a client socket bound to a
source address speaks from it).

* A descriptor limit below what ``max_connections`` needs is a one-line start
  error, not a server that fails at its first burst.
* Thousands of refused connections make a few log lines, no traceback, and
  do not delay the allowed client's DEVLIST.
* A stderr that nobody reads (a full pipe) does not stop the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import List, Optional

import pytest
from fake_usb import standard_tree

from tests.fuzz import FAKE_TREES, MODULE_UTILS
from tests.fuzz.server import receive_all
from usbip.errors import UsbipError
from usbip.net import limits
from usbip.net.limits import descriptors_needed, ensure_descriptors
from usbip.net.server import ServerOptions
from usbip.protocol import DevlistRequest, decode_reply
from usbip.throttle import LogThrottle

ALLOWED = "127.0.0.2"
REFUSED = "127.0.0.1"

#: The child: a UsbipServer with the daemon's logging, serving 127.0.0.2 only, until stdin closes.
CHILD = r"""
import asyncio, ipaddress, json, resource, sys

root, settings = sys.argv[1], json.loads(sys.argv[2])
nofile = settings.pop("nofile")
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
from usbip.cli import logs
log = logs.setup("usbipd", "usbipd")
from usbip.daemon.catalog import Catalog, exporter_for
from usbip.errors import UsbipError
from usbip.net.server import ServerOptions, UsbipServer
from usbip.sysfs.fs import Sysfs

options = ServerOptions(port=0, addresses=["127.0.0.1"], allow=(ipaddress.ip_network("127.0.0.2/32"),),
                        read_timeout=5.0, **settings)
server = UsbipServer(Catalog(exporter_for(["host"], Sysfs(root))), options)
try:
    server.bind()
except UsbipError as err:
    log.error("%s", err)
    logs.stop()
    sys.exit(1)
print(server.listening[0].getsockname()[1], flush=True)


async def main():
    await server.start()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    await done
    server.close()

asyncio.run(main())
logs.stop()
"""


@pytest.fixture
def many_sockets():
    """The flooding side holds up to 3000 sockets at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip("a descriptor limit of %d cannot open the floods" % hard)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    tree = standard_tree(tmp_path_factory.mktemp("tree"))
    tree.kernel_host_bind("17-1")
    return str(tree.root)


class Child:
    """The server process; ``stderr`` is a file (read after) or a pipe nobody reads."""

    def __init__(self, root: str, log_path: Optional[str], nofile: int = 1024, **settings) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([MODULE_UTILS, FAKE_TREES]))
        env.pop("JOURNAL_STREAM", None)
        self.log_path = log_path
        self.stderr = open(log_path, "wb") if log_path else subprocess.PIPE
        settings["nofile"] = nofile
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, root, json.dumps(settings)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        line = self.proc.stdout.readline()
        self.port = int(line) if line.strip() else None

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self) -> int:
        """Close stdin (the server shuts down and flushes its log); kill it if it does not within 10 s."""
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        finally:
            self.proc.stdout.close()
            if self.log_path:
                self.stderr.close()
            elif self.proc.stderr:
                self.proc.stderr.close()
        return self.proc.returncode


def flood(port: int, count: int, source: str = REFUSED, bound: float = 30.0) -> int:
    """Open ``count`` connections from ``source`` at once; wait (bounded) until the server closed them.

    Returns how many the server closed; all are closed on return.
    """
    opened: List[socket.socket] = []
    selector = selectors.DefaultSelector()
    try:
        for _socket in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((source, 0))
            s.connect_ex(("127.0.0.1", port))
            opened.append(s)
            selector.register(s, selectors.EVENT_READ)
        closed, deadline = 0, time.monotonic() + bound
        while closed < count and time.monotonic() < deadline:
            for key, _events in selector.select(0.5):
                selector.unregister(key.fileobj)
                closed += 1
        return closed
    finally:
        selector.close()
        for s in opened:
            s.close()


def timed_devlist(port: int, timeout: float = 10.0) -> float:
    """Seconds an allowed client waits for the device list (raises if it does not come in ``timeout``)."""
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.bind((ALLOWED, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(DevlistRequest().encode())
        reply = decode_reply(receive_all(s), DevlistRequest())
    assert [d.busid for d in reply.devices] == ["17-1"]
    return time.monotonic() - started


def refusals(log: str) -> int:
    """Refused connections the log reports: lines of their own, and those counted in summaries."""
    reason = "refused: not in the allowed client networks"
    first = len(re.findall(r"^usbipd: warning: connection from \S+ %s$" % reason, log, re.M))
    more = re.findall(r"^usbipd: warning: (\d+) more connections from \S+ %s$" % reason, log, re.M)
    return first + sum(int(n) for n in more)


# -- the descriptor limit ------------------------------------------------------------------------
def test_a_descriptor_limit_below_what_max_connections_needs_is_a_start_error(root, tmp_path):
    child = Child(root, str(tmp_path / "log"), nofile=256, max_connections=512)
    assert child.port is None
    assert child.stop() == 1
    needed = descriptors_needed(ServerOptions(addresses=["127.0.0.1"], max_connections=512))
    assert child.log() == ("usbipd: error: the descriptor limit (256) is below what max_connections 512 needs (%d):"
                           " raise LimitNOFILE or lower max_connections\n" % needed)


def test_the_soft_limit_is_raised_to_what_is_needed_never_lowered(monkeypatch):
    limits_now = {"soft": 100, "hard": 1000}
    monkeypatch.setattr(limits.resource, "getrlimit", lambda which: (limits_now["soft"], limits_now["hard"]))

    def setrlimit(which, values):
        limits_now["soft"], limits_now["hard"] = values

    monkeypatch.setattr(limits.resource, "setrlimit", setrlimit)
    assert ensure_descriptors(600, 512) == 600 and limits_now == {"soft": 600, "hard": 1000}
    assert ensure_descriptors(300, 200) == 600 and limits_now == {"soft": 600, "hard": 1000}
    with pytest.raises(UsbipError, match=r"^the descriptor limit \(1000\) is below what max_connections 2000 needs"
                                         r" \(2100\): raise LimitNOFILE or lower max_connections$"):
        ensure_descriptors(2100, 2000)
    assert limits_now == {"soft": 600, "hard": 1000}


def test_descriptors_needed_counts_connections_listeners_and_tls():
    plain = ServerOptions(addresses=["127.0.0.1"], max_connections=512)
    assert descriptors_needed(plain) == 512 + (1 + 2 * limits.ACCEPTS_PER_PASS) + limits.MARGIN
    both = ServerOptions(max_connections=100)  # IPv4 and IPv6, each on the plain and the TLS port
    both.tls = SimpleNamespace(config=SimpleNamespace(max_handshakes=40))
    assert limits.listening_sockets(both) == 4
    assert descriptors_needed(both) == 100 + 4 * (1 + 2 * limits.ACCEPTS_PER_PASS) + limits.MARGIN + 2 * 40 + \
        limits.TLS_FILES


# -- the log throttle ------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _throttle(caplog, capacity: int = 256):
    caplog.set_level(logging.DEBUG, logger="throttle-test")
    clock = Clock()
    return LogThrottle(logging.getLogger("throttle-test"), interval=10.0, capacity=capacity, clock=clock), clock


def _messages(caplog) -> List[str]:
    return ["%s %s" % (r.levelname, r.getMessage()) for r in caplog.records]


def test_the_first_event_of_a_kind_is_logged_the_others_counted_once_per_interval(caplog):
    throttle, clock = _throttle(caplog)
    for port in range(1000, 1005):
        throttle.event("connections from 10.0.0.7 refused: not allowed", logging.WARNING,
                       "connection from %s refused: %s", "10.0.0.7:%d" % port, "not allowed")
    throttle.event("connections from 10.0.0.8 refused: not allowed", logging.WARNING, "from .8")
    throttle.event("bad requests from 10.0.0.7: closed", logging.INFO, "bad")
    assert _messages(caplog) == ["WARNING connection from 10.0.0.7:1000 refused: not allowed",
                                 "WARNING from .8", "INFO bad"]
    caplog.clear()
    clock.now += 10.0  # the interval is over: the next event brings the summary first
    throttle.event("connections from 10.0.0.7 refused: not allowed", logging.WARNING, "again")
    assert _messages(caplog) == ["WARNING 4 more connections from 10.0.0.7 refused: not allowed", "WARNING again"]
    caplog.clear()
    throttle.flush()
    throttle.flush()
    assert _messages(caplog) == []  # nothing more to report, and reported once


def test_the_throttle_keeps_a_bounded_table_and_counts_the_rest_as_others(caplog):
    throttle, _clock = _throttle(caplog, capacity=3)
    for n in range(1000):
        throttle.event("connections from 10.0.%d.%d refused: x" % (n // 256, n % 256), logging.WARNING, "n=%d", n)
    assert len(throttle._counts) == 3  # noqa: SLF001
    throttle.flush()
    assert _messages(caplog) == ["WARNING n=0", "WARNING n=1", "WARNING n=2",
                                 "WARNING 997 more events about other clients not logged (over 3 kinds in 10 s)"]


def test_the_summary_comes_when_the_interval_ends(caplog):
    throttle, _clock = _throttle(caplog)
    scheduled = []
    throttle.schedule = lambda delay, callback: scheduled.append((delay, callback)) or SimpleNamespace(
        cancel=lambda: None)
    for _event in range(3):
        throttle.event("bad requests from ::1: closed", logging.INFO, "bad request")
    assert [delay for delay, _callback in scheduled] == [10.0]
    scheduled[0][1]()
    assert _messages(caplog) == ["INFO bad request", "INFO 2 more bad requests from ::1: closed"]


def test_a_burst_logs_the_first_few_of_a_kind_then_counts(caplog):
    """The channel's refusals use the same class with a burst of five lines per interval."""
    caplog.set_level(logging.DEBUG, logger="throttle-test")
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("throttle-test"), interval=10.0, burst=5, clock=clock)
    logged = [throttle.event("refused requests", logging.WARNING, "refused %d", n) for n in range(50)]
    assert logged == [True] * 5 + [False] * 45
    clock.now += 10.0
    assert throttle.event("refused requests", logging.WARNING, "refused again")
    assert _messages(caplog) == ["WARNING refused %d" % n for n in range(5)] + [
        "WARNING 45 more refused requests", "WARNING refused again"]


# -- floods of refused connections ---------------------------------------------------------------
def test_2000_refused_connections_make_a_few_log_lines_and_the_allowed_client_is_served(root, tmp_path, many_sockets):
    child = Child(root, str(tmp_path / "log"))
    try:
        assert flood(child.port, 2000) == 2000
        assert timed_devlist(child.port) < 1.0
    finally:
        assert child.stop() == 0
    log = child.log()
    assert "Traceback" not in log and "cannot accept" not in log, log[-3000:]
    assert len(log) < 64 * 1024, "%d bytes of log" % len(log)
    assert refusals(log) == 2000, log[-3000:]


def test_the_server_accepts_a_few_at_a_time_and_never_runs_out_of_descriptors(root, tmp_path, many_sockets):
    """2000 connections queued at once; 160 descriptors: enough for 32 connections, not for 2000 at once."""
    child = Child(root, str(tmp_path / "log"), nofile=160, max_connections=32)
    try:
        assert flood(child.port, 2000) == 2000
        assert timed_devlist(child.port) < 1.0
    finally:
        assert child.stop() == 0
    log = child.log()
    assert "cannot accept" not in log and "failed accepts" not in log and "Traceback" not in log, log[-3000:]
    assert refusals(log) == 2000, log[-3000:]


def test_a_log_nobody_reads_does_not_stop_the_server(root, many_sockets):
    """stderr is a pipe nobody reads, and every refusal is a line of its own (no interval to count them in)."""
    child = Child(root, None, log_interval=0)
    try:
        assert flood(child.port, 3000) == 3000
        assert timed_devlist(child.port, timeout=5.0) < 3.0
    finally:
        child.proc.kill()
        child.stop()
