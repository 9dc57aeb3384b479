"""In-guest fixtures: kernel modules, virtual USB devices, daemons.

These run inside a lab guest (``python3 -m lab pytest tests/integration``) as
root against Debian's stock kernel. The fixtures wrap the lab's guest kit
(:mod:`lab.guestkit`, shared with the benchmarks); devices are created on
demand and always found by VID:PID and serial: bus numbers depend on module
load order. Importing the kit puts this checkout's stack on ``PYTHONPATH``, so
that our commands run as ``python -m usbip.cli.<tool>`` from this checkout.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import List, Optional

import pytest

from lab.guestkit import VUDC_INSTANCES, Backing, GadgetMaker, listening, load_kernel, sh, wait_for, write_backing


def pytest_configure(config):
    if os.environ.get("USBIP_LAB") != "1":
        raise pytest.UsageError(
            "tests/integration run inside a lab guest: .venv/bin/python -m lab pytest tests/integration")


@pytest.fixture(scope="session")
def kernel():
    """The usbip and gadget modules loaded, configfs mounted."""
    return load_kernel(VUDC_INSTANCES)


@pytest.fixture
def backing_file(tmp_path):
    """Factory of mass-storage backing files with known, distinct content."""
    def make(name: str = "disk", size: int = 1 << 20, seed: int = 1) -> Backing:
        return write_backing(str(tmp_path / (name + ".img")), size, seed)
    return make


@pytest.fixture
def gadgets(kernel):
    """Factory of configfs gadgets bound to a UDC; all are removed after the test."""
    maker = GadgetMaker(kernel, label="lab")

    def make(name: str, udc: str, vid: int, pid: int, serial: str, function: str = "acm",
             backing: Optional[Backing] = None) -> str:
        return maker.make(name, udc, vid, pid, serial, function, backing.path if backing else None)

    yield make
    maker.remove_all()


# -- daemons -------------------------------------------------------------------
@pytest.fixture
def daemons(tmp_path):
    """Start daemons (any command line with a --pid file); all are stopped after the test."""
    started: List[str] = []

    def start(*argv: str, port: int) -> str:
        pidfile = str(tmp_path / ("daemon-%d.pid" % port))
        sh(*argv, "--tcp-port", str(port), "--pid=" + pidfile, "-D")
        wait_for(lambda: listening(port), 60, "a daemon listening on port %d" % port)
        started.append(pidfile)
        return pidfile

    yield start
    for pidfile in started:
        with contextlib.suppress(OSError, ValueError):
            with open(pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
