# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one gateway between the drivers and the kernel's file interfaces.

Every driver reaches sysfs, configfs and the ``/var/run`` attachment records
through a :class:`Sysfs` instance, for three reasons:

* the root is injectable, so unit tests run the real driver code against a
  fake tree that mirrors what the kernel shows;
* every change is recorded in :attr:`Sysfs.journal`, so tests can prove that
  bad input and check mode write nothing;
* ``dry_run`` turns every change into a journal entry only, which is how the
  Ansible modules implement check mode without a second code path.

Paths are always written as the kernel names them (``/sys/bus/usb/...``).

The host-wide locks that keep attaches apart (vhci's port choice, the attach
lock ``usbip-attachd`` and ``usbip_attach`` share) are files under ``/run``
too, taken through :meth:`Sysfs.flock`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import time
from typing import Callable, Iterator, List, Optional, Union

from ..errors import UsbipError
from .errors import SysfsError


class LockUnavailable(SysfsError):
    """A lock file, or its directory, cannot be made or opened (not root): a caller may go on without it."""


@dataclasses.dataclass(frozen=True)
class Change:
    """One change made (or, in dry-run, that would have been made)."""

    op: str  # "write", "mkdir", "rmdir", "symlink", "unlink", "file"
    path: str
    value: str = ""


class Sysfs:
    """Reads and changes kernel interfaces below an injectable root."""

    def __init__(self, root: str = "/", dry_run: bool = False) -> None:
        self.root = root
        self.dry_run = dry_run
        self.journal: List[Change] = []

    # -- paths -------------------------------------------------------------
    def real(self, path: str) -> str:
        """Host path of a kernel path (identity when the root is ``/``)."""
        if self.root == "/":
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def kernel_path(self, real_path: str) -> str:
        """Inverse of :meth:`real`, for paths obtained by resolving links."""
        if self.root == "/":
            return real_path
        root = os.path.realpath(self.root)
        rel = os.path.relpath(real_path, root)
        return "/" + ("" if rel == "." else rel)

    # -- reads -------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return os.path.lexists(self.real(path))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self.real(path))

    def listdir(self, path: str) -> List[str]:
        """Sorted entries of a directory; an absent directory is empty."""
        try:
            return sorted(os.listdir(self.real(path)))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise SysfsError("list", path, err) from None

    def read(self, path: str) -> str:
        """An attribute's text without the kernel's trailing newline."""
        try:
            with open(self.real(path), "rb") as f:
                data = f.read()
        except OSError as err:
            raise SysfsError("read", path, err) from None
        return data.decode("utf-8", "replace").rstrip("\n")

    def read_bytes(self, path: str) -> bytes:
        try:
            with open(self.real(path), "rb") as f:
                return f.read()
        except OSError as err:
            raise SysfsError("read", path, err) from None

    def read_optional(self, path: str) -> Optional[str]:
        """Like :meth:`read`, but ``None`` when the attribute is absent or unreadable."""
        try:
            return self.read(path)
        except SysfsError:
            return None

    def read_int(self, path: str, base: int = 10) -> int:
        text = self.read(path).strip()
        try:
            return int(text, base)
        except ValueError:
            raise UsbipError("unexpected content %r in %s" % (text, path)) from None

    def resolve(self, path: str) -> str:
        """Kernel path a (possibly symlinked) path points to."""
        return self.kernel_path(os.path.realpath(self.real(path)))

    def link_name(self, path: str) -> Optional[str]:
        """Last component of a symlink's target (e.g. a device's driver name)."""
        try:
            return os.path.basename(os.readlink(self.real(path)))
        except OSError:
            return None

    # -- locks ---------------------------------------------------------------
    @contextlib.contextmanager
    def flock(self, path: str, wait: float, holders: str, hint: str, poll: float = 0.02,
              directory_mode: int = 0o700) -> Iterator[bool]:
        """Hold an exclusive ``flock`` on the file ``path``; yields True, or False in a dry run (no lock).

        The file is made (0600) if missing, and its directory with
        ``directory_mode`` whatever the umask; either failing raises
        :class:`LockUnavailable`. The lock is polled for, so that a holder that
        keeps it past ``wait`` seconds is an error naming ``holders`` (who
        else takes this lock) and ``hint``, not a hang. A file replaced while
        we waited (its directory cleaned up under its holder) is let go and
        the one there now is locked: the one every later holder locks.
        """
        if self.dry_run:
            yield False
            return
        real = self.real(path)
        deadline = time.monotonic() + wait
        while True:
            fd = self._open_lock(path, real, directory_mode)
            try:
                if _flock_by(fd, deadline, poll):
                    same = _names(real, fd)
                else:
                    raise UsbipError("%s has held %s for %.0f s" % (holders, path, wait), hint=hint)
            except OSError as err:
                os.close(fd)
                raise SysfsError("lock", path, err) from None
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)
        try:
            yield True
        finally:
            os.close(fd)

    def _open_lock(self, path: str, real: str, directory_mode: int) -> int:
        directory = os.path.dirname(real)
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, directory_mode, exist_ok=True)
                os.chmod(directory, directory_mode)  # a unit's umask may be 0077
            return os.open(real, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise LockUnavailable("open lock file", path, err) from None

    # -- changes -------------------------------------------------------------
    def _change(self, change: Change) -> bool:
        """Journal a change; True when it must really be carried out."""
        self.journal.append(change)
        return not self.dry_run

    def plan(self, change: Change) -> None:
        """Journal, in a dry run, a change only a live peer can carry out.

        An attach writes a socket the server hands over, so a dry run cannot
        reach the write that :meth:`write` would journal; the driver describes
        it instead (``VhciDriver.plan_attach``). Outside a dry run the change
        must really be made, which is the driver's job, not this one's.
        """
        if not self.dry_run:
            raise UsbipError("%s of %s can only be planned in a dry run" % (change.op, change.path))
        self.journal.append(change)

    def write(self, path: str, value: Union[str, bytes]) -> None:
        """Write an attribute exactly: no trailing newline is added.

        The usbip-host ``match_busid`` table keeps a newline as part of the
        busid, after which a bind fails, so callers never send one. Binary
        attributes (a HID ``report_desc``) are given as bytes and journaled
        as hex.
        """
        data = value if isinstance(value, bytes) else value.encode("ascii")
        shown = value.hex() if isinstance(value, bytes) else value
        if not self._change(Change("write", path, shown)):
            return
        try:
            fd = os.open(self.real(path), os.O_WRONLY)
        except OSError as err:
            raise SysfsError("open", path, err) from None
        try:
            os.write(fd, data)
        except OSError as err:
            raise SysfsError("write %r to" % shown, path, err) from None
        finally:
            os.close(fd)  # configfs commits a binary attribute on close

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Create or replace a regular file (attachment records), atomically."""
        if not self._change(Change("file", path, text)):
            return
        real = self.real(path)
        tmp = "%s.tmp.%d" % (real, os.getpid())
        try:
            os.makedirs(os.path.dirname(real), exist_ok=True)
            with open(tmp, "w", encoding="ascii") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, real)
        except OSError as err:
            raise SysfsError("write", path, err) from None

    def unlink(self, path: str, missing_ok: bool = True) -> None:
        if missing_ok and not self.exists(path):
            return
        if not self._change(Change("unlink", path)):
            return
        try:
            os.unlink(self.real(path))
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as err:
            raise SysfsError("remove", path, err) from None

    def mkdir(self, path: str) -> None:
        if not self.isdir(path):
            self._carry_out(Change("mkdir", path), "create directory", os.mkdir, self.real(path))

    def rmdir(self, path: str) -> None:
        self._carry_out(Change("rmdir", path), "remove directory", os.rmdir, self.real(path))

    def symlink(self, target: str, path: str) -> None:
        """Create ``path`` pointing at the kernel path ``target`` (configfs links)."""
        self._carry_out(Change("symlink", path, target), "link", os.symlink, self.real(target), self.real(path))

    def _carry_out(self, change: Change, doing: str, call: Callable[..., object], *args: str) -> None:
        """Journal ``change`` and, unless in a dry run, make it with ``call(*args)``; ``doing``
        words the failure ("cannot <doing> <path>: <reason>")."""
        if not self._change(change):
            return
        try:
            call(*args)
        except OSError as err:
            raise SysfsError(doing, change.path, err) from None


def _flock_by(fd: int, deadline: float, poll: float) -> bool:
    """Lock ``fd`` exclusively, polling until ``deadline``; False when another holder kept it that long."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def _names(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
