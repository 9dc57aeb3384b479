# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The export rules as usbipd applies them: at start, on SIGHUP, and on hotplug in the network process.

Two processes share the work (docs/architecture.md, "Process model"): the
monitor binds what the rules accept at start and at each reload; the network
process sees the hotplug (kernel uevents, or a poll every
``RULES_POLL_SECONDS`` without them) and asks the monitor for a ``RULES``
pass. A replug is a burst of uevents: the network process waits for it to
settle (half a second after the first) and asks once.

In-process here: the network process's body (``usbipd._run_network``) runs in
the test's main thread, with the configuration :func:`usbipd.load_service`
built from a file, a scripted uevent source in place of the kernel's and the
monitor's end of the channel (the real :class:`Dispatcher` with the
service's ``apply_rules``) in a thread. A device appears in the fake tree
after the start; the test plays the kernel's part of a bind (the fake tree's
files cannot) and records each ``RULES`` request and each bind.

What the monitor does at start and on SIGHUP is checked live, on the real
daemon, in ``tests/unit/cli/test_usbipd_rules_live.py``.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
from typing import Callable, List, Optional

import pytest
from fake_usb import HOST, XHCI, standard_tree

from usbip.cli import usbipd
from usbip.daemon.privsep import Dispatcher
from usbip.sysfs import uevents

#: The rule of these tests: every FT230X adapter (0403:6015). None is plugged at the start (the
#: standard tree's FTDI adapter, 18-1.3, is an FT232: 0403:6001).
RULES_FILE = "exports:\n  - match: {vendor: '0403', product: '6015'}\n"
FTDI = ((0xFF, 0xFF, 0xFF, None),)


def plug_ftdi(tree, port: int) -> str:
    """An FT230X adapter enumerated on port ``port`` (a free one: 4 to 8) of the hub 18-1; returns its busid."""
    busid = "18-1.%d" % port
    tree.usb_device("%s/usb18/18-1/%s" % (XHCI, busid), devnum=10 + port, devpath="1.%d" % port, vendor=0x0403,
                    product=0x6015, bcd=0x1000, speed="12", interfaces=FTDI,
                    strings={"manufacturer": "FTDI", "product": "FT230X Basic UART", "serial": "A%d" % port})
    return busid


class Monitor:
    """The monitor's end of the channel, in a thread: the real Dispatcher over the service's apply_rules.

    After each ``RULES`` pass it plays the kernel: what was written to
    usbip-host's ``bind`` becomes bound (so the next pass leaves it alone).
    """

    def __init__(self, sock: socket.socket, service, tree) -> None:
        self.sock, self.tree = sock, tree
        self.rules: List[float] = []  # when each RULES pass ran
        self.bound: List[str] = []
        self.ready = threading.Event()
        self.finished = threading.Event()
        self.dispatcher = Dispatcher(service.exporter, service.modes, self._apply(service.apply_rules),
                                     self.ready.set)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _apply(self, apply_rules: Callable[[], object]) -> Callable[[], None]:
        def apply() -> None:
            self.rules.append(time.monotonic())
            apply_rules()
            written = self.tree.read(HOST + "/bind")
            if written:
                self.tree.file(HOST + "/bind", "")
                self.tree.kernel_host_bind(written)
                self.bound.append(written)
        return apply

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        try:
            while not self.finished.is_set() and time.monotonic() < deadline:
                if selector.select(0.02) and not self.dispatcher.receive(self.sock):
                    break
        finally:
            selector.close()
            self.sock.close()  # the network process sees the monitor gone and stops


def scripted_watcher(watching: bool, script: Callable[[object], object]):
    """The uevent source's class for ``_run_network``: runs ``script(watcher)`` on the loop once started."""

    class ScriptedWatcher:
        method = "scripted uevents" if watching else "rescan on every request (scripted)"

        def __init__(self, on_change: Callable[[], None]) -> None:
            self.on_change = on_change
            self.watching = watching
            self.task: Optional[asyncio.Task] = None

        def start(self, loop) -> str:
            self.task = loop.create_task(script(self))
            return self.method

        def stop(self, loop) -> None:
            pass

    return ScriptedWatcher


@pytest.fixture
def tree(tmp_path):
    return standard_tree(tmp_path / "root")


@pytest.fixture
def network(tree, tmp_path, monkeypatch):
    """Run the network process's body until the script ends; returns the monitor's records."""
    config = tmp_path / "usbipd.yml"
    config.write_text(RULES_FILE)
    monkeypatch.setenv("USBIP_SYSFS_ROOT", str(tree.root))

    def run(watching: bool, script) -> Monitor:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        args = usbipd._parser().parse_args(["-t", str(port), "-l", "127.0.0.1", "-c", str(config)])  # noqa: SLF001
        service = usbipd.load_service(args)
        options, exporter, rules, sysfs, _account = service.network.args
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        monitor = Monitor(ours, service, tree)

        async def scripted(watcher):
            try:
                await asyncio.sleep(0.05)  # the network process has said READY
                await script(watcher)
            finally:
                monitor.finished.set()

        monkeypatch.setattr(uevents, "UeventWatcher", scripted_watcher(watching, scripted))
        try:
            # No account: nothing to drop in the test's own process.
            status = usbipd._run_network(options, exporter, rules, sysfs, None, theirs, None)  # noqa: SLF001
        finally:
            monitor.finished.set()
            monitor.thread.join(10)
            theirs.close()
            service.release()
        assert status == 0 and monitor.ready.is_set()
        return monitor

    return run


def test_a_burst_of_uevents_is_one_rules_pass_that_binds_the_new_device(network, tree):
    marks = {}

    async def script(watcher):
        assert tree.read(HOST + "/bind") == ""  # nothing matched at the start
        busid = plug_ftdi(tree, 5)
        marks["first"] = time.monotonic()
        for _uevent in range(6):  # add usb device, add interface, bind usb, ...: one replug
            watcher.on_change()
            await asyncio.sleep(0.04)
        await asyncio.sleep(0.9)  # well past the half second the burst settles in
        marks["settled"] = time.monotonic()
        plug_ftdi(tree, 4)  # a later, separate hotplug
        watcher.on_change()
        await asyncio.sleep(0.9)
        marks["busid"] = busid

    monitor = network(True, script)
    assert len(monitor.rules) == 2, monitor.rules  # one pass per settled burst, not one per uevent
    assert monitor.rules[0] - marks["first"] >= 0.45  # it waited for the burst to settle
    assert monitor.rules[0] < marks["settled"] < monitor.rules[1]
    assert monitor.bound == [marks["busid"], "18-1.4"]


def test_without_uevents_the_poll_binds_a_new_device(network, tree, monkeypatch):
    monkeypatch.setattr(usbipd, "RULES_POLL_SECONDS", 0.1)

    async def script(watcher):
        plug_ftdi(tree, 5)  # no uevent: nothing tells the network process
        await asyncio.sleep(0.8)

    monitor = network(False, script)
    assert monitor.bound == ["18-1.5"]
    assert len(monitor.rules) >= 3  # it polls on, every RULES_POLL_SECONDS


def test_with_uevents_there_is_no_poll(network, tree, monkeypatch):
    monkeypatch.setattr(usbipd, "RULES_POLL_SECONDS", 0.1)

    async def script(watcher):
        plug_ftdi(tree, 5)  # and no uevent for it: a watching process only acts on uevents
        await asyncio.sleep(0.6)

    monitor = network(True, script)
    assert monitor.rules == [] and monitor.bound == []
