"""The guest kit: what code running as root inside a lab guest needs to drive the real kernel.

Shared by the in-guest test suite (``tests/integration``, whose fixtures wrap it) and the
benchmarks (``bench``), so that both see the same kernel modules and the same virtual devices:

- bounded commands and waits (:func:`sh`, :func:`wait_for`), a TCP listener probe (:func:`listening`);
- the kernel modules of the suites, loaded by :func:`load_kernel` (configfs mounted);
- configfs gadgets bound to a UDC (``usbip-vudc.N`` for device mode, ``dummy_udc.0`` for host mode),
  made by :class:`GadgetMaker` through the stack's own gadget driver and removed in reverse order;
- mass-storage backing files with known content (:func:`write_backing`), read back with O_DIRECT
  (:func:`read_disk`) from the block device that appears behind a USB device (:func:`block_device_of`);
- devices found by VID:PID and serial (:func:`find_usb_device`): bus numbers depend on module load order;
- the argv prefix of this checkout's commands (:func:`ours`).

Importing this module puts the checkout's stack (``plugins/module_utils``) on ``sys.path`` and on
``PYTHONPATH``, so that ``import usbip`` here and ``python -m usbip.cli.<tool>`` in a child process
run this checkout's code, as the console scripts would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The stack's package root: ``usbip`` is imported from here, in this process and in child commands.
STACK = os.path.join(REPO, "plugins", "module_utils")
if STACK not in sys.path:
    sys.path.insert(0, STACK)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [STACK] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != STACK])

from usbip.sysfs import gadget as gadget_driver  # noqa: E402 - found through STACK above
from usbip.sysfs.fs import Sysfs  # noqa: E402

from . import usbhw  # noqa: E402

#: Loaded once per guest by :func:`load_kernel`; usbip-vudc is loaded apart, with its instance count.
MODULES = ["configfs", "usbip-core", "usbip-host", "vhci-hcd", "dummy_hcd", "libcomposite",
           "usb_f_mass_storage", "usb_f_acm", "usb_f_hid", "usb-storage", "sd_mod"]
#: usbip-vudc instances of the test suite: enough for its concurrency tests.
VUDC_INSTANCES = 8


# -- commands and waits ---------------------------------------------------------------------
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


def listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (any address), from the kernel's tables."""
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


# -- kernel -----------------------------------------------------------------------------------
def load_kernel(vudc_instances: int, extra: Sequence[str] = ()) -> Sysfs:
    """:data:`MODULES` and ``extra`` loaded, usbip-vudc with ``vudc_instances``, configfs mounted."""
    for module in list(MODULES) + list(extra):
        sh("modprobe", module)
    sh("modprobe", "usbip-vudc", "num=%d" % vudc_instances)
    if not os.path.ismount("/sys/kernel/config"):
        sh("mount", "-t", "configfs", "none", "/sys/kernel/config")
    return Sysfs()


# -- gadgets ------------------------------------------------------------------------------------
class GadgetMaker:
    """Makes configfs gadgets bound to a UDC and remembers them, so that :meth:`remove_all` undoes them.

    ``label`` names who made them: the manufacturer string is ``usbip-<label>``, the product
    ``<label>-<name>`` and the configuration ``<label>``.
    """

    def __init__(self, sysfs: Sysfs, label: str = "lab") -> None:
        self.sysfs = sysfs
        self.label = label
        self.made: List[str] = []

    def make(self, name: str, udc: str, vid: int, pid: int, serial: str, function: str = "acm",
             backing: Optional[str] = None) -> str:
        """One gadget with one function (``acm``, ``hid``, ``mass_storage`` backed by the file ``backing``)."""
        if function == "mass_storage":
            attrs = {"lun.0/removable": True}
            if backing:
                attrs["lun.0/file"] = backing
            fn = gadget_driver.GadgetFunction("mass_storage.0", attrs)
        else:
            fn = gadget_driver.GadgetFunction(function + ".0")
        spec = gadget_driver.GadgetSpec(name=name, id_vendor=vid, id_product=pid, bcd_usb=0x0200, serialnumber=serial,
                                        manufacturer="usbip-" + self.label, product=self.label + "-" + name,
                                        configuration=self.label, functions=(fn,))
        gadget_driver.GadgetDriver(self.sysfs).ensure(spec, udc)
        self.made.append(name)
        return name

    def remove_all(self) -> None:
        """Remove every gadget made here, the last made first."""
        for name in reversed(self.made):
            gadget_driver.GadgetDriver(self.sysfs).remove(name)
        self.made.clear()


@dataclasses.dataclass
class Backing:
    """A mass-storage backing file and the bytes written to it."""

    path: str
    data: bytes


def write_backing(path: str, size: int, seed: int = 1) -> Backing:
    """A backing file of ``size`` bytes of ``random.Random(seed)``: known, distinct content per seed."""
    data = random.Random(seed).randbytes(size)
    with open(path, "wb") as f:
        f.write(data)
    return Backing(path, data)


# -- devices ------------------------------------------------------------------------------------
DEVICES = "/sys/bus/usb/devices"


def usb_devices() -> Dict[str, Dict[str, str]]:
    """busid -> idVendor/idProduct/serial of every USB device (root hubs excluded)."""
    found = {}
    base = DEVICES
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
        root = os.path.join(DEVICES, busid)
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


# -- emulated USB hardware (lab.usbhw) ----------------------------------------------------------
def load_usb_hardware() -> None:
    """The drivers of the emulated controllers and devices (no udev in the test guest loads them)."""
    for module in usbhw.GUEST_MODULES:
        sh("modprobe", module)


def bench_device(device_id: str, timeout: float = 30) -> str:
    """Busid of one emulated device (:data:`lab.usbhw.BENCH`), found by its serial once it is there."""
    device = usbhw.by_id(device_id)
    if device.driver == "usb-hub":
        raise ValueError("the hub has no serial; find it as the parent of the devices behind it")
    vid, pid = usbhw.IDS[device.driver]
    return find_usb_device(vid, pid, device.serial, timeout=timeout)


def hotplug(op: str, device_id: str, timeout: float = 90) -> None:
    """Unplug or plug back an emulated device, through the host's QMP broker; returns when QEMU has done it."""
    if op not in usbhw.OPERATIONS:
        raise ValueError("hotplug: %r is not one of %s" % (op, usbhw.OPERATIONS))
    usbhw.by_id(device_id)
    requests = os.path.join("/tmp/xfer", usbhw.REQUEST_DIR)
    name = "%d-%s-%s" % (time.monotonic_ns(), op, device_id)
    with open(os.path.join(requests, name + ".tmp"), "w") as f:
        json.dump({"op": op, "device": device_id}, f)
    os.rename(os.path.join(requests, name + ".tmp"), os.path.join(requests, name + ".req"))
    reply_path = os.path.join(requests, name + ".rep")
    wait_for(lambda: os.path.exists(reply_path), timeout, "the host's answer to %s %s" % (op, device_id))
    with open(reply_path) as f:
        reply = json.load(f)
    os.unlink(reply_path)
    if not reply.get("ok"):
        raise AssertionError("%s %s failed on the host: %s" % (op, device_id, reply.get("error")))


def driver_of(busid: str) -> Optional[str]:
    """Name of the driver bound to a USB device (``usb``, ``usbip-host``, ...), None without one or device."""
    try:
        return os.path.basename(os.readlink(os.path.join(DEVICES, busid, "driver")))
    except OSError:
        return None


def imported_device(serial: str) -> Optional[str]:
    """busid of the device with ``serial`` that hangs under vhci_hcd (the exported original has the same serial)."""
    for name in os.listdir(DEVICES):
        path = os.path.join(DEVICES, name)
        if ":" in name or "vhci_hcd" not in os.path.realpath(path):
            continue
        with contextlib.suppress(OSError):
            with open(os.path.join(path, "serial")) as f:
                if f.read().strip() == serial:
                    return name
    return None


@contextlib.contextmanager
def running(argv: Sequence[str], port: int, log_path: str, env: Optional[Dict[str, str]] = None) -> Iterator[str]:
    """A daemon (``argv``) in the foreground, its stderr in ``log_path``, once it listens on ``port``.

    Yields the log's path; on the way out the daemon is stopped and its log
    printed into the test's output.
    """
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(list(argv), stderr=log, env=env)
    try:
        wait_for(lambda: listening(port), 60, "%s listening on port %d" % (os.path.basename(argv[0]), port))
        yield log_path
    finally:
        daemon.terminate()
        daemon.wait(15)
        with open(log_path) as log:
            print(log.read())
