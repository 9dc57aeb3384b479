# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbipd under systemd's watchdog (``WatchdogSec=``): fed only while the network process's event loop runs.

The channel between the two processes is the network process's to speak on
first, so that process sends ``PING`` every third of the interval and the
monitor sends ``WATCHDOG=1`` for each one it answers. Live here: a daemon
started with ``WATCHDOG_USEC`` feeds the stand-in for systemd's socket; with
its network process stopped (SIGSTOP: a loop that hangs), no ``WATCHDOG=1``
comes, so systemd would restart the service; resumed, the pings come again.
Without ``WATCHDOG_USEC`` nothing is sent.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
import test_usbipd_process

from usbip.cli import systemd

daemons = test_usbipd_process.daemons  # the fixtures: usbipd on a fake tree, in a directory every account reads
shared_dir = test_usbipd_process.shared_dir


@pytest.mark.parametrize("environ, expected", [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "600000", "WATCHDOG_PID": "4242"}, 0.6),
    ({"WATCHDOG_USEC": "600000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "1e6"}, None),
    ({"WATCHDOG_USEC": "\u00b2"}, None),  # a digit to str.isdigit, not to int()
    ({"WATCHDOG_USEC": "600000", "WATCHDOG_PID": "x"}, None),
])
def test_the_watchdog_interval_is_read_as_sd_watchdog_enabled_reads_it(environ, expected):
    assert systemd.watchdog_seconds(environ, pid=4242) == expected


def _watchdogs(notify, seconds: float) -> int:
    """``WATCHDOG=1`` messages received in the next ``seconds``."""
    deadline = time.monotonic() + seconds
    count = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return count
        notify.sock.settimeout(left)
        try:
            message = notify.sock.recv(4096).decode()
        except socket.timeout:
            return count
        count += "WATCHDOG=1" in message.split("\n")


def test_the_watchdog_is_fed_while_the_network_process_serves_and_starves_when_it_hangs(daemons):
    daemon = daemons(env={"WATCHDOG_USEC": "600000"})  # a PING every 0.2 s
    network = daemon.network_pid()
    assert _watchdogs(daemon.notify, 1.0) >= 3
    os.kill(network, signal.SIGSTOP)
    try:
        _watchdogs(daemon.notify, 0.1)  # one PING may have been on its way
        assert _watchdogs(daemon.notify, 1.0) == 0  # systemd would restart the service after 0.6 s
    finally:
        os.kill(network, signal.SIGCONT)
    assert _watchdogs(daemon.notify, 1.0) >= 2
    assert daemon.devlist() == ["17-1"]
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_without_a_watchdog_nothing_is_sent(daemons):
    daemon = daemons(env={"WATCHDOG_USEC": ""})
    assert _watchdogs(daemon.notify, 0.8) == 0
    assert daemon.stop() == 0
