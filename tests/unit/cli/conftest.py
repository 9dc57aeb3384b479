# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the command-line tests: fake kernel trees, a small usb.ids, a fake usbipd.

The fake trees are the sysfs tests' builders (``tests/unit/sysfs`` is not a
package, so its directory is put on ``sys.path`` here); the command line is
run in-process through ``main(argv, sysfs=..., names=...)``.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Callable, List, Optional

import pytest

_SYSFS_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sysfs")
if _SYSFS_TESTS not in sys.path:
    sys.path.insert(0, _SYSFS_TESTS)

from cli_fakes import USB_IDS, FakeServer, Result  # noqa: E402

from usbip.cli.usbip import main  # noqa: E402
from usbip.sysfs.names import UsbIds  # noqa: E402


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
