"""Helpers for the in-guest suites: bounded commands and waits, device lookup, disk reads."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from typing import Callable, Dict, Optional


def sh(*argv: str, timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command, echo it and its output into the test log, bounded in time."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    print("$ %s\n%s%s[rc=%d]" % (" ".join(argv), proc.stdout, proc.stderr, proc.returncode))
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc %d): %s" % (argv[0], proc.returncode, proc.stderr.strip()))
    return proc


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll until ``predicate`` returns something truthy; fail the test at the bound."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


# -- devices -----------------------------------------------------------------
def usb_devices() -> Dict[str, Dict[str, str]]:
    """busid -> idVendor/idProduct/serial of every USB device (root hubs excluded)."""
    found = {}
    base = "/sys/bus/usb/devices"
    for name in os.listdir(base):
        if ":" in name or name.startswith("usb"):
            continue
        attrs = {}
        for attr in ("idVendor", "idProduct", "serial"):
            with contextlib.suppress(OSError):
                with open(os.path.join(base, name, attr)) as f:
                    attrs[attr] = f.read().strip()
        found[name] = attrs
    return found


def find_usb_device(vid: int, pid: int, serial: Optional[str] = None, timeout: float = 15) -> str:
    """Busid of the one device with this identity, waiting for it to appear."""
    def match():
        hits = [b for b, a in usb_devices().items()
                if a.get("idVendor") == "%04x" % vid and a.get("idProduct") == "%04x" % pid
                and (serial is None or a.get("serial") == serial)]
        assert len(hits) <= 1, "ambiguous device %04x:%04x %s: %s" % (vid, pid, serial, hits)
        return hits[0] if hits else None
    return wait_for(match, timeout, "USB device %04x:%04x serial=%s" % (vid, pid, serial))


def block_device_of(busid: str, timeout: float = 30) -> str:
    """/dev node of the disk behind a USB mass-storage device, once it has appeared."""
    def find():
        root = os.path.join("/sys/bus/usb/devices", busid)
        for dirpath, dirnames, _ in os.walk(os.path.realpath(root)):
            if os.path.basename(dirpath) == "block" and dirnames:
                dev = "/dev/" + dirnames[0]
                return dev if os.path.exists(dev) else None
        return None
    return wait_for(find, timeout, "a block device under %s" % busid)


def read_disk(dev: str, size: int) -> bytes:
    """Read the first ``size`` bytes with O_DIRECT, so the data really crosses USB/IP."""
    proc = subprocess.run(["dd", "if=" + dev, "bs=64k", "count=%d" % (size // 65536), "iflag=direct", "status=none"],
                          capture_output=True, timeout=60, check=True)
    return proc.stdout


@dataclasses.dataclass
class Backing:
    path: str
    data: bytes


def listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
    return False


def ours(command: str) -> tuple:
    """argv prefix that runs this checkout's ``usbip``/``usbipd`` (as the console scripts would)."""
    return (sys.executable, "-m", "usbip.cli." + command)
