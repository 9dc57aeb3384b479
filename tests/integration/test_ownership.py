"""Who holds an exported device, across a restart of usbipd, and ``usbip release`` from the server.

Our usbipd, started as root (so the monitor and the unprivileged network
process are two), exports the emulated keyboard by an export rule; the C
client attaches it over loopback. Our ``usbip list -l --json`` then names
the holder (``attached_by``: 127.0.0.1 and the client's port), still after
usbipd is restarted (the attachment lives in the kernel, the record in the
state file). ``usbip release -b`` ends the import from the server: the
client's vhci port frees, the device is available (``usbip_status`` 1) and
still bound to usbip-host, and ``attached_by`` is null again.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from typing import Dict, Optional

import pytest

from lab import usbhw
from lab.guestkit import bench_device, listening, load_usb_hardware, ours, sh, wait_for

PORT = 3320
DEVICES = "/sys/bus/usb/devices"


@pytest.fixture(scope="module")
def keyboard(kernel) -> str:
    load_usb_hardware()
    assert usbhw.by_id("kbd1").driver == "usb-kbd"
    return bench_device("kbd1")


def driver_of(busid: str) -> Optional[str]:
    try:
        return os.path.basename(os.readlink(os.path.join(DEVICES, busid, "driver")))
    except OSError:
        return None


def usbip_status(busid: str) -> Optional[int]:
    try:
        with open(os.path.join(DEVICES, busid, "usbip_status")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def vhci_ports() -> list:
    return json.loads(sh(*ours("usbip"), "port", "--json").stdout)


def attached_by(busid: str, env: Dict[str, str]):
    devices = json.loads(sh(*ours("usbip"), "list", "-l", "--json", env=env).stdout)
    (entry,) = [d for d in devices if d["busid"] == busid]
    return entry["attached_by"]


@contextlib.contextmanager
def our_daemon(tmp_path, name: str, env: Dict[str, str]):
    config = tmp_path / "usbipd.yml"
    config.write_text("exports:\n  - match: {serial: LABKBD1}\n")
    log_path = tmp_path / ("usbipd-%s.log" % name)
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([*ours("usbipd"), "--debug", "--config", str(config), "--tcp-port", str(PORT)],
                                  stderr=log, env=env)
    try:
        wait_for(lambda: listening(PORT), 60, "usbipd listening")
        yield daemon
    finally:
        daemon.terminate()
        daemon.wait(15)
        print(log_path.read_text())


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
