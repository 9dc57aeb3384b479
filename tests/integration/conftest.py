"""In-guest fixtures: kernel modules, virtual USB devices, daemons.

These run inside a lab guest (``python3 -m lab pytest tests/integration``) as
root against Debian's stock kernel. Devices are created on demand and always
found by VID:PID and serial: bus numbers depend on module load order.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from typing import List, Optional

import pytest

from labkit import Backing, listening, sh, wait_for
from usbip.sysfs import gadget as gadget_driver
from usbip.sysfs.fs import Sysfs

#: Loaded once per guest. usbip-vudc gets enough instances for the concurrency tests.
MODULES = ["configfs", "usbip-core", "usbip-host", "vhci-hcd", "dummy_hcd", "libcomposite",
           "usb_f_mass_storage", "usb_f_acm", "usb_f_hid", "usb-storage", "sd_mod"]
VUDC_INSTANCES = 8
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Our commands run as `python -m usbip.cli.<tool>` from this checkout.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [os.path.join(REPO, "plugins", "module_utils")] + [p for p in [os.environ.get("PYTHONPATH")] if p])


def pytest_configure(config):
    if os.environ.get("USBIP_LAB") != "1":
        raise pytest.UsageError(
            "tests/integration run inside a lab guest: .venv/bin/python -m lab pytest tests/integration")


@pytest.fixture(scope="session")
def kernel():
    """The usbip and gadget modules loaded, configfs mounted."""
    for module in MODULES:
        sh("modprobe", module)
    sh("modprobe", "usbip-vudc", "num=%d" % VUDC_INSTANCES)
    if not os.path.ismount("/sys/kernel/config"):
        sh("mount", "-t", "configfs", "none", "/sys/kernel/config")
    return Sysfs()


@pytest.fixture
def backing_file(tmp_path):
    """Factory of mass-storage backing files with known, distinct content."""
    def make(name: str = "disk", size: int = 1 << 20, seed: int = 1) -> Backing:
        data = random.Random(seed).randbytes(size)
        path = str(tmp_path / (name + ".img"))
        with open(path, "wb") as f:
            f.write(data)
        return Backing(path, data)
    return make


@pytest.fixture
def gadgets(kernel):
    """Factory of configfs gadgets bound to a UDC; all are removed after the test."""
    made: List[str] = []

    def make(name: str, udc: str, vid: int, pid: int, serial: str, function: str = "acm",
             backing: Optional[Backing] = None) -> str:
        if function == "mass_storage":
            fn = gadget_driver.GadgetFunction("mass_storage.0", {"lun.0/file": backing.path, "lun.0/removable": True})
        else:
            fn = gadget_driver.GadgetFunction(function + ".0")
        spec = gadget_driver.GadgetSpec(name=name, id_vendor=vid, id_product=pid, bcd_usb=0x0200, serialnumber=serial,
                                        manufacturer="usbip-lab", product="lab-" + name, configuration="lab",
                                        functions=(fn,))
        gadget_driver.GadgetDriver(kernel).ensure(spec, udc)
        made.append(name)
        return name

    yield make
    for name in reversed(made):
        gadget_driver.GadgetDriver(kernel).remove(name)


# -- daemons -------------------------------------------------------------------
@pytest.fixture
def daemons(tmp_path):
    """Start daemons (any command line with a --pid file); all are stopped after the test."""
    started: List[str] = []

    def start(*argv: str, port: int) -> str:
        pidfile = str(tmp_path / ("daemon-%d.pid" % port))
        sh(*argv, "--tcp-port", str(port), "--pid=" + pidfile, "-D")
        wait_for(lambda: listening(port), 10, "a daemon listening on port %d" % port)
        started.append(pidfile)
        return pidfile

    yield start
    for pidfile in started:
        with contextlib.suppress(OSError, ValueError):
            with open(pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
