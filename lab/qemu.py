"""Boot throw-away guests, run jobs in them, and bring back status and output.

The guest's root is the host's (read-only 9p), so the project's venv and code
run inside it unchanged. A second 9p share, ``/tmp/xfer`` in the guest, is
read-write: the job script goes in through it and results come out.

Every guest has a hard wall-clock bound. A guest that overruns it is killed
and reported with the tail of its console; a guest that dies without the
init's exit marker (panic, oops in init) is reported the same way.

Networking is off unless asked for, and never reaches beyond this machine:
``lan`` links guests to each other through QEMU socket netdevs on 127.0.0.1,
and ``ssh_port`` forwards 127.0.0.1:<port> on the host to the guest's sshd
through user-mode networking with ``restrict=on`` (no route out).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

from . import initramfs, usbhw

CACHE_DIR = os.environ.get("LAB_CACHE", "/var/tmp/usbip-lab")
TIMEOUT_RC = 124
LOST_RC = 125
_EXIT_MARK = re.compile(r"LAB-EXIT rc=(\d+)")
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])")


@dataclasses.dataclass
class Result:
    rc: int
    elapsed: float
    xfer: str
    console_tail: List[str]

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclasses.dataclass
class Lan:
    """One guest's end of a point-to-point link: the first guest listens, the other connects."""

    port: int
    listen: bool
    mac: str


class Guest:
    """One QEMU guest; :meth:`start` returns at once, :meth:`wait` collects the result."""

    def __init__(self, command: str, timeout: float = 600, mem: str = "1024M", cpus: int = 2,
                 env: Optional[Dict[str, str]] = None, workdir: Optional[str] = None, xfer: Optional[str] = None,
                 prefix: str = "guest| ", out=None, systemd: bool = False, disk: Optional[str] = None,
                 hostname: str = "lab", lan: Optional[Lan] = None, ssh_port: Optional[int] = None,
                 usb: Sequence[usbhw.UsbDevice] = ()) -> None:
        self.command = command
        self.timeout = timeout
        self.mem = mem
        self.cpus = cpus
        self.env = env or {}
        self.workdir = workdir or os.getcwd()
        self.xfer = xfer or tempfile.mkdtemp(prefix="xfer-", dir=_ensure(CACHE_DIR))
        self.prefix = prefix
        self.out = out or sys.stdout
        self.systemd = systemd
        self.disk = disk
        self.hostname = hostname
        self.lan = lan
        self.ssh_port = ssh_port
        self.usb = tuple(usb)
        #: Plugs and unplugs ``usb`` while the guest runs (None without emulated hardware).
        self.bench: Optional[usbhw.Bench] = None
        self.broker: Optional[usbhw.Broker] = None
        self.tail: collections.deque = collections.deque(maxlen=60)
        self.marker: List[int] = []
        self.proc: Optional[subprocess.Popen] = None
        self.expired = False

    def argv(self, release: str, initrd: str) -> List[str]:
        append = "console=ttyS0 %s panic=-1 oops=panic lab.hostname=%s" % (
            os.environ.get("LAB_KERNEL_LOG", "quiet loglevel=1"), self.hostname)
        argv = [
            "qemu-system-x86_64",
            "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", str(self.cpus), "-m", self.mem,
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none",
            "-kernel", "/boot/vmlinuz-%s" % release, "-initrd", initrd,
            "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
            "-fsdev", "local,id=xfer,path=%s,security_model=none,multidevs=remap" % self.xfer,
            "-device", "virtio-9p-pci,fsdev=xfer,mount_tag=xfer",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        if self.systemd:
            append += " lab.systemd=1"
        if self.disk:
            append += " lab.disk=1"
            argv += ["-drive", "file=%s,format=raw,if=virtio,cache=unsafe" % self.disk]
        if self.lan:
            mode = "listen" if self.lan.listen else "connect"
            argv += ["-netdev", "socket,id=lan,%s=127.0.0.1:%d" % (mode, self.lan.port),
                     "-device", "virtio-net-pci,netdev=lan,mac=%s,romfile=" % self.lan.mac]
        if self.ssh_port:
            argv += ["-netdev", "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22" % self.ssh_port,
                     "-device", "virtio-net-pci,netdev=mgmt,mac=52:54:00:00:00:%02x,romfile=" % (self.ssh_port % 256)]
        if self.usb:
            argv += usbhw.qemu_args(self.usb, self.xfer, self.qmp_path)
        return argv + ["-append", append]

    @property
    def qmp_path(self) -> str:
        return os.path.join(self.xfer, "qmp-%s.sock" % self.hostname)

    def start(self) -> "Guest":
        release = initramfs.kernel_release()
        initrd = initramfs.build(release, CACHE_DIR)
        env = {"USBIP_LAB": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
        env.update(self.env)
        with open(os.path.join(self.xfer, "job-%s.sh" % self.hostname), "w") as f:
            f.write(_job_script(self.command, env, self.workdir))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv(release, initrd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()
        if self.usb:
            self.bench = usbhw.Bench(self.qmp_path, self.xfer, self.usb)
            self.broker = usbhw.Broker(self.bench, self.xfer).start()
        # The bound holds even while nobody waits on the guest (fleet tests drive it).
        self.watchdog = threading.Timer(self.timeout, self._expire)
        self.watchdog.daemon = True
        self.watchdog.start()
        return self

    def _expire(self) -> None:
        self.expired = True
        self.kill()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = _ESCAPES.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
            self.tail.append(line)
            m = _EXIT_MARK.search(line)
            if m:
                self.marker.append(int(m.group(1)))
            self.out.write(self.prefix + line + "\n")
            self.out.flush()

    def wait(self) -> Result:
        assert self.proc is not None
        self.proc.wait()
        self.watchdog.cancel()
        if self.broker is not None:
            self.broker.stop()
        timed_out = self.expired
        self.reader.join(5)
        elapsed = time.monotonic() - self.started
        if timed_out:
            rc = TIMEOUT_RC
            self._report("guest killed after %.0f s (bound %.0f s); last console lines:" % (elapsed, self.timeout))
        elif self.marker:
            rc = self.marker[-1]
        else:
            rc = LOST_RC
            self._report("guest ended without an exit status (qemu rc %s); last console lines:" % self.proc.returncode)
        self.out.write("lab: guest %s finished rc=%d in %.1f s\n" % (self.hostname, rc, elapsed))
        self.out.flush()
        return Result(rc=rc, elapsed=elapsed, xfer=self.xfer, console_tail=list(self.tail))

    def kill(self) -> None:
        """Pull the plug (a crash, not a shutdown)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()

    def _report(self, headline: str) -> None:
        self.out.write("lab: " + headline + "\n")
        for line in self.tail:
            self.out.write("lab:   | " + line + "\n")


def _job_script(command: str, env: Dict[str, str], workdir: str) -> str:
    lines = ["# written by lab/qemu.py"]
    lines += ["export %s=%s" % (k, shlex.quote(v)) for k, v in sorted(env.items())]
    lines += ["cd %s || exit 125" % shlex.quote(workdir), command, ""]
    return "\n".join(lines)


def run(command: str, **options) -> Result:
    """Run ``command`` (shell text) as root in a fresh guest; stream its console."""
    return Guest(command, **options).start().wait()


def make_disk(path: str, size_mb: int = 256) -> str:
    """A blank ext4 image for a guest whose writes must survive its reboot."""
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "labovl", path], check=True)
    return path


def _ensure(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def preflight() -> Optional[str]:
    """Why the lab cannot run on this host, or None."""
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 not found: run lab/install-deps.sh"
    if not os.path.exists("/bin/busybox"):
        return "busybox not found: run lab/install-deps.sh"
    return None
