# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip-attachd and the host's attach lock: held only around "is it attached? / attach", never while an
attempt waits on the network, and shared by the attempts of a pass without shutting the module out."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_vhci import FakeVhci

from tests.unit.net.peers import PeerServer, never_answer
from usbip import attachments
from usbip.cli.attachd import Postponed, SharedHold
from usbip.errors import UsbipError
from usbip.sysfs.fs import Sysfs

MODULE_UTILS = str(Path(__file__).resolve().parents[3] / "plugins" / "module_utils")


def _held_elsewhere(sysfs: Sysfs) -> bool:
    """Whether the module (another holder of the attach lock) would have to wait now."""
    try:
        with attachments.attach_lock(sysfs, wait=0):
            return False
    except UsbipError:
        return True


# -- the daemon's pass, as systemd runs it ------------------------------------------------------------
def test_a_pass_does_not_hold_the_lock_while_its_attempts_wait_on_the_network(tmp_path):
    """usbip-attachd --once with two servers that never answer: one does not accept connections (a host that
    is down), one never lists its devices (a declaration by match). Both attempts run to their 3 s deadline,
    and meanwhile the module can take the attach lock at once, twice. Before, the pass held the lock from its
    first attempt to its last, and the module waited it out (60 s, in the field, for a few slow servers)."""
    root = tmp_path / "root"
    FakeVhci(root, controllers=1, hc_ports=2)
    down = socket.socket()
    down.bind(("127.0.0.1", 0))
    down.listen(0)
    down_port = down.getsockname()[1]
    filler = socket.create_connection(down.getsockname(), timeout=2)  # the accept queue is full: SYNs dropped
    silent = PeerServer(never_answer)
    config = tmp_path / "attachments.yml"
    config.write_text("timeout: 3\nattachments:\n  - {server: 127.0.0.1, port: %d, busid: 1-1}\n"
                      "  - {server: 127.0.0.1, port: %d, match: {vendor: '1209'}}\n"
                      % (down_port, silent.port))
    env = dict(os.environ, PYTHONPATH=MODULE_UTILS, USBIP_SYSFS_ROOT=str(root))
    env.pop("NOTIFY_SOCKET", None)
    env.pop("JOURNAL_STREAM", None)
    sysfs = Sysfs(str(root))
    daemon = subprocess.Popen([sys.executable, "-m", "usbip.cli.attachd", "--once", "-c", str(config)],
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert silent.accepted.wait(15), "the pass never reached the server"
        started = time.monotonic()
        busy = [_held_elsewhere(sysfs)]
        with attachments.attach_lock(sysfs, wait=0.5) as locked:
            assert locked
        took = time.monotonic() - started
        time.sleep(1.0)  # later in the same attempts
        busy.append(_held_elsewhere(sysfs))
        _out, err = daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        silent.close()
        filler.close()
        down.close()
    assert busy == [False, False] and took < 0.1
    assert daemon.returncode == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert "usbip-attachd: warning: 127.0.0.1:%d/1-1: attempt 1 failed: cannot connect to 127.0.0.1:%d: " \
           "no answer in 3 s; next in 1 s" % (down_port, down_port) in lines, lines
    assert any(line.startswith("usbip-attachd: warning: 127.0.0.1:%d/vendor=1209: attempt 1 failed: no complete reply"
                               % silent.port) for line in lines), lines


# -- SharedHold --------------------------------------------------------------------------------------
class CountingLock:
    """The attach lock on a temporary root, counting how often it was taken."""

    def __init__(self, root) -> None:
        self.sysfs = Sysfs(str(root))
        self.taken = 0

    def __call__(self, wait):
        self.taken += 1
        return attachments.attach_lock(self.sysfs, wait=wait)


def test_the_attempts_of_a_pass_share_one_hold(tmp_path):
    lock = CountingLock(tmp_path)
    hold = SharedHold(lock)
    first_in, second_in, leave_first = threading.Event(), threading.Event(), threading.Event()

    def first():
        with hold(5):
            first_in.set()
            leave_first.wait(5)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert first_in.wait(5)
        started = time.monotonic()
        with hold(5):  # a second attempt joins at once: it does not queue behind the first one's import
            assert time.monotonic() - started < 0.1
            second_in.set()
            leave_first.set()
            thread.join(5)
            assert _held_elsewhere(lock.sysfs) and hold.held  # the last one out lets it go
    finally:
        leave_first.set()
        thread.join(5)
    assert not _held_elsewhere(lock.sysfs) and not hold.held
    assert lock.taken == 1


def test_an_old_hold_takes_no_more_attempts_and_the_module_gets_its_turn(tmp_path):
    """Attempts keep coming while others hold the lock: without a bound on joining, the hold would last as
    long as they do. A hold open to joiners for 0.3 s lets a module polling for the lock in between."""
    lock = CountingLock(tmp_path)
    hold = SharedHold(lock, join_for=0.3, pause=0.2)
    module_done = threading.Event()
    errors = []

    def attempts():
        end = time.monotonic() + 5
        while not module_done.is_set() and time.monotonic() < end:
            try:
                with hold(5):
                    time.sleep(0.05)
            except Postponed as err:  # pragma: no cover - reported below
                errors.append(err)

    workers = [threading.Thread(target=attempts) for _worker in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.1)
        assert hold.held
        started = time.monotonic()
        with attachments.attach_lock(lock.sysfs, wait=3) as locked:  # the module, polling every 50 ms
            assert locked
            waited = time.monotonic() - started
            module_done.set()
    finally:
        module_done.set()
        for worker in workers:
            worker.join(10)
    assert errors == []
    assert waited < 1.0  # the first hold's 0.3 s, its last attempt, the pause
    assert lock.taken >= 2


def test_without_a_bound_on_joining_the_module_would_wait_the_attempts_out(tmp_path):
    """The control of the test above: the same attempts with joining unbounded keep the lock past 1 s."""
    lock = CountingLock(tmp_path)
    hold = SharedHold(lock, join_for=float("inf"), pause=0.2)
    stop = threading.Event()

    def attempts():
        while not stop.is_set():
            with hold(5):
                time.sleep(0.05)

    workers = [threading.Thread(target=attempts) for _worker in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.1)
        with pytest.raises(UsbipError, match="another attach has held"):
            with attachments.attach_lock(lock.sysfs, wait=1.0):
                pass
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)


def test_a_lock_the_module_keeps_past_the_deadline_postpones_the_attempt(tmp_path):
    lock = CountingLock(tmp_path)
    hold = SharedHold(lock)
    with attachments.attach_lock(lock.sysfs):  # the module
        started = time.monotonic()
        with pytest.raises(Postponed, match="another attach has held /run/usbip/attach.lock for 0 s"):
            with hold(0.3):
                raise AssertionError("entered while the module held the lock")
        assert 0.25 < time.monotonic() - started < 1.0
    assert not hold.held
    with hold(1):  # and the next attempt takes it as usual
        assert _held_elsewhere(lock.sysfs)


def test_an_attempt_that_cannot_join_an_old_hold_by_its_deadline_is_postponed(tmp_path):
    lock = CountingLock(tmp_path)
    hold = SharedHold(lock, join_for=0.0)
    inside, leave = threading.Event(), threading.Event()

    def long_attempt():
        with hold(5):
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=long_attempt)
    thread.start()
    try:
        assert inside.wait(5)
        with pytest.raises(Postponed, match="the attach lock was not free for this attempt by its deadline"):
            with hold(0.2):
                raise AssertionError("joined a hold closed to joiners")
    finally:
        leave.set()
        thread.join(5)
