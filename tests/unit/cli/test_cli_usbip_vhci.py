# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbip attach`` / ``detach`` / ``port`` against a fake vhci_hcd that reacts like the kernel."""

from __future__ import annotations

import json

import pytest
from cli_fakes import recv_exact
from fake_usb import ACM, BAD_BUSIDS, MASS_STORAGE, FakeTree, capture_tree
from fake_vhci import ATTACH, DETACH, RECORDS, VHCI, FakeVhci

from usbip.device import Speed, UsbDevice
from usbip.protocol import ImportReply, ImportRequest, Status
from usbip.sysfs.fs import Change

#: ``usbip port`` after two attaches, verbatim from the C tool (docs: sysfs.md).
C_PORT_SAMPLE = """\
Imported USB devices
====================
Port 00: <Port in Use> at High Speed(480Mbps)
       Linux Foundation : Multifunction Composite Gadget (1d6b:0104)
       1-1 -> usbip://127.0.0.1:3240/usbip-vudc.0
           -> remote bus/dev 000/000
Port 01: <Port in Use> at High Speed(480Mbps)
       Generic : pid.codes Test PID (1209:0001)
       1-2 -> usbip://127.0.0.1:3241/17-1
           -> remote bus/dev 017/002
"""
REMOTE_17_1 = UsbDevice(
    path="/sys/devices/platform/dummy_hcd.0/usb17/17-1", busid="17-1", busnum=17, devnum=2, speed=Speed.HIGH,
    id_vendor=0x1209, id_product=0x0001, bcd_device=0x0601, device_class=0, device_subclass=0, device_protocol=0,
    configuration_value=1, num_configurations=1, num_interfaces=2)


@pytest.fixture
def fake(tmp_path):
    return FakeVhci(tmp_path)


def imported_devices(fake, vudc_first=True):
    """The sample's machine: local devices 1-1 and 1-2 on vhci's high-speed bus."""
    tree = FakeTree(fake.root)
    tree.root_hub(VHCI, 1, "vhci_hcd", maxchild=15)
    devices = [(0x1D6B, 0x0104, MASS_STORAGE), (0x1209, 0x0001, ACM)]
    if not vudc_first:
        devices.reverse()
    for index, (vendor, product, interfaces) in enumerate(devices, 1):
        tree.usb_device("%s/usb1/1-%d" % (VHCI, index), devnum=index + 1, devpath=str(index), vendor=vendor,
                        product=product, interfaces=interfaces)
    return tree


def sample(fake):
    imported_devices(fake)
    fake.use(0, spd=3, devid=0, sockfd=3)
    fake.use(1, spd=3, devid=0x00110002, sockfd=4)
    fake.c_record(0, "127.0.0.1 3240 usbip-vudc.0\n")
    fake.c_record(1, "127.0.0.1 3241 17-1\n")


# -- port --------------------------------------------------------------------------
def test_port_matches_the_c_tool_verbatim(usbip, fake):
    sample(fake)
    result = usbip("port", sysfs=fake.sysfs())
    assert (result.rc, result.out, result.err) == (0, C_PORT_SAMPLE, "")


def test_port_without_records(usbip, fake):
    sample(fake)
    fake.host(RECORDS + "/port0").unlink()
    fake.c_record(1, "garbage\n")
    result = usbip("port", sysfs=fake.sysfs())
    assert result.rc == 0
    assert result.out == C_PORT_SAMPLE.replace(
        "1-1 -> usbip://127.0.0.1:3240/usbip-vudc.0", "1-1 -> unknown host, remote port and remote busid"
    ).replace("1-2 -> usbip://127.0.0.1:3241/17-1", "1-2 -> unknown host, remote port and remote busid")


def test_port_without_imports_prints_the_header(usbip, fake):
    result = usbip("port", sysfs=fake.sysfs())
    assert (result.rc, result.out, result.err) == (0, "Imported USB devices\n====================\n", "")
    assert usbip("port", "--json", sysfs=fake.sysfs()).out == "[]\n"


def test_port_while_the_local_device_is_not_visible(usbip, fake):
    """Between the attach and the enumeration the port is used but 3-5 does not exist yet."""
    fake.use(19, spd=5, devid=0x00110003, busid="2-5")
    fake.c_record(19, "server 3240 17-2\n")
    result = usbip("port", sysfs=fake.sysfs())
    assert result.out.splitlines()[2:] == [
        "Port 19: <Port in Use> at Super Speed(5000Mbps)",
        "       unknown vendor : unknown product (0000:0000)",
        "       2-5 -> usbip://server:3240/17-2",
        "           -> remote bus/dev 017/003",
    ]
    (entry,) = json.loads(usbip("port", "--json", sysfs=fake.sysfs()).out)
    assert (entry["hub"], entry["speed"], entry["usbid"], entry["vendor"]) == ("ss", "super", None, None)


def test_port_json(usbip, fake):
    sample(fake)
    result = usbip("port", "--json", sysfs=fake.sysfs())
    assert (result.rc, result.err) == (0, "")
    assert json.loads(result.out) == [
        {"port": 0, "hub": "hs", "status": "used", "speed": "high", "speed_text": "High Speed(480Mbps)",
         "local_busid": "1-1", "usbid": "1d6b:0104", "vendor_id": "1d6b", "product_id": "0104",
         "vendor": "Linux Foundation", "product": "Multifunction Composite Gadget",
         "host": "127.0.0.1", "remote_port": 3240, "remote_busid": "usbip-vudc.0",
         "devid": 0, "remote_busnum": 0, "remote_devnum": 0},
        {"port": 1, "hub": "hs", "status": "used", "speed": "high", "speed_text": "High Speed(480Mbps)",
         "local_busid": "1-2", "usbid": "1209:0001", "vendor_id": "1209", "product_id": "0001",
         "vendor": "Generic", "product": "pid.codes Test PID",
         "host": "127.0.0.1", "remote_port": 3241, "remote_busid": "17-1",
         "devid": 0x00110002, "remote_busnum": 17, "remote_devnum": 2},
    ]


def test_port_of_the_real_kernel_capture(usbip, tmp_path):
    result = usbip("port", sysfs=capture_tree("02-attached.json", tmp_path).sysfs())
    assert (result.rc, result.err) == (0, "")
    assert result.out == (
        "Imported USB devices\n"
        "====================\n"
        "Port 00: <Port in Use> at High Speed(480Mbps)\n"
        "       Generic : pid.codes Test PID (1209:0001)\n"
        "       1-1 -> usbip://127.0.0.1:3240/17-1\n"
        "           -> remote bus/dev 017/002\n"
        "Port 01: <Port in Use> at High Speed(480Mbps)\n"
        "       Linux Foundation : Multifunction Composite Gadget (1d6b:0104)\n"
        "       1-2 -> usbip://127.0.0.1:3241/usbip-vudc.0\n"
        "           -> remote bus/dev 000/000\n"
    )


def test_port_without_vhci_hcd(usbip, tmp_path):
    from usbip.sysfs.fs import Sysfs

    result = usbip("port", sysfs=Sysfs(str(tmp_path)))
    assert (result.rc, result.out) == (1, "")
    assert result.err_lines == ["usbip: error: vhci_hcd is not loaded (/sys/devices/platform/vhci_hcd.0 is missing)"
                                " (modprobe vhci-hcd)"]


# -- detach --------------------------------------------------------------------------
def test_detach_removes_the_record_then_frees_the_port(usbip, fake):
    sample(fake)
    sysfs = fake.sysfs()
    result = usbip("detach", "-p", "1", sysfs=sysfs)
    assert (result.rc, result.out) == (0, "")
    assert result.err_lines == ["usbip: info: Port 1 is now detached!"]
    assert sysfs.journal == [Change("unlink", RECORDS + "/port1"), Change("write", DETACH, "1")]
    assert fake.row(1)[0] == 4 and not fake.host(RECORDS + "/port1").exists()


def test_detach_of_a_free_port_succeeds_without_change(usbip, fake):
    sysfs = fake.sysfs()
    result = usbip("detach", "--port", "5", sysfs=sysfs)
    assert (result.rc, result.out) == (0, "")
    assert result.err_lines == ["usbip: info: Port 5 is already detached!"]
    assert sysfs.journal == []


def test_detach_beyond_the_last_port_is_refused(usbip, fake):
    sysfs = fake.sysfs()
    result = usbip("detach", "-p", "240", sysfs=sysfs)
    assert (result.rc, result.out) == (2, "")
    assert result.err_lines == ["usbip: error: invalid port 240: vhci_hcd has ports 0-239"]
    assert sysfs.journal == []


@pytest.mark.parametrize("port", ["", "x", "-1", "1.5", " 1", "0x1", "\uff11", "99999999999"])
def test_detach_refuses_a_malformed_port_before_any_sysfs_access(usbip, port):
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("sysfs accessed: %s" % name)

    result = usbip("detach", "-p", port, sysfs=Untouchable())
    assert (result.rc, result.out) == (2, "")
    assert len(result.err_lines) == 1 and result.err.startswith("usbip: error: argument -p/--port: invalid port")


# -- attach ----------------------------------------------------------------------------
def import_server(server, status=Status.OK, device=REMOTE_17_1):
    requests = []

    def handler(conn):
        request = recv_exact(conn, 40)
        requests.append(request)
        busid = ImportRequest(device.busid).encode() == request and device.busid
        conn.sendall(ImportReply(status, device if status == Status.OK and busid else None).encode())
        recv_exact(conn, 1)  # the client closes once the kernel holds the socket

    srv = server(handler)
    srv.requests = requests
    return srv


def test_attach_takes_a_free_port_and_records_it(usbip, fake, server):
    srv = import_server(server)
    sysfs = fake.sysfs()
    result = usbip("--tcp-port", str(srv.port), "attach", "-r", "127.0.0.1", "-b", "17-1", sysfs=sysfs)
    assert (result.rc, result.out, result.err) == (0, "", "")
    assert srv.requests == [ImportRequest("17-1").encode()]
    assert [c.path for c in sysfs.journal] == [ATTACH, RECORDS + "/port0"]
    assert fake.row(0)[0] == 6 and fake.row(0)[2] == 0x00110002
    assert fake.host(RECORDS + "/port0").read_text() == "127.0.0.1 %d 17-1\n" % srv.port

    shown = json.loads(usbip("port", "--json", sysfs=fake.sysfs()).out)
    assert [(p["port"], p["host"], p["remote_port"], p["remote_busid"]) for p in shown] == [
        (0, "127.0.0.1", srv.port, "17-1")]


def test_attach_device_alias_and_debug_messages(usbip, fake, server):
    vudc = UsbDevice(path="/sys/devices/platform/usbip-vudc.0", busid="usbip-vudc.0", busnum=0, devnum=0,
                     speed=Speed.HIGH, id_vendor=0x1D6B, id_product=0x0104, bcd_device=0x0601, device_class=0,
                     device_subclass=0, device_protocol=0, configuration_value=0, num_configurations=1,
                     num_interfaces=0)
    srv = import_server(server, device=vudc)
    result = usbip("-d", "-t", str(srv.port), "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.0", sysfs=fake.sysfs())
    assert (result.rc, result.out) == (0, "")
    assert result.err_lines == [
        "usbip: debug: importing usbip-vudc.0 from 127.0.0.1:%d" % srv.port,
        "usbip: debug: usbip-vudc.0 from 127.0.0.1:%d is attached to port 0" % srv.port,
    ]


def test_attach_refused_by_the_server_gets_the_c_message(usbip, fake, server):
    srv = import_server(server, status=Status.DEV_BUSY)
    sysfs = fake.sysfs()
    result = usbip("-t", str(srv.port), "attach", "-r", "127.0.0.1", "-b", "17-1", sysfs=sysfs)
    assert (result.rc, result.out) == (1, "")
    assert result.err_lines == ["usbip: error: Attach Request for 17-1 failed - Device busy (exported)"]
    assert sysfs.journal == []


def test_attach_with_every_port_taken(usbip, fake, server):
    fake.fill("hs")
    srv = import_server(server)
    sysfs = fake.sysfs()
    result = usbip("-t", str(srv.port), "attach", "-r", "127.0.0.1", "-b", "17-1", sysfs=sysfs)
    assert (result.rc, result.out) == (1, "")
    assert len(result.err_lines) == 1 and result.err.startswith("usbip: error: no free hs port")
    assert sysfs.journal == []


def test_attach_without_vhci_hcd_does_not_take_the_device(usbip, tmp_path, server):
    from usbip.sysfs.fs import Sysfs

    srv = import_server(server)
    result = usbip("-t", str(srv.port), "attach", "-r", "127.0.0.1", "-b", "17-1", sysfs=Sysfs(str(tmp_path)))
    assert result.rc == 1
    assert result.err.startswith("usbip: error: vhci_hcd is not loaded")
    assert srv.connections == 0


@pytest.mark.parametrize("argv", [
    ("attach", "-r", "127.0.0.1"),
    ("attach", "-b", "17-1"),
    ("attach", "-r", "", "-b", "17-1"),
    ("attach", "-r", "a b", "-b", "17-1"),
    ("attach", "-r", "h\tx", "-b", "17-1"),
] + [("attach", "-r", "127.0.0.1", "-b", busid) for busid in BAD_BUSIDS]
  + [("attach", "-r", "127.0.0.1", "-d", busid) for busid in BAD_BUSIDS])
def test_attach_argument_errors_touch_nothing(usbip, fake, server, argv):
    srv = import_server(server)
    sysfs = fake.sysfs()
    result = usbip("-t", str(srv.port), *argv, sysfs=sysfs)
    assert (result.rc, result.out) == (2, "")
    assert len(result.err_lines) == 1 and result.err.startswith("usbip: error: ")
    assert sysfs.journal == [] and srv.connections == 0
