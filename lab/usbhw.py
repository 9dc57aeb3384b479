"""Emulated USB hardware for lab guests, and plugging it in and out while a guest runs.

The gadgets on ``dummy_hcd`` are device-mode stand-ins; a real host controller
is what operators export from. QEMU gives the guest one: an xHCI controller
with a hub, and an EHCI controller for the high-speed path, with devices that
Linux drives with its ordinary drivers:

========  ===========  ======  ===========  ==========================================
id        QEMU driver  bus     port         what the guest sees
========  ===========  ======  ===========  ==========================================
hub1      usb-hub      xhci    1            a hub: devices behind it get ``N-1.x`` busids
disk1     usb-storage  xhci    1.2          46f4:0001 serial LABDISK1, known content
serial1   usb-serial   xhci    1.3          0403:6001 (FTDI) serial LABSER1, ``ftdi_sio``
kbd1      usb-kbd      xhci    2            0627:0001 serial LABKBD1, ``usbhid``
ccid1     usb-ccid     xhci    3            08e6:4433 serial LABCCID1, a smartcard reader
disk2     usb-storage  ehci    1            46f4:0001 serial LABDISK2, known content
========  ===========  ======  ===========  ==========================================

Each guest with hardware has a QMP socket in its xfer directory. The host
drives it with :class:`Bench` (fleet tests, which run on the host); a test
running inside a guest asks the host through :class:`Broker`: it drops a
request file into ``/tmp/xfer/qmp/`` and the host answers with a reply file
(:func:`lab.guestkit.hotplug`). Only the operations below exist: plugging and
unplugging a declared device; nothing else of the monitor is reachable from
the guest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import threading
import time
from typing import Dict, List, Optional, Sequence

#: Requests from the guest, and what each needs.
OPERATIONS = ("plug", "unplug")
REQUEST_DIR = "qmp"


@dataclasses.dataclass(frozen=True)
class UsbDevice:
    """One emulated device: where it sits and what identifies it to the guest."""

    id: str
    driver: str
    bus: str
    port: str
    serial: str = ""
    size: int = 0  # storage: bytes of known content

    def backing_name(self) -> str:
        return "usb-%s.img" % self.id

    def properties(self, backing_dir: str) -> Dict[str, str]:
        """``device_add`` arguments (and, joined, the ``-device`` option)."""
        props = {"driver": self.driver, "id": self.id, "bus": self.bus, "port": self.port}
        if self.serial:
            props["serial"] = self.serial
        if self.driver == "usb-storage":
            props["drive"] = self.id + "-node"
        if self.driver == "usb-serial":
            props["chardev"] = self.id + "-chr"
        return props


def content(device: UsbDevice) -> bytes:
    """The known content of a storage device: distinct per device, the same on host and in guest."""
    return random.Random("lab-usb-" + device.id).randbytes(device.size)


MIB = 1 << 20
BENCH: Sequence[UsbDevice] = (
    UsbDevice("hub1", "usb-hub", "xhci.0", "1"),
    UsbDevice("disk1", "usb-storage", "xhci.0", "1.2", "LABDISK1", size=4 * MIB),
    UsbDevice("serial1", "usb-serial", "xhci.0", "1.3", "LABSER1"),
    UsbDevice("kbd1", "usb-kbd", "xhci.0", "2", "LABKBD1"),
    UsbDevice("ccid1", "usb-ccid", "xhci.0", "3", "LABCCID1"),
    UsbDevice("disk2", "usb-storage", "ehci.0", "1", "LABDISK2", size=4 * MIB),
)
#: Guest drivers of the controllers and devices above (udev does not run in every guest to load them).
GUEST_MODULES = ("xhci-pci", "ehci-pci", "usb-storage", "sd_mod", "ftdi_sio", "usbhid")
#: Vendor:product of each device, as the guest reads them.
IDS = {"usb-storage": (0x46F4, 0x0001), "usb-serial": (0x0403, 0x6001), "usb-kbd": (0x0627, 0x0001),
       "usb-ccid": (0x08E6, 0x4433)}


def by_id(device_id: str, devices: Sequence[UsbDevice] = BENCH) -> UsbDevice:
    for device in devices:
        if device.id == device_id:
            return device
    raise KeyError("no emulated USB device %r (there are: %s)" % (device_id, ", ".join(d.id for d in devices)))


def qemu_args(devices: Sequence[UsbDevice], backing_dir: str, qmp_path: str) -> List[str]:
    """QEMU options for the controllers, ``devices`` and the QMP socket; writes the storage images."""
    argv = ["-device", "qemu-xhci,id=xhci", "-device", "usb-ehci,id=ehci",
            "-qmp", "unix:%s,server=on,wait=off" % qmp_path]
    for device in devices:
        if device.driver == "usb-storage":
            image = os.path.join(backing_dir, device.backing_name())
            with open(image, "wb") as f:
                f.write(content(device))
            # -blockdev, not -drive: a -drive goes away with its device, so a re-plug would find nothing.
            argv += ["-blockdev", "driver=file,filename=%s,node-name=%s-file" % (image, device.id),
                     "-blockdev", "driver=raw,file=%s-file,node-name=%s-node" % (device.id, device.id)]
        if device.driver == "usb-serial":
            # A ring buffer, not null: QEMU attaches a usb-serial only once its character device is open.
            argv += ["-chardev", "ringbuf,id=%s-chr,size=65536" % device.id]
        argv += ["-device", ",".join("%s=%s" % kv for kv in device.properties(backing_dir).items())]
    return argv


class QmpError(Exception):
    pass


class Qmp:
    """A minimal QMP client: one command at a time, events kept for :meth:`wait_event`."""

    def __init__(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QmpError("no QMP socket at %s" % path) from None
                time.sleep(0.1)
        self.file = self.sock.makefile("rwb")
        self.events: List[dict] = []
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise QmpError("QMP connection closed")
        return json.loads(line)

    def execute(self, command: str, **arguments) -> object:
        message = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.file.write(json.dumps(message).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QmpError("%s: %s" % (command, reply["error"].get("desc", reply["error"])))
            return reply.get("return")

    def wait_event(self, name: str, timeout: float, **data) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["event"] == name and all(event.get("data", {}).get(k) == v for k, v in data.items()):
                    self.events.remove(event)
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QmpError("no %s event %s within %.0f s" % (name, data, timeout))
            self.sock.settimeout(remaining)
            try:
                self.events.append(self._read())
            except socket.timeout:
                continue

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Bench:
    """The emulated devices of one running guest, plugged and unplugged through its QMP socket."""

    def __init__(self, qmp_path: str, backing_dir: str, devices: Sequence[UsbDevice] = BENCH) -> None:
        self.qmp_path = qmp_path
        self.backing_dir = backing_dir
        self.devices = tuple(devices)
        self.qmp: Optional[Qmp] = None
        self.lock = threading.Lock()

    def _monitor(self) -> Qmp:
        if self.qmp is None:
            self.qmp = Qmp(self.qmp_path)
        return self.qmp

    def unplug(self, device_id: str, timeout: float = 60) -> None:
        """Pull the device out, and return once QEMU has let go of it (the guest saw it leave)."""
        by_id(device_id, self.devices)
        with self.lock:
            qmp = self._monitor()
            qmp.execute("device_del", id=device_id)
            qmp.wait_event("DEVICE_DELETED", timeout, device=device_id)

    def plug(self, device_id: str) -> None:
        """Put a declared device back where it was, as it was."""
        device = by_id(device_id, self.devices)
        with self.lock:
            self._monitor().execute("device_add", **device.properties(self.backing_dir))

    def close(self) -> None:
        with self.lock:
            if self.qmp is not None:
                self.qmp.close()
                self.qmp = None


class Broker:
    """Serves a guest's plug/unplug requests from its xfer directory while the guest runs.

    Request ``<xfer>/qmp/<name>.req``: ``{"op": "plug"|"unplug", "device": id}``;
    reply ``<name>.rep``: ``{"ok": true}`` or ``{"ok": false, "error": "..."}``.
    Both are written under another name and renamed, so a half-written file is never read.
    """

    def __init__(self, bench: Bench, xfer: str, interval: float = 0.05) -> None:
        self.bench = bench
        self.dir = os.path.join(xfer, REQUEST_DIR)
        os.makedirs(self.dir, exist_ok=True)
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="qmp-broker", daemon=True)

    def start(self) -> "Broker":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.bench.close()

    def _serve(self) -> None:
        while not self.stopped.wait(self.interval):
            for name in sorted(os.listdir(self.dir)):
                if name.endswith(".req"):
                    self._answer(os.path.join(self.dir, name))

    def _answer(self, path: str) -> None:
        try:
            with open(path) as f:
                request = json.load(f)
            op, device = request["op"], request["device"]
            if op not in OPERATIONS:
                raise QmpError("unknown operation %r" % op)
            getattr(self.bench, op)(device)
            reply = {"ok": True}
        except Exception as err:  # every request gets a reply, the guest's test reports it
            reply = {"ok": False, "error": "%s: %s" % (type(err).__name__, err)}
        base = path[: -len(".req")]
        with open(base + ".tmp", "w") as f:
            json.dump(reply, f)
        os.rename(base + ".tmp", base + ".rep")
        os.unlink(path)
