# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vhci driver's bounds and its answers to a kernel that refuses (found by mutation testing).

A detach of a port that does not exist, or a detach write the kernel refuses while the device is
still there, must end in an error that says so: returning "already free" would report a device as
gone that still holds the port. The messages are what ``usbip detach`` and the modules print.
"""

from __future__ import annotations

import errno
import fcntl
import os

import pytest
from fake_vhci import ATTACH, DETACH, HEADER, VHCI, FakeVhci, _error

from usbip.device import PortStatus, Speed
from usbip.errors import InvalidArgument, UsbipError
from usbip.sysfs.errors import DriverNotLoaded, NoFreePort, SysfsError
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.vhci import LOCK_FILE, VhciDriver, parse_status


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


# -- status files ---------------------------------------------------------------------------------
def test_a_status_file_of_another_shape_is_quoted():
    with pytest.raises(UsbipError) as caught:
        parse_status("port sta spd\nhs  0000 004\n")
    assert str(caught.value) == "unexpected vhci_hcd status header 'port sta spd'"
    with pytest.raises(UsbipError) as caught:
        parse_status(HEADER + "hs  0000 004\n")
    assert str(caught.value) == "unexpected vhci_hcd status line 'hs  0000 004'"
    with pytest.raises(UsbipError) as caught:
        parse_status(HEADER + "hs  0000 004 000 0000000g 000000 0-0\n")
    assert str(caught.value) == "unexpected vhci_hcd status line 'hs  0000 004 000 0000000g 000000 0-0'"


def test_numbers_in_a_status_row_are_decimal_but_the_devid():
    row, = parse_status(HEADER + "hs  0010 006 003 00110012 000010 1-2\n")
    assert (row.port, row.status, row.speed, row.devid, row.sockfd) == (10, PortStatus.USED, Speed.HIGH, 0x110012, 10)


def status_error(fake) -> str:
    with pytest.raises(UsbipError) as caught:
        VhciDriver(fake.sysfs()).ports()
    return str(caught.value)


def test_status_files_that_do_not_add_up_are_an_error(fake):
    fake.host(VHCI + "/status.1").write_text(fake.status_text(0))
    fake.host(VHCI + "/nports").write_text("5\n")
    assert status_error(fake) == \
        "cannot read the vhci_hcd port status: 5 ports do not divide among 2 vhci_hcd status files"
    fake.host(VHCI + "/status.1").unlink()
    fake.host(VHCI + "/nports").write_text("4\n")
    fake.host(VHCI + "/status").unlink()
    assert status_error(fake) == \
        "cannot read the vhci_hcd port status: 4 ports do not divide among 0 vhci_hcd status files"


def test_a_status_file_with_other_ports_is_an_error(fake):
    text = fake.status_text(0).replace("hs  0001", "hs  0007")
    fake.host(VHCI + "/status").write_text(text)
    assert status_error(fake) == "cannot read the vhci_hcd port status: status does not list ports 0-3"


def test_a_missing_controller_is_named_with_its_path(tmp_path):
    with pytest.raises(DriverNotLoaded) as caught:
        VhciDriver(Sysfs(str(tmp_path))).ports()
    assert str(caught.value) == \
        "vhci_hcd is not loaded (/sys/devices/platform/vhci_hcd.0 is missing) (modprobe vhci-hcd)"


# -- attach ---------------------------------------------------------------------------------------
def test_the_default_timeout_is_ten_seconds(fake):
    assert VhciDriver(fake.sysfs()).timeout == 10.0


@pytest.mark.parametrize("args, message", [
    ((-1, 1, Speed.HIGH), "invalid socket fd -1: must be between 0 and 2147483647"),
    ((3, -1, Speed.HIGH), "invalid devid -1: must be between 0 and 4294967295"),
    ((3, 1, 7), "invalid device speed 7: must be between %d and %d" % (Speed.LOW, Speed.SUPER_PLUS)),
])
def test_attach_names_the_value_it_refuses(fake, args, message):
    assert refusal(InvalidArgument, VhciDriver(fake.sysfs()).attach, *args) == message


def test_socket_zero_is_a_socket(fake):
    assert VhciDriver(fake.sysfs()).attach(0, 1, Speed.HIGH) == 0
    assert fake.row(0)[3] == 0


def test_no_free_port_of_the_speed_says_what_is_in_use(fake):
    fake.fill("hs")
    with pytest.raises(NoFreePort) as caught:
        VhciDriver(fake.sysfs()).attach(3, 1, Speed.HIGH)
    assert caught.value.args[0] == "no free hs port for a %s device (hs 2/2 in use, ss 0/2 in use)" \
        % Speed.HIGH.description
    assert caught.value.hint == "detach an imported device (usbip port lists them)"


def test_ports_busy_until_the_deadline_are_named(fake):
    sysfs = fake.sysfs()
    write = sysfs.write

    def busy(path, value):
        if path == ATTACH:
            raise _error(errno.EBUSY, ATTACH, value)
        write(path, value)
    sysfs.write = busy
    with pytest.raises(NoFreePort) as caught:
        VhciDriver(sysfs, timeout=0).attach(3, 1, Speed.HIGH)
    assert caught.value.args[0] == "no port could be attached: ports 0 were all busy when written"
    assert caught.value.hint == "other attaches are racing for the ports; retry"


def test_a_record_that_cannot_be_written_says_the_device_is_attached(fake):
    sysfs = fake.sysfs()

    def full(path, text, mode=0o644):
        raise UsbipError("disk full")
    sysfs.write_file = full
    with pytest.raises(UsbipError) as caught:
        VhciDriver(sysfs).attach(3, 1, Speed.HIGH, ("10.0.0.1", 3240, "1-1"))
    assert caught.value.args[0] == "device attached to port 0, but disk full"
    assert caught.value.hint == "detach it with: usbip detach -p 0"


def test_a_held_lock_says_how_to_find_its_holder(fake):
    path = fake.host(LOCK_FILE)
    path.parent.mkdir(parents=True)
    with open(path, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(UsbipError) as caught:
            VhciDriver(fake.sysfs(), timeout=0.05).detach(0)
    assert caught.value.hint == "retry later; 'fuser %s' shows the holder" % LOCK_FILE


def test_a_status_caught_mid_change_is_read_again_after_a_pause(fake, monkeypatch):
    import time
    from types import SimpleNamespace

    from usbip.sysfs import vhci as module

    pauses = []
    monkeypatch.setattr(module, "time", SimpleNamespace(sleep=pauses.append, monotonic=time.monotonic))
    fake.garble_reads = 2
    assert len(VhciDriver(fake.sysfs()).ports()) == 4
    assert pauses == [module._READ_DELAY] * 2  # none before the first read, one before each re-read
