"""Who holds an exported device, across a restart of usbipd, and ``usbip release`` from the server.

Our usbipd, started as root (so the monitor and the unprivileged network
process are two), exports the emulated keyboard by an export rule; the C
client attaches it over loopback. Our ``usbip list -l --json`` then names
the holder (``attached_by``: 127.0.0.1 and the client's port), still after
usbipd is restarted (the attachment lives in the kernel, the record in the
state file). ``usbip release -b`` ends the import from the server: the
client's vhci port frees, the device is available (``usbip_status`` 1) and
still bound to usbip-host, and ``attached_by`` is null again. The same
release of a usbip-vudc gadget ends its import too, and the gadget stays
offered.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

import pytest

from lab import usbhw
from lab.guestkit import DEVICES, bench_device, driver_of, load_usb_hardware, ours, running, sh, wait_for

PORT = 3320


@pytest.fixture(scope="module")
def keyboard(kernel) -> str:
    load_usb_hardware()
    assert usbhw.by_id("kbd1").driver == "usb-kbd"
    return bench_device("kbd1")


def usbip_status(busid: str) -> Optional[int]:
    """The device's usbip_status (a usbip-vudc.N's is its platform device's), None when it has none."""
    base = "/sys/devices/platform" if busid.startswith("usbip-vudc.") else DEVICES
    try:
        with open(os.path.join(base, busid, "usbip_status")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def vhci_ports() -> list:
    return json.loads(sh(*ours("usbip"), "port", "--json").stdout)


def attached_by(busid: str, env: Dict[str, str]):
    which = "-d" if busid.startswith("usbip-vudc.") else "-l"
    devices = json.loads(sh(*ours("usbip"), "list", which, "--json", env=env).stdout)
    (entry,) = [d for d in devices if d["busid"] == busid]
    return entry["attached_by"]


def our_daemon(tmp_path, name: str, env: Dict[str, str]):
    config = tmp_path / "usbipd.yml"
    config.write_text("exports:\n  - match: {serial: LABKBD1}\n")
    return running([*ours("usbipd"), "--debug", "--config", str(config), "--tcp-port", str(PORT)], PORT,
                   str(tmp_path / ("usbipd-%s.log" % name)), env)


def test_the_holder_is_recorded_survives_a_restart_and_release_frees_the_device(keyboard, tmp_path):
    assert os.geteuid() == 0, "usbipd must start as root for the monitor to keep the records"
    env = dict(os.environ, USBIP_EXPORTS_FILE=str(tmp_path / "run" / "exports.json"))
    try:
        with our_daemon(tmp_path, "first", env):
            wait_for(lambda: driver_of(keyboard) == "usbip-host", 20, "the keyboard exported by its rule")
            assert attached_by(keyboard, env) is None
            sh("usbip", "--tcp-port", str(PORT), "attach", "-r", "127.0.0.1", "-b", keyboard)
            wait_for(lambda: usbip_status(keyboard) == 2, 20, "the keyboard in use")
            holder = wait_for(lambda: attached_by(keyboard, env), 10, "the holder recorded")
            assert holder["host"] == "127.0.0.1" and holder["tls_name"] is None
            assert 0 < holder["port"] < 65536 and holder["since"].endswith("Z")
            records = tmp_path / "run" / "exports.json"
            assert oct(os.stat(records).st_mode & 0o777) == oct(0o600)
        with our_daemon(tmp_path, "restarted", env):
            assert usbip_status(keyboard) == 2  # the attachment lives in the kernel
            assert attached_by(keyboard, env) == holder  # and its record in the state file
            sh(*ours("usbip"), "release", "-b", keyboard)
            wait_for(lambda: not vhci_ports(), 20, "the client's vhci port free")
            wait_for(lambda: usbip_status(keyboard) == 1, 20, "the keyboard available again")
            assert driver_of(keyboard) == "usbip-host"  # still exported
            assert attached_by(keyboard, env) is None
            refused = sh(*ours("usbip"), "release", "-b", keyboard, check=False)
            assert refused.returncode == 1 and "not in use" in refused.stderr
            # The monitor prunes the record within its period (5 s).
            wait_for(lambda: keyboard not in json.loads(records.read_text())["exports"], 10, "the record pruned")
    finally:
        for port in vhci_ports():
            sh("usbip", "detach", "-p", str(port["port"]), check=False)
        sh(*ours("usbip"), "unbind", "-b", keyboard, check=False)


def test_release_of_a_gadget_frees_the_client_and_leaves_it_offered(kernel, gadgets, tmp_path):
    """usbip-vudc takes ``-1`` on its usbip_sockfd as usbip-host does: the import ends, the gadget is free."""
    gadget = "usbip-vudc.2"
    gadgets("release", gadget, 0x1209, 0x0E01, "RELEASE-1", "acm")
    env = dict(os.environ, USBIP_EXPORTS_FILE=str(tmp_path / "run" / "exports.json"))
    try:
        with running([*ours("usbipd"), "--device", "--tcp-port", str(PORT + 1)], PORT + 1,
                     str(tmp_path / "usbipd-device.log"), env):
            sh(*ours("usbip"), "--tcp-port", str(PORT + 1), "attach", "-r", "127.0.0.1", "-d", gadget)
            wait_for(lambda: usbip_status(gadget) == 2 and vhci_ports(), 20, "the gadget imported")
            assert attached_by(gadget, env)["host"] == "127.0.0.1"
            sh(*ours("usbip"), "release", "-b", gadget)
            wait_for(lambda: not vhci_ports(), 20, "the client's vhci port free")
            wait_for(lambda: usbip_status(gadget) == 1, 20, "the gadget available again")
            assert attached_by(gadget, env) is None
    finally:
        for port in vhci_ports():
            sh(*ours("usbip"), "detach", "-p", str(port["port"]), check=False)
