# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake vhci_hcd whose ``attach`` and ``detach`` behave like the kernel's.

The tree is what the 6.1 kernel shows (``test_vhci.py`` and
``test_sysfs_capture.py`` compare it with the real-kernel capture). Plain
files cannot refuse a write, so
:class:`KernelSysfs` plays the kernel after each write to ``attach`` or
``detach``: it checks the port as ``attach_store`` does, answers EBUSY or
EINVAL, and re-renders the status file. All state lives in the files, under a
lock file, so processes as well as threads can share one fake controller.

Two instruments serve the concurrency tests: ``overlaps`` counts attach
writes that were in the kernel at the same time (the host-wide lock must keep
it at 0), and ``steal`` makes the next attach writes find their port just
taken by a peer that does not use our lock (a C ``usbip attach``). A third,
``drop``, makes the next attach writes succeed on a port that is free again at
once, as the kernel does with a socket that is not connected (seen in the
lab: ``attach_store`` takes it, the port's receive thread fails and vhci lets
the port go; ``test_sysfs_capture.py`` compares that state with the kernel's).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from typing import List, Optional, Tuple

from usbip.sysfs.errors import SysfsError
from usbip.sysfs.fs import Sysfs

VHCI = "/sys/devices/platform/vhci_hcd.0"
ATTACH = VHCI + "/attach"
DETACH = VHCI + "/detach"
RECORDS = "/var/run/vhci_hcd"
HEADER = "hub port sta spd dev      sockfd local_busid\n"

FREE, NOT_ASSIGNED, USED = 4, 5, 6
#: (sta, spd, devid, sockfd, local busid) of one port.
Row = Tuple[int, int, int, int, str]
IDLE: Row = (FREE, 0, 0, 0, "0-0")


def render_row(hub: str, port: int, row: Row) -> str:
    sta, spd, devid, sockfd, busid = row
    if sta == USED:
        return "%s  %04u %03u %03u %08x %06u %s\n" % (hub, port, sta, spd, devid, sockfd, busid)
    return "%s  %04u %03u 000 00000000 000000 0-0\n" % (hub, port, sta)


class FakeVhci:
    """``controllers`` vhci_hcd controllers of ``hc_ports`` hs plus ``hc_ports`` ss ports."""

    def __init__(self, root: Path, controllers: int = 8, hc_ports: int = 15) -> None:
        self.root = Path(root)
        self.controllers = controllers
        self.hc_ports = hc_ports
        self.steal = 0
        self.drop = 0
        self.garble_reads = 0
        self._dir = self.host(VHCI)
        self._dir.mkdir(parents=True)
        (self._dir / "nports").write_text("%d\n" % self.nports)
        (self._dir / "usbip_debug").write_text("0\n")
        (self._dir / "driver_override").write_text("(null)\n")  # what every platform device shows
        (self._dir / "modalias").write_text("platform:vhci_hcd\n")
        (self._dir / "uevent").write_text("")
        (self._dir / "driver").symlink_to("../../../bus/platform/drivers/vhci_hcd")
        for name in ("attach", "detach"):
            (self._dir / name).write_text("")
        for pdev in range(controllers):
            self._save(pdev, [IDLE] * (2 * hc_ports))

    @property
    def nports(self) -> int:
        return 2 * self.hc_ports * self.controllers

    def host(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def sysfs(self, dry_run: bool = False) -> KernelSysfs:
        return KernelSysfs(self, dry_run)

    # -- state ------------------------------------------------------------------
    def status_name(self, pdev: int) -> str:
        return "status" if pdev == 0 else "status.%d" % pdev

    def status_text(self, pdev: int) -> str:
        return (self._dir / self.status_name(pdev)).read_text()

    def _rows(self, pdev: int) -> List[Row]:
        rows = []
        for line in self.status_text(pdev).splitlines()[1:]:
            _, _, sta, spd, dev, sockfd, busid = line.split()
            rows.append((int(sta), int(spd), int(dev, 16), int(sockfd), busid))
        return rows

    def _save(self, pdev: int, rows: List[Row]) -> None:
        first = pdev * 2 * self.hc_ports
        text = HEADER + "".join(
            render_row("hs" if i < self.hc_ports else "ss", first + i, row) for i, row in enumerate(rows))
        tmp = self._dir / (".%s.tmp.%d" % (self.status_name(pdev), os.getpid()))
        tmp.write_text(text)
        os.replace(tmp, self._dir / self.status_name(pdev))  # readers see whole files, as from the kernel

    def row(self, port: int) -> Row:
        per = 2 * self.hc_ports
        return self._rows(port // per)[port % per]

    def set_row(self, port: int, row: Row) -> None:
        per = 2 * self.hc_ports
        rows = self._rows(port // per)
        rows[port % per] = row
        self._save(port // per, rows)

    def use(self, port: int, spd: int = 3, devid: int = 0x00110002, sockfd: int = 3,
            busid: Optional[str] = None) -> None:
        """A port taken by someone else (another tool, an earlier attach)."""
        self.set_row(port, (USED, spd, devid, sockfd, busid or self.local_busid(port)))

    def fill(self, hub: str) -> None:
        for port in self.ports(hub):
            self.use(port)

    def ports(self, hub: str) -> List[int]:
        per, off = 2 * self.hc_ports, 0 if hub == "hs" else self.hc_ports
        return [pdev * per + off + i for pdev in range(self.controllers) for i in range(self.hc_ports)]

    def local_busid(self, port: int) -> str:
        """Busid the device gets: controller N has buses 2N+1 (hs) and 2N+2 (ss)."""
        per = 2 * self.hc_ports
        pdev, index = divmod(port, per)
        return "%d-%d" % (2 * pdev + 1 + index // self.hc_ports, index % self.hc_ports + 1)

    def c_record(self, port: int, text: str) -> None:
        """A record file as the C tool writes it."""
        path = self.host("%s/port%d" % (RECORDS, port))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(text)

    @property
    def overlaps(self) -> int:
        path = self.root / ".overlaps"
        return len(path.read_text()) if path.exists() else 0

    # -- the kernel ---------------------------------------------------------------
    def kernel_attach(self, value: str) -> None:
        inflight = self.root / ".inflight"
        try:
            os.close(os.open(inflight, os.O_CREAT | os.O_EXCL))
            mine = True
        except FileExistsError:
            mine = False
            with open(self.root / ".overlaps", "a") as f:
                f.write("x")
        try:
            time.sleep(0.005)  # widen the window a concurrent attach would hit
            with self._kernel_lock():
                self._attach(value)
        finally:
            if mine:
                os.unlink(inflight)

    def _attach(self, value: str) -> None:
        port, sockfd, devid, speed = (int(field) for field in value.split())
        pdev, rhport = port // (2 * self.hc_ports), port % self.hc_ports
        if pdev >= self.controllers or speed not in (1, 2, 3, 4, 5):
            raise _error(errno.EINVAL, ATTACH, value)
        if self.drop:
            self.drop -= 1
            return  # taken and let go: the port ends as free as it was
        # As attach_store: the speed, not the port number, chooses the hub.
        target = pdev * 2 * self.hc_ports + (self.hc_ports if speed == 5 else 0) + rhport
        if self.steal:
            self.steal -= 1
            self.use(target, busid="9-9")
        if self.row(target)[0] != FREE:
            raise _error(errno.EBUSY, ATTACH, value)
        self.set_row(target, (USED, speed, devid, sockfd, self.local_busid(target)))

    def kernel_detach(self, value: str) -> None:
        with self._kernel_lock():
            port = int(value)
            if port >= self.nports or self.row(port)[0] == FREE:
                raise _error(errno.EINVAL, DETACH, value)
            self.set_row(port, IDLE)

    def _kernel_lock(self):
        return _FileLock(self.root / ".kernel-lock")


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _error(code: int, path: str, value: str) -> SysfsError:
    return SysfsError("write %r to" % value, path, OSError(code, os.strerror(code)))


class KernelSysfs(Sysfs):
    """A :class:`Sysfs` on the fake tree that plays the kernel after writes."""

    def __init__(self, fake: FakeVhci, dry_run: bool = False) -> None:
        super().__init__(str(fake.root), dry_run)
        self.fake = fake

    def read(self, path: str) -> str:
        text = super().read(path)
        if self.fake.garble_reads and os.path.basename(path).startswith("status"):
            self.fake.garble_reads -= 1
            return text[: len(text) // 2]  # cut mid-row, as a failed read could leave it
        return text

    def write(self, path: str, value: str) -> None:
        super().write(path, value)
        if self.dry_run:
            return
        if path == ATTACH:
            self.fake.kernel_attach(value)
        elif path == DETACH:
            self.fake.kernel_detach(value)
