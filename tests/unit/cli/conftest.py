# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the command-line tests: fake kernel trees, a small usb.ids, a fake usbipd.

The fake trees are the sysfs tests' builders (``tests/unit/sysfs``, on the
import path by pyproject.toml's pytest ``pythonpath``); the command line is
run in-process through ``main(argv, sysfs=..., names=...)``.
"""

from __future__ import annotations

import socket
from typing import Callable, List, Optional

import pytest
from cli_fakes import FakeServer, Result
from fake_names import USB_IDS

from usbip.cli.usbip import main
from usbip.sysfs.names import UsbIds


@pytest.fixture
def ids(tmp_path_factory) -> UsbIds:
    path = tmp_path_factory.mktemp("ids") / "usb.ids"
    path.write_text(USB_IDS)
    return UsbIds(str(path))


@pytest.fixture
def usbip(capsys, ids) -> Callable[..., Result]:
    """Run ``usbip`` in-process; ``sysfs`` is the fake tree's gateway."""

    def run(*argv: str, sysfs=None, names: Optional[UsbIds] = None) -> Result:
        capsys.readouterr()
        rc = main(list(argv), sysfs=sysfs, names=names or ids)
        out, err = capsys.readouterr()
        return Result(rc, out, err)

    return run


@pytest.fixture
def server():
    started: List[FakeServer] = []

    def start(handler: Callable[[socket.socket], None]) -> FakeServer:
        started.append(FakeServer(handler))
        return started[-1]

    yield start
    for srv in started:
        srv.close()
        assert not srv.errors, srv.errors
