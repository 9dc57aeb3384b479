# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``Sysfs.flock``: the one lock-file helper behind vhci's port lock and the host's attach lock."""

from __future__ import annotations

import ast
import errno
import fcntl
import os
import pathlib
import threading

import pytest
from fake_vhci import FakeVhci

from usbip.errors import UsbipError
from usbip.sysfs.fs import LockUnavailable, Sysfs
from usbip.sysfs.vhci import LOCK_FILE, VhciDriver

STACK = pathlib.Path(__file__).resolve().parents[3] / "plugins" / "module_utils" / "usbip"


def _locked_elsewhere(path) -> bool:
    """Whether another open of ``path`` (as another process would make it) finds the lock taken."""
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        assert err.errno in (errno.EAGAIN, errno.EACCES)
        return True
    finally:
        os.close(fd)
    return False


def test_the_stack_takes_flocks_in_one_place():
    """vhci's port lock and the attach lock share Sysfs.flock instead of a copy each."""
    takers = []
    for path in sorted(STACK.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "flock" and isinstance(node.value, ast.Name) \
                    and node.value.id == "fcntl":
                takers.append(str(path.relative_to(STACK)))
    assert sorted(set(takers)) == ["sysfs/fs.py"]


def test_a_lock_is_held_inside_and_let_go_after(tmp_path):
    sysfs = Sysfs(str(tmp_path))
    path = tmp_path / "run" / "x" / "a.lock"
    with sysfs.flock("/run/x/a.lock", 1.0, "another x", "wait") as held:
        assert held is True
        assert _locked_elsewhere(path)
    assert not _locked_elsewhere(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_the_directory_gets_its_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        with Sysfs(str(tmp_path)).flock("/run/y/a.lock", 1.0, "another y", "wait", directory_mode=0o755):
            pass
    finally:
        os.umask(old)
    assert oct((tmp_path / "run" / "y").stat().st_mode & 0o777) == "0o755"


def test_a_holder_past_the_wait_is_one_error_naming_the_others(tmp_path):
    path = tmp_path / "run" / "a.lock"
    path.parent.mkdir()
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(UsbipError) as err:
            with Sysfs(str(tmp_path)).flock("/run/a.lock", 0.1, "another frobnication", "try later"):
                raise AssertionError("entered a lock held elsewhere")
    finally:
        os.close(fd)
    assert str(err.value) == "another frobnication has held /run/a.lock for 0 s (try later)"


def test_a_lock_file_that_cannot_be_made_is_lock_unavailable(tmp_path):
    (tmp_path / "run").write_text("")  # the directory cannot be made
    with pytest.raises(LockUnavailable, match="cannot open lock file /run/z/a.lock: "):
        with Sysfs(str(tmp_path)).flock("/run/z/a.lock", 1.0, "another z", "wait"):
            raise AssertionError("entered a lock that cannot exist")


def test_a_dry_run_takes_no_lock_and_makes_no_file(tmp_path):
    with Sysfs(str(tmp_path), dry_run=True).flock("/run/w/a.lock", 1.0, "another w", "wait") as held:
        assert held is False
    assert not (tmp_path / "run").exists()


def test_vhci_does_not_trust_its_lock_file_replaced_while_it_waited(tmp_path):
    """The holder's lock file is removed while vhci waits: vhci must hold the file there now (the one the
    next attach locks), not the removed one. A lock of its own, like before, held a file nobody else opens."""
    fake = FakeVhci(tmp_path)
    path = fake.host(LOCK_FILE)
    path.parent.mkdir(parents=True)
    holder = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    inside, leave = threading.Event(), threading.Event()

    def waiter():
        with VhciDriver(fake.sysfs(), timeout=5)._locked():  # noqa: SLF001
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=waiter)
    thread.start()
    try:
        assert not inside.wait(0.3)  # it waits for the holder
        path.unlink()  # gone with its lock still held, then released
        os.close(holder)
        assert inside.wait(5)
        assert _locked_elsewhere(path)  # the next attach finds the file that is there locked
    finally:
        leave.set()
        thread.join(5)
    assert not _locked_elsewhere(path)
