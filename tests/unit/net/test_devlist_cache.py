# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The encoded DEVLIST reply is reused only while the catalog's generation is the same.

The reply is cached on (catalog generation, busids offered). A device
unplugged and another plugged into the same port comes back under the same
busid: keyed on the busids alone, the server would go on answering the old
device's record. Here the server watches uevents (a scripted watcher stands
in for the kernel's), so nothing but the uevent tells it the world changed;
the clients ask over 127.0.0.1 with the real client.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from fake_usb import ACM, DUMMY_HCD, standard_tree

from usbip.daemon.catalog import Catalog
from usbip.net import client
from usbip.net.server import ServerOptions, UsbipServer
from usbip.sysfs.host import HostDriver


class ScriptedWatcher:
    """A watcher that watches (no rescan per request) and reports a change when the test says so."""

    method = "scripted uevents"
    watching = True

    def __init__(self, on_change) -> None:
        self.on_change = on_change
        self.loop = None

    def start(self, loop) -> str:
        self.loop = loop
        return self.method

    def stop(self, loop) -> None:
        self.loop = None

    def uevent(self) -> None:
        """What the uevent source does on a hotplug: the callback, on the server's loop."""
        done = threading.Event()

        def fire():
            self.on_change()
            done.set()

        self.loop.call_soon_threadsafe(fire)
        assert done.wait(5)


class Served:
    def __init__(self, catalog) -> None:
        self.server = UsbipServer(catalog, ServerOptions(port=0, addresses=["127.0.0.1"], read_timeout=5.0),
                                  watcher=ScriptedWatcher)
        self.server.bind()
        self.port = self.server.listening[0].getsockname()[1]
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def devlist(self):
        devices = client.list_devices("127.0.0.1", self.port, timeout=5)
        return [(d.busid, d.id_vendor, d.id_product, d.devnum) for d in devices]

    def stop(self) -> None:
        async def close():
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def tree(tmp_path):
    tree = standard_tree(tmp_path)
    tree.kernel_host_bind("17-1")
    return tree


@pytest.fixture
def served(tree):
    served = Served(Catalog(HostDriver(tree.sysfs())))
    yield served
    served.stop()


def replug_another_device(tree) -> None:
    """17-1 unplugged, and a different gadget enumerated on the same port (so the same busid) and bound."""
    tree.usb_device(DUMMY_HCD + "/usb17/17-1", devnum=3, devpath="1", vendor=0x1209, product=0x0002,
                    interfaces=ACM, strings={"manufacturer": "vmlab", "product": "other", "serial": "SER-other"})
    tree.kernel_host_bind("17-1")


def test_a_new_device_under_an_old_busid_is_seen_after_the_uevent(served, tree):
    assert served.devlist() == [("17-1", 0x1209, 0x0001, 2)]
    assert served.devlist() == [("17-1", 0x1209, 0x0001, 2)]  # the cached reply, same generation
    generation = served.server.catalog.generation
    replug_another_device(tree)
    served.server.watcher.uevent()
    assert served.server.catalog.generation > generation
    assert served.devlist() == [("17-1", 0x1209, 0x0002, 3)]


def test_the_reply_is_reused_while_nothing_changed(served):
    first = served.server.devlist()
    assert served.server.devlist() is first  # one encoding, not one per request
    served.server.watcher.uevent()
    assert served.server.devlist() == first  # same devices, same bytes, encoded again
