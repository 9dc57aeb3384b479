"""Boot one throw-away guest, run one job in it, and bring back status and output.

The guest's root is the host's (read-only 9p), so the project's venv and code
run inside it unchanged. A second 9p share, ``/tmp/xfer`` in the guest, is
read-write: the job script goes in through it and results come out.

Every guest has a hard wall-clock bound. A guest that overruns it is killed
and reported with the tail of its console; a guest that dies without the
init's exit marker (panic, oops in init) is reported the same way.
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
from typing import Dict, List, Optional

from . import initramfs

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


def _qemu_argv(release: str, initrd: str, xfer: str, mem: str, cpus: int, extra: List[str]) -> List[str]:
    return [
        "qemu-system-x86_64",
        "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", str(cpus), "-m", mem,
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none",
        "-kernel", "/boot/vmlinuz-%s" % release, "-initrd", initrd,
        "-append", "console=ttyS0 quiet loglevel=1 panic=-1 oops=panic",
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
        "-fsdev", "local,id=xfer,path=%s,security_model=none,multidevs=remap" % xfer,
        "-device", "virtio-9p-pci,fsdev=xfer,mount_tag=xfer",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ] + extra


def _job_script(command: str, env: Dict[str, str], workdir: str) -> str:
    lines = ["# written by lab/qemu.py"]
    lines += ["export %s=%s" % (k, shlex.quote(v)) for k, v in sorted(env.items())]
    lines += ["cd %s || exit 125" % shlex.quote(workdir), command, ""]
    return "\n".join(lines)


def run(
    command: str,
    timeout: float = 600,
    mem: str = "1024M",
    cpus: int = 2,
    env: Optional[Dict[str, str]] = None,
    workdir: Optional[str] = None,
    xfer: Optional[str] = None,
    prefix: str = "guest| ",
    qemu_extra: Optional[List[str]] = None,
    out=None,
) -> Result:
    """Run ``command`` (shell text) as root in a fresh guest; stream its console."""
    out = out or sys.stdout
    release = initramfs.kernel_release()
    initrd = initramfs.build(release, CACHE_DIR)
    xfer = xfer or tempfile.mkdtemp(prefix="xfer-", dir=_ensure(CACHE_DIR))
    guest_env = {"USBIP_LAB": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    guest_env.update(env or {})
    with open(os.path.join(xfer, "job.sh"), "w") as f:
        f.write(_job_script(command, guest_env, workdir or os.getcwd()))

    argv = _qemu_argv(release, initrd, xfer, mem, cpus, qemu_extra or [])
    tail: collections.deque = collections.deque(maxlen=60)
    marker: List[int] = []
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = _ESCAPES.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
            tail.append(line)
            m = _EXIT_MARK.search(line)
            if m:
                marker.append(int(m.group(1)))
            out.write(prefix + line + "\n")
            out.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        timed_out = True
    reader.join(5)
    elapsed = time.monotonic() - started

    if timed_out:
        rc = TIMEOUT_RC
        _report(out, "guest killed after %.0f s (bound %.0f s); last console lines:" % (elapsed, timeout), tail)
    elif marker:
        rc = marker[-1]
    else:
        rc = LOST_RC
        _report(out, "guest ended without an exit status (qemu rc %s); last console lines:" % proc.returncode, tail)
    out.write("lab: guest finished rc=%d in %.1f s\n" % (rc, elapsed))
    out.flush()
    return Result(rc=rc, elapsed=elapsed, xfer=xfer, console_tail=list(tail))


def _report(out, headline: str, tail) -> None:
    out.write("lab: " + headline + "\n")
    for line in tail:
        out.write("lab:   | " + line + "\n")


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
