# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbip list``: the C tool's layouts byte for byte, its bugs fixed, and ``--json``."""

from __future__ import annotations

import errno
import json
import socket

import pytest
from cli_fakes import recv_exact
from fake_usb import capture_tree, standard_tree

from usbip.device import Speed, UsbDevice, UsbInterface
from usbip.protocol import DevlistReply, DevlistRequest

DUMMY_17_1 = UsbDevice(
    path="/sys/devices/platform/dummy_hcd.0/usb17/17-1", busid="17-1", busnum=17, devnum=2, speed=Speed.HIGH,
    id_vendor=0x1209, id_product=0x0001, bcd_device=0x0601, device_class=0, device_subclass=0, device_protocol=0,
    configuration_value=1, num_configurations=1, num_interfaces=2,
    interfaces=(UsbInterface(0x02, 0x02, 0x01), UsbInterface(0x0A, 0x00, 0x00)))
VUDC_0 = UsbDevice(
    path="/sys/devices/platform/usbip-vudc.0", busid="usbip-vudc.0", busnum=0, devnum=0, speed=Speed.HIGH,
    id_vendor=0x1D6B, id_product=0x0104, bcd_device=0x0601, device_class=0xEF, device_subclass=0x02,
    device_protocol=0x01, configuration_value=0, num_configurations=1, num_interfaces=0)

LOCAL = (
    " - busid 17-1 (1209:0001)\n"
    "   Generic : pid.codes Test PID (1209:0001)\n"
    "\n"
    " - busid 18-1.2 (46f4:0001)\n"
    "   QEMU : unknown product (46f4:0001)\n"
    "\n"
    " - busid 18-1.3 (0403:6001)\n"
    "   Future Technology Devices International, Ltd : FT232 Serial (UART) IC (0403:6001)\n"
    "\n"
    " - busid 18-2 (0627:0001)\n"
    "   unknown vendor : unknown product (0627:0001)\n"
    "\n"
    " - busid 18-3 (08e6:4433)\n"
    "   Gemalto (was Gemplus) : GemPC433-Swap (08e6:4433)\n"
    "\n"
)
PARSABLE = ("busid=17-1#usbid=1209:0001#\nbusid=18-1.2#usbid=46f4:0001#\nbusid=18-1.3#usbid=0403:6001#\n"
            "busid=18-2#usbid=0627:0001#\nbusid=18-3#usbid=08e6:4433#\n")
REMOTE = (
    "Exportable USB devices\n"
    "======================\n"
    " - 127.0.0.1\n"
    "       17-1: Generic : pid.codes Test PID (1209:0001)\n"
    "           : /sys/devices/platform/dummy_hcd.0/usb17/17-1\n"
    "           : (Defined at Interface level) (00/00/00)\n"
    "           :  0 - Communications / Abstract (modem) / AT-commands (v.25ter) (02/02/01)\n"
    "           :  1 - CDC Data / Unused / unknown protocol (0a/00/00)\n"
    "\n"
    "usbip-vudc.0: Linux Foundation : Multifunction Composite Gadget (1d6b:0104)\n"
    "           : /sys/devices/platform/usbip-vudc.0\n"
    "           : unknown class / unknown subclass / unknown protocol (ef/02/01)\n"
    "\n"
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Built once: listing only reads (the tests check that the journal stays empty)."""
    return standard_tree(tmp_path_factory.mktemp("tree"))


def devlist_server(server, devices):
    def handler(conn):
        assert recv_exact(conn, 8) == DevlistRequest().encode()
        conn.sendall(DevlistReply(tuple(devices)).encode())

    return server(handler)


# -- list -l -----------------------------------------------------------------------
def test_list_local_prints_the_c_layout_without_hubs_or_imported_devices(usbip, tree):
    sysfs = tree.sysfs()
    result = usbip("list", "-l", sysfs=sysfs)
    assert (result.rc, result.out, result.err) == (0, LOCAL, "")
    assert sysfs.journal == []


@pytest.mark.parametrize("argv", [
    ("list", "-p", "-l"),
    ("list", "-l", "-p"),  # the C tool ignores -p here
    ("list", "--parsable", "--local"),
    ("list", "-lp"),
])
def test_list_local_parsable_in_any_order(usbip, tree, argv):
    result = usbip(*argv, sysfs=tree.sysfs())
    assert (result.rc, result.out, result.err) == (0, PARSABLE, "")


def test_list_local_json(usbip, tree):
    tree.kernel_driver_unbind("18-2")  # a device no usb.ids entry names, taken from its driver by hand
    result = usbip("list", "-l", "--json", sysfs=tree.sysfs())
    assert result.rc == 0 and result.err == ""
    devices = json.loads(result.out)
    assert [d["busid"] for d in devices] == ["17-1", "18-1.2", "18-1.3", "18-2", "18-3"]
    assert devices[0] == {
        "busid": "17-1",
        "path": "/sys/devices/platform/dummy_hcd.0/usb17/17-1",
        "busnum": 17,
        "devnum": 2,
        "usbid": "1209:0001",
        "vendor_id": "1209",
        "product_id": "0001",
        "vendor": "Generic",
        "product": "pid.codes Test PID",
        "bcd_device": "0601",
        "speed": "high",
        "speed_text": "High Speed(480Mbps)",
        "class": {"class": "00", "subclass": "00", "protocol": "00"},
        "configuration": 1,
        "num_configurations": 1,
        "interfaces": [{"class": "02", "subclass": "02", "protocol": "01"},
                       {"class": "0a", "subclass": "00", "protocol": "00"}],
        "driver": "usb",
        "serial": "SER-gdummy",
        "attached_by": None,
    }
    keyboard = devices[3]
    assert (keyboard["vendor"], keyboard["product"], keyboard["driver"]) == (None, None, None)
    assert (keyboard["busid"], keyboard["speed"], keyboard["configuration"], keyboard["interfaces"]) == (
        "18-2", "high", 0, [])
    assert devices[2]["speed"] == "full"  # the FTDI adapter behind the hub


def test_list_local_of_the_real_kernel_capture(usbip, tmp_path):
    result = usbip("list", "-l", sysfs=capture_tree("01-loaded.json", tmp_path).sysfs())
    assert (result.rc, result.err) == (0, "")
    assert result.out == " - busid 17-1 (1209:0001)\n   Generic : pid.codes Test PID (1209:0001)\n\n"


def test_list_local_without_usb_devices_prints_nothing(usbip, tmp_path):
    tmp_path.joinpath("sys").mkdir()
    from usbip.sysfs.fs import Sysfs

    assert vars(usbip("list", "-l", sysfs=Sysfs(str(tmp_path)))) == {"rc": 0, "out": "", "err": ""}
    assert usbip("list", "-l", "--json", sysfs=Sysfs(str(tmp_path))).out == "[]\n"


# -- list -d -----------------------------------------------------------------------
def test_list_device_prints_real_ids_and_skips_instances_without_gadget(usbip, tree):
    result = usbip("list", "-d", sysfs=tree.sysfs())
    assert (result.rc, result.err) == (0, "")
    assert result.out == (" - busid usbip-vudc.0 (1d6b:0104)\n"
                          "   Linux Foundation : Multifunction Composite Gadget (1d6b:0104)\n\n")
    assert usbip("list", "-d", "-p", sysfs=tree.sysfs()).out == "busid=usbip-vudc.0#usbid=1d6b:0104#\n"


def test_list_device_json(usbip, tree):
    (gadget,) = json.loads(usbip("list", "--device", "--json", sysfs=tree.sysfs()).out)
    assert gadget["busid"] == "usbip-vudc.0"
    assert gadget["path"] == "/sys/devices/platform/usbip-vudc.0"
    assert (gadget["vendor_id"], gadget["product_id"], gadget["usbid"]) == ("1d6b", "0104", "1d6b:0104")
    assert gadget["product"] == "Multifunction Composite Gadget"
    assert (gadget["busnum"], gadget["devnum"], gadget["interfaces"], gadget["driver"]) == (0, 0, [], None)
    assert gadget["speed"] == "high"


def test_list_device_failure_is_one_line(usbip, tmp_path):
    tree = standard_tree(tmp_path)
    tree.errors["/sys/devices/platform/usbip-vudc.0/dev_desc"] = errno.EIO
    result = usbip("list", "-d", sysfs=tree.sysfs())
    assert result.rc == 1 and result.out == ""
    assert result.err_lines == [
        "usbip: error: cannot read /sys/devices/platform/usbip-vudc.0/dev_desc: Input/output error"]


# -- list -r -----------------------------------------------------------------------
def test_list_remote_prints_the_c_layout(usbip, server):
    srv = devlist_server(server, [DUMMY_17_1, VUDC_0])
    result = usbip("--tcp-port", str(srv.port), "list", "-r", "127.0.0.1")
    assert (result.rc, result.out, result.err) == (0, REMOTE, "")
    assert srv.connections == 1


def test_list_remote_parsable_and_json(usbip, server):
    srv = devlist_server(server, [DUMMY_17_1, VUDC_0])
    result = usbip("-t", str(srv.port), "list", "-r", "127.0.0.1", "-p")
    assert result.out == "busid=17-1#usbid=1209:0001#\nbusid=usbip-vudc.0#usbid=1d6b:0104#\n"
    devices = json.loads(usbip("-t", str(srv.port), "list", "--json", "--remote", "127.0.0.1").out)
    assert [d["busid"] for d in devices] == ["17-1", "usbip-vudc.0"]
    assert devices[0]["interfaces"] == [{"class": "02", "subclass": "02", "protocol": "01"},
                                        {"class": "0a", "subclass": "00", "protocol": "00"}]
    assert devices[1]["class"] == {"class": "ef", "subclass": "02", "protocol": "01"}
    assert (devices[0]["driver"], devices[0]["serial"]) == (None, None)


def test_list_remote_without_devices_says_so_on_stderr(usbip, server):
    srv = devlist_server(server, [])
    result = usbip("-t", str(srv.port), "list", "-r", "127.0.0.1")
    assert (result.rc, result.out) == (0, "")
    assert result.err_lines == ["usbip: info: no exportable devices found on 127.0.0.1"]


def test_list_remote_unreachable_is_one_line(usbip, server):
    srv = devlist_server(server, [])
    port = srv.port
    srv.close()
    result = usbip("-t", str(port), "list", "-r", "127.0.0.1")
    assert (result.rc, result.out) == (1, "")
    assert result.err_lines == ["usbip: error: cannot connect to 127.0.0.1:%d: Connection refused" % port]


def test_list_remote_garbage_reply_is_one_line(usbip, server):
    def handler(conn):
        recv_exact(conn, 8)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    srv = server(handler)
    result = usbip("-t", str(srv.port), "list", "-r", "127.0.0.1")
    assert (result.rc, result.out) == (1, "")
    assert len(result.err_lines) == 1 and result.err.startswith("usbip: error: ")


def test_list_remote_unknown_host_is_one_line(usbip, monkeypatch):
    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    result = usbip("list", "-r", "no-such-host.invalid")
    assert (result.rc, result.out) == (1, "")
    assert len(result.err_lines) == 1
    assert result.err.startswith("usbip: error: cannot resolve no-such-host.invalid")


# -- argument errors -------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ("list",),
    ("list", "-p"),
    ("list", "-l", "-d"),
    ("list", "-l", "-r", "127.0.0.1"),
    ("list", "-r"),
    ("list", "-r", ""),
    ("list", "-r", "a b"),
    ("list", "-l", "-p", "--json"),
    ("list", "-l", "--bogus"),
])
def test_list_argument_errors_are_one_line_and_read_nothing(usbip, tree, argv):
    sysfs = tree.sysfs()
    result = usbip(*argv, sysfs=sysfs)
    assert (result.rc, result.out) == (2, "")
    assert len(result.err_lines) == 1 and result.err.startswith("usbip: error: ")
    assert sysfs.touched == [] and sysfs.journal == []
