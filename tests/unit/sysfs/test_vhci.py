# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vhci-hcd driver against a fake controller that reacts like the kernel."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import threading

import pytest
from fake_usb import capture_tree, load_capture
from fake_vhci import ATTACH, DETACH, RECORDS, VHCI, FakeVhci, render_row

from usbip.device import PortStatus, Speed
from usbip.errors import InvalidArgument, UsbipError
from usbip.sysfs.errors import DriverNotLoaded, NoFreePort, SysfsError
from usbip.sysfs.fs import Change, Sysfs
from usbip.sysfs.vhci import LOCK_FILE, Record, VhciDriver, VhciPort, parse_status

HIGH = Speed.HIGH
SUPER = Speed.SUPER
REC = ("127.0.0.1", 3240, "17-1")
CAPTURE = "02-attached.json"


@pytest.fixture
def fake(tmp_path):
    return FakeVhci(tmp_path)


def vhci(fake, dry_run=False, timeout=10.0):
    return VhciDriver(fake.sysfs(dry_run), timeout=timeout)


# -- status files ---------------------------------------------------------------
def test_parse_status_rows_as_the_kernel_prints_them():
    text = ("hub port sta spd dev      sockfd local_busid\n"
            "hs  0000 004 000 00000000 000000 0-0\n"
            "hs  0001 006 003 00110002 000003 1-2\n"
            "ss  0015 005 000 00000000 0000000000000000 0-0\n")
    assert parse_status(text) == [
        VhciPort("hs", 0, PortStatus.NULL, Speed.UNKNOWN, 0, 0, "0-0"),
        VhciPort("hs", 1, PortStatus.USED, HIGH, 0x00110002, 3, "1-2"),
        VhciPort("ss", 15, PortStatus.NOT_ASSIGNED, Speed.UNKNOWN, 0, 0, "0-0"),
    ]


@pytest.mark.parametrize("text", [
    "",
    "port sta spd dev      socket           local_busid\n0000 004 000 00000000 0000000000000000 0-0\n",
    "hub port sta spd dev      sockfd local_busid\nhs  0000 004 000 00000000",
    "hub port sta spd dev      sockfd local_busid\nxs  0000 004 000 00000000 000000 0-0\n",
    "hub port sta spd dev      sockfd local_busid\nhs  0000 009 000 00000000 000000 0-0\n",
])
def test_parse_status_refuses_other_shapes(text):
    with pytest.raises(UsbipError):
        parse_status(text)


def test_fake_renders_rows_with_the_kernel_spacing():
    assert render_row("hs", 0, (4, 0, 0, 0, "0-0")) == "hs  0000 004 000 00000000 000000 0-0\n"
    assert render_row("hs", 1, (6, 3, 0x00110002, 3, "1-2")) == "hs  0001 006 003 00110002 000003 1-2\n"


def test_fake_tree_matches_the_real_kernel(fake):
    fake.use(0, spd=3, devid=0x00110002, sockfd=3)  # 17-1 from usbipd
    fake.use(1, spd=3, devid=0, sockfd=3)  # usbip-vudc.0
    real = load_capture(CAPTURE)
    for pdev in range(8):
        assert fake.status_text(pdev) == real["%s/%s" % (VHCI, fake.status_name(pdev))]["text"]
    assert fake.host(VHCI + "/nports").read_text() == real[VHCI + "/nports"]["text"]


def test_imported_devices_of_the_real_capture(tmp_path):
    devices = VhciDriver(capture_tree(CAPTURE, tmp_path).sysfs()).imported()
    assert [(d.port, d.hub, d.speed, d.devid, d.local_busid, d.host, d.remote_port, d.remote_busid)
            for d in devices] == [
        (0, "hs", HIGH, 0x00110002, "1-1", "127.0.0.1", 3240, "17-1"),
        (1, "hs", HIGH, 0, "1-2", "127.0.0.1", 3241, "usbip-vudc.0"),
    ]


def test_ports_of_every_controller_with_hs_and_ss_numbering(fake):
    ports = vhci(fake).ports()
    assert len(ports) == 240
    assert [p.port for p in ports] == list(range(240))
    assert {p.hub for p in ports if p.port % 30 < 15} == {"hs"}
    assert {p.hub for p in ports if p.port % 30 >= 15} == {"ss"}
    assert all(p.free for p in ports)


def test_port_counts_come_from_nports_and_the_status_files(tmp_path):
    small = FakeVhci(tmp_path, controllers=2, hc_ports=4)
    ports = vhci(small).ports()
    assert [(p.port, p.hub) for p in ports[6:10]] == [(6, "ss"), (7, "ss"), (8, "hs"), (9, "hs")]
    assert vhci(small).attach(3, 1, SUPER) == 4


def test_a_read_caught_mid_change_is_retried(fake):
    fake.garble_reads = 2
    assert len(vhci(fake).ports()) == 240


def test_a_status_that_stays_broken_is_a_clear_error(fake):
    fake.garble_reads = 1000
    with pytest.raises(UsbipError, match="cannot read the vhci_hcd port status"):
        vhci(fake).ports()


def test_not_loaded(tmp_path):
    with pytest.raises(DriverNotLoaded) as err:
        VhciDriver(Sysfs(str(tmp_path))).ports()
    assert err.value.hint == "modprobe vhci-hcd"


# -- attach -----------------------------------------------------------------------
def test_attach_writes_the_port_and_a_c_record(fake):
    driver = vhci(fake)
    assert driver.attach(3, 0x00110002, HIGH, record=REC) == 0
    assert driver.sysfs.journal == [
        Change("write", ATTACH, "0 3 1114114 3"),
        Change("file", RECORDS + "/port0", "127.0.0.1 3240 17-1\n"),
    ]
    assert fake.row(0) == (6, 3, 0x00110002, 3, "1-1")
    assert fake.host(RECORDS + "/port0").read_text() == "127.0.0.1 3240 17-1\n"
    assert fake.host(LOCK_FILE).exists()


def test_a_record_that_cannot_be_written_names_the_attached_port(fake):
    fake.host(RECORDS + "/port0").mkdir(parents=True)  # os.replace onto a directory fails
    with pytest.raises(UsbipError, match="device attached to port 0, but cannot write") as err:
        vhci(fake).attach(3, 1, HIGH, record=REC)
    assert err.value.hint == "detach it with: usbip detach -p 0"
    assert fake.row(0)[0] == 6


def test_attach_takes_the_first_free_port_of_the_speed(fake):
    fake.use(0)
    fake.use(15, spd=5)
    assert vhci(fake).attach(3, 0, Speed.FULL) == 1
    assert vhci(fake).attach(4, 0, SUPER) == 16


def test_super_speed_plus_goes_to_an_ss_port_as_super_speed(fake):
    driver = vhci(fake)
    assert driver.attach(3, 7, Speed.SUPER_PLUS) == 15
    assert driver.sysfs.journal == [Change("write", ATTACH, "15 3 7 5")]


def test_ebusy_from_a_racing_peer_rereads_and_picks_another_port(fake):
    fake.steal = 2  # the next two attach writes find their port just taken
    driver = vhci(fake)
    assert driver.attach(3, 1, HIGH) == 2
    assert [c.value for c in driver.sysfs.journal] == ["0 3 1 3", "1 3 1 3", "2 3 1 3"]
    assert fake.row(0)[4] == fake.row(1)[4] == "9-9"


def test_no_free_port_of_the_speed_writes_nothing(fake):
    fake.fill("hs")
    driver = vhci(fake)
    with pytest.raises(NoFreePort, match=r"no free hs port .*hs 120/120 in use, ss 0/120 in use"):
        driver.attach(3, 1, HIGH, record=REC)
    assert driver.sysfs.journal == []
    assert driver.attach(3, 1, SUPER) == 15  # ss ports are still free


def test_attach_retries_are_bounded(fake, monkeypatch):
    monkeypatch.setattr("usbip.sysfs.vhci._ATTACH_ATTEMPTS", 3)
    fake.steal = 100
    driver = vhci(fake)
    with pytest.raises(NoFreePort, match="ports 0, 1, 2 were all busy"):
        driver.attach(3, 1, HIGH)
    assert len(driver.sysfs.journal) == 3


def test_other_kernel_errors_are_not_retried(fake, monkeypatch):
    def refuse(value):
        raise SysfsError("write %r to" % value, ATTACH, OSError(errno.EINVAL, "Invalid argument"))

    monkeypatch.setattr(fake, "kernel_attach", refuse)
    driver = vhci(fake)
    with pytest.raises(SysfsError, match="Invalid argument"):
        driver.attach(3, 1, HIGH)
    assert len(driver.sysfs.journal) == 1


@pytest.mark.parametrize("args", [
    (-1, 1, HIGH), ("x", 1, HIGH), (3, -1, HIGH), (3, 2**32, HIGH), (3, 1, Speed.UNKNOWN), (3, 1, 7),
    (3, 1, True), (None, 1, HIGH),
])
def test_bad_attach_arguments_write_nothing(fake, args):
    driver = vhci(fake)
    with pytest.raises(InvalidArgument):
        driver.attach(*args)
    assert driver.sysfs.journal == []


@pytest.mark.parametrize("record", [("", 3240, "1-1"), ("a b", 3240, "1-1"), ("h", 0, "1-1"), ("h", 3240, "../x")])
def test_bad_records_write_nothing(fake, record):
    driver = vhci(fake)
    with pytest.raises(InvalidArgument):
        driver.attach(3, 1, HIGH, record=record)
    assert driver.sysfs.journal == []


def test_attach_in_dry_run_journals_only(fake):
    driver = vhci(fake, dry_run=True)
    assert driver.attach(3, 1, HIGH, record=REC) == 0
    assert [c.op for c in driver.sysfs.journal] == ["write", "file"]
    assert fake.row(0)[0] == 4
    assert not fake.host(RECORDS).exists()  # not even the lock file


def test_a_held_lock_times_out_with_a_clear_error(fake):
    path = fake.host(LOCK_FILE)
    path.parent.mkdir(parents=True)
    with open(path, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        driver = vhci(fake, timeout=0.2)
        with pytest.raises(UsbipError, match="another usbip attach or detach has held"):
            driver.attach(3, 1, HIGH)
    assert driver.sysfs.journal == []


def _attach_in_parallel(fake, workers):
    ports, errors = [], []
    barrier = threading.Barrier(workers)

    def one(n):
        barrier.wait()
        try:
            ports.append(vhci(fake).attach(3 + n, n, HIGH, record=("10.0.0.%d" % n, 3240, "1-%d" % (n + 1))))
        except UsbipError as err:  # pragma: no cover - reported by the assertion
            errors.append(err)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return ports, errors


def test_eight_threads_attach_to_eight_distinct_ports(fake):
    fake.steal = 3  # and a C tool races them for three of the ports
    ports, errors = _attach_in_parallel(fake, 8)
    assert errors == []
    assert len(set(ports)) == 8
    assert fake.overlaps == 0  # the lock let one attach at a time into the kernel
    for port in ports:
        assert vhci(fake).read_record(port) is not None


def test_without_the_lock_attaches_do_overlap(fake, monkeypatch):
    """Proves the overlap counter above can see a missing lock."""
    monkeypatch.setattr(VhciDriver, "_locked", lambda self: _NoLock())
    ports, errors = _attach_in_parallel(fake, 8)
    assert fake.overlaps > 0
    assert errors == [] and len(set(ports)) == 8  # EBUSY retries alone still sort the ports out


class _NoLock:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _attach_from_process(args):
    fake, n = args
    return vhci(fake).attach(3, n, HIGH, record=("10.0.0.1", 3240, "1-1"))


def test_eight_processes_attach_to_eight_distinct_ports(fake):
    with multiprocessing.get_context("fork").Pool(8) as pool:
        ports = pool.map(_attach_from_process, [(fake, n) for n in range(8)])
    assert sorted(ports) == list(range(8))
    assert fake.overlaps == 0


# -- records, listing ------------------------------------------------------------
def test_imported_devices_joined_with_c_and_own_records(fake):
    fake.use(0, devid=0x00110002, busid="1-1")
    fake.c_record(0, "127.0.0.1 3240 17-1\n")
    fake.use(1, devid=0, busid="1-2")  # no record: "unknown host" in usbip port
    driver = vhci(fake)
    port = driver.attach(5, 0x00120003, SUPER, record=("::1", 3241, "usbip-vudc.0"))
    devices = driver.imported()
    assert [(d.port, d.local_busid, d.host, d.remote_port, d.remote_busid) for d in devices] == [
        (0, "1-1", "127.0.0.1", 3240, "17-1"),
        (1, "1-2", None, None, None),
        (port, "2-1", "::1", 3241, "usbip-vudc.0"),
    ]
    assert devices[0].speed == HIGH and devices[0].devid == 0x00110002 and devices[0].status == PortStatus.USED


@pytest.mark.parametrize("text", ["", "127.0.0.1 3240\n", "127.0.0.1 http 1-1\n", "h 3240 1-1 extra\n"])
def test_records_the_c_tool_would_reject_read_as_none(text):
    assert Record.parse(text) is None


def test_attaching_ports_are_not_listed(fake):
    fake.set_row(3, (5, 0, 0, 0, "0-0"))
    assert vhci(fake).imported() == []


# -- detach -----------------------------------------------------------------------
def test_detach_removes_the_record_then_writes_detach(fake):
    fake.use(1)
    fake.c_record(1, "127.0.0.1 3240 17-1\n")
    driver = vhci(fake)
    assert driver.detach(1) is True
    assert driver.sysfs.journal == [Change("unlink", RECORDS + "/port1"), Change("write", DETACH, "1")]
    assert fake.row(1)[0] == 4
    assert not fake.host(RECORDS + "/port1").exists()


def test_detach_of_a_free_port_writes_nothing(fake):
    driver = vhci(fake)
    assert driver.detach("7") is False
    assert driver.sysfs.journal == []


def test_detach_of_a_port_freed_meanwhile_is_already_detached(fake):
    fake.use(1)
    driver = vhci(fake)
    original = driver.sysfs.write

    def racing_write(path, value):
        fake.set_row(1, (4, 0, 0, 0, "0-0"))  # the connection dropped just now
        original(path, value)

    driver.sysfs.write = racing_write
    assert driver.detach(1) is False


@pytest.mark.parametrize("port", [-1, 240, 10**6, "x", "1.5", "-1", " 1", "", None, True, 1.0])
def test_bad_ports_are_refused_before_any_write(fake, port):
    fake.use(1)
    driver = vhci(fake)
    with pytest.raises(InvalidArgument):
        driver.detach(port)
    assert driver.sysfs.journal == []
    assert fake.row(1)[0] == 6


def test_detach_in_dry_run_changes_nothing(fake):
    fake.use(1)
    fake.c_record(1, "127.0.0.1 3240 17-1\n")
    driver = vhci(fake, dry_run=True)
    assert driver.detach(1) is True
    assert [c.op for c in driver.sysfs.journal] == ["unlink", "write"]
    assert fake.row(1)[0] == 6 and fake.host(RECORDS + "/port1").exists()
