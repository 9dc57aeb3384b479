# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the unit tests of several layers (sysfs drivers, command line, modules).

The fake kernel trees themselves are built by ``tests/unit/sysfs/fake_usb.py``;
a test module that needs another tree defines its own ``tree`` fixture.
"""

from __future__ import annotations

import pytest
from fake_usb import FakeTree, standard_tree


@pytest.fixture
def tree(tmp_path) -> FakeTree:
    """The standard fake tree (see ``fake_usb.standard_tree``), fresh for each test."""
    return standard_tree(tmp_path)


@pytest.fixture(scope="module")
def static_tree(tmp_path_factory) -> FakeTree:
    """Built once for the many refusal cases, which must leave it untouched."""
    return standard_tree(tmp_path_factory.mktemp("static"))


@pytest.fixture
def image(tmp_path) -> str:
    """Path of a mass-storage backing file (4 KiB of zeros) for gadget specs and module arguments."""
    path = tmp_path / "ms.img"
    path.write_bytes(b"\0" * 4096)
    return str(path)
