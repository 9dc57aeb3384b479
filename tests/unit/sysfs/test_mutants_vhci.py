# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vhci driver's bounds and its answers to a kernel that refuses (found by mutation testing).

A detach of a port that does not exist, or a detach write the kernel refuses while the device is
still there, must end in an error that says so: returning "already free" would report a device as
gone that still holds the port. The messages are what ``usbip detach`` and the modules print.
"""

from __future__ import annotations

import errno
import os

import pytest
from fake_vhci import DETACH, FakeVhci, _error

from usbip.errors import InvalidArgument
from usbip.sysfs.errors import SysfsError
from usbip.sysfs.vhci import VhciDriver


@pytest.fixture
def fake(tmp_path):
    return FakeVhci(tmp_path, controllers=1, hc_ports=2)


def refusal(error, call, *args) -> str:
    with pytest.raises(error) as caught:
        call(*args)
    return str(caught.value)


class RefusingDetach:
    """A fake tree whose next detach write fails with ``code`` before the kernel sees it."""

    def __init__(self, fake, code):
        self.sysfs = fake.sysfs()
        self.code = code
        write = self.sysfs.write

        def refuse(path, value):
            if path == DETACH and self.code:
                code, self.code = self.code, None
                raise _error(code, DETACH, value)
            write(path, value)
        self.sysfs.write = refuse


def test_port_zero_is_a_port(fake):
    fake.use(0)
    assert VhciDriver(fake.sysfs()).detach(0) is True
    assert fake.row(0)[0] == 4  # free again


@pytest.mark.parametrize("port, message", [
    (-1, "invalid port -1: must be between 0 and 2147483647"),
    ("x", "invalid port 'x': expected a decimal number"),
    (4, "invalid port 4: vhci_hcd has ports 0-3"),
])
def test_a_port_that_does_not_exist_is_named(fake, port, message):
    assert fake.nports == 4
    assert refusal(InvalidArgument, VhciDriver(fake.sysfs()).detach, port) == message


def test_the_last_port_is_a_port(fake):
    fake.use(3)
    assert VhciDriver(fake.sysfs()).detach(3) is True


def test_a_refused_detach_of_a_port_still_in_use_is_an_error(fake):
    fake.use(1)
    driver = VhciDriver(RefusingDetach(fake, errno.EINVAL).sysfs)
    with pytest.raises(SysfsError) as caught:
        driver.detach(1)
    assert caught.value.errno == errno.EINVAL
    assert fake.row(1)[0] == 6  # still in use


def test_another_error_is_raised_even_when_the_port_went_free(fake):
    fake.use(1)
    refusing = RefusingDetach(fake, errno.EIO)
    original = refusing.sysfs.write

    def write_then_drop(path, value):
        if path == DETACH:
            fake.set_row(1, (4, 0, 0, 0, "0-0"))  # the connection dropped meanwhile
        original(path, value)
    refusing.sysfs.write = write_then_drop
    with pytest.raises(SysfsError) as caught:
        VhciDriver(refusing.sysfs).detach(1)
    assert caught.value.errno == errno.EIO


def test_a_detach_refused_because_the_port_went_free_is_no_change(fake):
    fake.use(1)
    driver = VhciDriver(fake.sysfs())
    sysfs = driver.sysfs
    write = sysfs.write

    def drop_first(path, value):
        if path == DETACH:
            fake.set_row(1, (4, 0, 0, 0, "0-0"))  # gone between our look and our write: EINVAL
        write(path, value)
    sysfs.write = drop_first
    assert driver.detach(1) is False


def test_a_detach_removes_the_record_first(fake):
    fake.use(2)
    record = fake.host("/var/run/vhci_hcd/port2")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("10.0.0.1 3240 1-1\n")
    assert VhciDriver(fake.sysfs()).detach(2) is True
    assert not os.path.exists(record)
