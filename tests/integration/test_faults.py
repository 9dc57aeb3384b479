"""Faults on the real kernel: crashes, cut connections, races, exhaustion.

Device mode (gadgets on usbip-vudc instances) throughout: every test gets
instances of its own, and no usbip-host bind/unbind cycle is added to the
session. Each test states what must hold afterwards -- the attachment, the
port table, the server's ``usbip_status`` -- and measures what it waits for.

* ``kill -9`` of our usbipd leaves the kernel's attachment working; a new
  daemon on the same port lists and exports another device.
* A connection killed mid-transfer (``ss -K``, client side) and one cut
  silently (``tc`` drops its packets both ways) free the client's port and
  make the server's device available again -- the silent cut within the
  keepalive/user-timeout bound set in ``net/sockets.py``.
* Two clients racing to import one device: one wins, the other gets
  ST_DEV_BUSY.
* 16 attaches started at once all succeed (usbip-vudc reloaded with 16
  instances when it has fewer).
* With every high-speed vhci port occupied -- by real attaches of sockets
  whose peer never answers, the cheapest way to take all 120 -- an attach
  fails with "no free hs port", takes no port, writes no record, and the
  server's device is available again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from lab.guestkit import block_device_of, ours, read_disk, sh, wait_for
from usbip import attachments
from usbip.device import PortStatus, Speed
from usbip.errors import UsbipError
from usbip.net import client, sockets
from usbip.protocol import Status
from usbip.sysfs.errors import SysfsError
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.vhci import RECORDS, VHCI, VhciDriver
from usbip.sysfs.vudc import VudcDriver

USBIP = ours("usbip")
USBIPD = ours("usbipd")
#: How long a silently cut attachment may live: keepalive (idle) or user timeout (data in flight).
KEEPALIVE_BOUND = max(sockets.KEEPIDLE + sockets.KEEPINTVL * sockets.KEEPCNT, sockets.USER_TIMEOUT_MS / 1000)
#: Slack for the retransmission timer's granularity and our polling, under TCG.
SLACK = 10.0


def vudc_status(n: int) -> str:
    with open("/sys/devices/platform/usbip-vudc.%d/usbip_status" % n) as f:
        return f.read().strip()


def busy_ports() -> list:
    return [p for p in VhciDriver(Sysfs()).ports() if not p.free]


def imported(busid: str):
    found = [p for p in VhciDriver(Sysfs()).imported() if p.remote_busid == busid]
    return found[0] if found else None


def records() -> set:
    return {n for n in os.listdir(RECORDS) if n.startswith("port")} if os.path.isdir(RECORDS) else set()


def attach(port: int, busid: str):
    sh(*USBIP, "-t", str(port), "attach", "-r", "127.0.0.1", "-d", busid)
    return wait_for(lambda: imported(busid), 30, "%s on a vhci port" % busid)


def detach_all() -> None:
    sysfs = Sysfs()
    for p in busy_ports():
        with contextlib.suppress(SysfsError):  # EINVAL: it went by itself meanwhile
            sysfs.write(VHCI + "/detach", str(p.port))
    wait_for(lambda: not busy_ports(), 60, "every vhci port free")


def timed(predicate, bound: float, interval: float = 0.05) -> float:
    """Seconds until ``predicate`` holds; fails past ``bound``."""
    started = time.monotonic()
    wait_for(predicate, bound, "a condition within %.0f s" % bound, interval=interval)
    return time.monotonic() - started


@pytest.fixture
def clean_ports():
    """Every test starts and ends with all vhci ports free."""
    detach_all()
    yield
    detach_all()


# -- a socket that is not connected ------------------------------------------------
def test_vhci_takes_an_unconnected_socket_and_lets_the_port_go(kernel, clean_ports):
    """What the unit fakes model (fake_vhci's ``drop``): the write succeeds, and the port is free again at once.

    No caller of ours hands vhci such a socket on purpose; a connection that
    dies between the import and the attach does the same, so the driver must
    not count on the write failing.
    """
    with socket.socket() as unconnected:
        port = VhciDriver(Sysfs()).attach(unconnected.fileno(), 0x00010002, Speed.HIGH)
        wait_for(lambda: VhciDriver(Sysfs()).ports()[port].free, 10, "vhci to let port %d go" % port)


# -- 16 at once ----------------------------------------------------------------------
def _reload_vudc(instances: int) -> None:
    # Allowed while no gadget is bound (the gadgets fixture removed every earlier one).
    assert not [u for u in os.listdir("/sys/class/udc") if u.startswith("usbip-vudc.")
                and open("/sys/class/udc/%s/function" % u).read().strip()], "a gadget is still bound"
    sh("modprobe", "-r", "usbip-vudc")
    sh("modprobe", "usbip-vudc", "num=%d" % instances)


@pytest.fixture
def sixteen_vudc(kernel):
    """usbip-vudc with 16 instances for one test, then as many as the session had (other suites count them).
    Requested before ``gadgets``, so its gadgets are gone when it reloads the module again."""
    before = len(VudcDriver(kernel).instances())
    if before < 16:
        _reload_vudc(16)
    yield
    if before < 16:
        _reload_vudc(before)


def test_sixteen_concurrent_attaches(kernel, sixteen_vudc, gadgets, backing_file, daemons, clean_ports):
    assert len(VudcDriver(kernel).instances()) >= 16
    for n in range(16):
        # u_serial has 8 ports (ttyGS0-7): ACM for half of them, small disks for the others.
        function, disk = ("acm", None) if n < 8 else ("mass_storage", backing_file("x16-%d" % n, 64 << 10, n))
        gadgets("x16-%d" % n, "usbip-vudc.%d" % n, 0x1209, 0x0300 + n, "X16-%d" % n, function, disk)
    daemons(*USBIPD, "--device", port=3280)
    # Sixteen threads released together, each a whole `usbip attach`: import over TCP, then the
    # vhci attach under the host-wide lock (one open file each, so they exclude each other as
    # processes do). Threads rather than processes: 16 interpreters starting under TCG cost a minute.
    barrier = threading.Barrier(16)
    outcomes: list = [None] * 16

    def attach_one(n: int) -> None:
        barrier.wait(30)
        try:
            outcomes[n] = attachments.attach("127.0.0.1", 3280, "usbip-vudc.%d" % n, VhciDriver(Sysfs())).port
        except Exception as err:  # reported by the assertion below
            outcomes[n] = err

    threads = [threading.Thread(target=attach_one, args=(n,)) for n in range(16)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    elapsed = time.monotonic() - started
    print("16 concurrent attaches: %d succeeded in %.1f s" % (sum(isinstance(o, int) for o in outcomes), elapsed))
    assert all(isinstance(o, int) for o in outcomes), outcomes
    assert len(set(outcomes)) == 16
    wait_for(lambda: len([p for p in VhciDriver(Sysfs()).imported() if p.remote_busid]) == 16, 60, "16 devices")
    ports = json.loads(sh(*USBIP, "port", "--json").stdout)
    assert sorted(p["remote_busid"] for p in ports) == sorted("usbip-vudc.%d" % n for n in range(16))
    assert len({p["port"] for p in ports}) == 16 and {p["hub"] for p in ports} == {"hs"}
    assert all(vudc_status(n) == "2" for n in range(16))
    detach_all()
    for n in range(16):
        wait_for(lambda n=n: vudc_status(n) == "1", 30, "usbip-vudc.%d available again" % n)


# -- kill -9 of the daemon -------------------------------------------------------------
def test_kill_9_of_usbipd_with_a_device_attached(kernel, gadgets, backing_file, daemons, clean_ports):
    disk = backing_file("kill9", size=2 << 20, seed=9)
    gadgets("k9disk", "usbip-vudc.0", 0x1209, 0x0201, "FLT-K9", "mass_storage", disk)
    gadgets("k9acm", "usbip-vudc.1", 0x1209, 0x0202, "FLT-K9B", "acm")
    pidfile = daemons(*USBIPD, "--device", port=3281)
    port = attach(3281, "usbip-vudc.0")
    dev = block_device_of(port.local_busid)
    assert read_disk(dev, 1 << 20) == disk.data[: 1 << 20]

    with open(pidfile) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z",
             10, "usbipd to die")
    # The kernel holds the connection: the disk still reads, all of it, through USB/IP.
    assert read_disk(dev, len(disk.data)) == disk.data
    assert imported("usbip-vudc.0").port == port.port and vudc_status(0) == "2"

    daemons(*USBIPD, "--device", port=3281)  # same port: the held connection does not block the bind
    listed = [d.busid for d in client.list_devices("127.0.0.1", 3281)]
    assert listed == ["usbip-vudc.1"]  # .0 is in use, so not offered
    other = attach(3281, "usbip-vudc.1")
    assert other.port != port.port and vudc_status(1) == "2"
    assert read_disk(dev, 1 << 20) == disk.data[: 1 << 20]  # the first attachment is untouched
    detach_all()
    for n in (0, 1):
        wait_for(lambda n=n: vudc_status(n) == "1", 30, "usbip-vudc.%d available again" % n)


# -- two clients, one device ---------------------------------------------------------------
def test_two_clients_racing_to_import_one_device(kernel, gadgets, daemons):
    gadgets("race", "usbip-vudc.4", 0x1209, 0x0204, "FLT-RACE", "acm")
    daemons(*USBIPD, "--device", port=3282)
    for round_no in range(5):
        barrier = threading.Barrier(2)
        results: list = [None, None]

        def race(i: int, barrier: threading.Barrier, results: list) -> None:
            barrier.wait(10)
            try:
                sock, device = client.import_device("127.0.0.1", 3282, "usbip-vudc.4")
                results[i] = ("won", sock)
            except client.ImportRefused as err:
                results[i] = ("refused", err.status)
            except Exception as err:  # reported by the assertion below
                results[i] = ("error", err)

        threads = [threading.Thread(target=race, args=(i, barrier, results)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        try:
            outcomes = sorted(r[0] for r in results)
            assert outcomes == ["refused", "won"], (round_no, results)
            assert [r[1] for r in results if r[0] == "refused"] == [Status.DEV_BUSY]
            assert vudc_status(4) == "2"
        finally:
            for r in results:
                if r and r[0] == "won":
                    r[1].close()  # the winner hangs up: the device is released
        wait_for(lambda: vudc_status(4) == "1", 30, "usbip-vudc.4 available again")


# -- every hs port taken ----------------------------------------------------------------------
def test_attach_with_every_hs_port_taken(kernel, gadgets, daemons, clean_ports):
    gadgets("full", "usbip-vudc.5", 0x1209, 0x0205, "FLT-FULL", "acm")
    daemons(*USBIPD, "--device", port=3283)
    vhci = VhciDriver(Sysfs())
    hs = [p.port for p in vhci.ports() if p.hub == "hs"]
    listener = socket.create_server(("127.0.0.1", 0))
    peers = []
    started = time.monotonic()
    try:
        # Real attaches of sockets whose peer never answers: the ports stay in
        # "initializing" (or used) until detached, exactly as busy as real devices.
        sysfs = Sysfs()
        for n, number in enumerate(hs):
            with socket.create_connection(listener.getsockname()) as mine:
                peers.append(listener.accept()[0])
                sysfs.write(VHCI + "/attach", "%d %d %d %d" % (number, mine.fileno(), 0x00FF0000 + n, Speed.HIGH))
        print("filled %d hs ports in %.1f s" % (len(hs), time.monotonic() - started))
        before = {(p.port, p.status, p.devid, p.sockfd) for p in busy_ports()}
        assert {port for port, *_rest in before} == set(hs)
        assert {status for _port, status, *_rest in before} <= {PortStatus.NOT_ASSIGNED, PortStatus.USED}
        records_before = records()

        result = sh(*USBIP, "-t", "3283", "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.5", check=False)
        assert result.returncode == 1
        assert result.stderr.startswith("usbip: error: no free hs port for a High Speed(480Mbps) device "
                                        "(hs %d/%d in use, ss 0/%d in use)" % (len(hs), len(hs), len(hs))), \
            result.stderr
        # No partial state: the same ports, no new record, the device back on offer.
        assert {(p.port, p.status, p.devid, p.sockfd) for p in busy_ports()} == before
        assert records() == records_before
        released = timed(lambda: vudc_status(5) == "1", 30)
        assert [d.busid for d in client.list_devices("127.0.0.1", 3283)] == ["usbip-vudc.5"]
        print("device available again %.2f s after the refused attach" % released)
    finally:
        detach_all()
        for peer in peers:
            peer.close()
        listener.close()
    port = attach(3283, "usbip-vudc.5")  # with ports free again, the same attach succeeds
    assert port.hub == "hs"


# -- connections cut mid-transfer ----------------------------------------------------------------
def _transfer(gadgets, backing_file, daemons, instance: int, tcp_port: int):
    disk = backing_file("cut%d" % instance, size=4 << 20, seed=instance)
    gadgets("cut%d" % instance, "usbip-vudc.%d" % instance, 0x1209, 0x0210 + instance, "FLT-CUT%d" % instance,
            "mass_storage", disk)
    daemons(*USBIPD, "--device", port=tcp_port)
    port = attach(tcp_port, "usbip-vudc.%d" % instance)
    dev = block_device_of(port.local_busid)
    # Reads the disk over and over until a read fails: the transfer is under way whenever the cut comes.
    dd = subprocess.Popen(["sh", "-c", "while dd if=%s of=/dev/null bs=64k iflag=direct; do :; done" % dev],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    assert dd.poll() is None, "the transfer ended before the cut"
    return port, dd


def _reimport(tcp_port: int, instance: int) -> list:
    """Import the device again after the cut (two tries at most); the outcomes, last one "ok"."""
    attempts = []
    for _attempt in range(2):
        try:
            sock, _device = client.import_device("127.0.0.1", tcp_port, "usbip-vudc.%d" % instance)
        except UsbipError as err:
            attempts.append(str(err))
            continue
        sock.close()
        attempts.append("ok")
        break
    wait_for(lambda: vudc_status(instance) == "1", 30, "usbip-vudc.%d available again" % instance)
    return attempts


def _finish(dd) -> str:
    try:
        return dd.communicate(timeout=60)[1].decode(errors="replace")
    except subprocess.TimeoutExpired:
        dd.kill()
        return "dd killed"


def _assert_ended_by_the_cut(dd) -> None:
    """The cut ended the read loop: inside a read ("error reading"), or between two reads, when the
    next one found the disk gone ("failed to open")."""
    ended = _finish(dd)
    assert "error reading" in ended or "failed to open" in ended, ended


def test_connection_killed_mid_transfer(kernel, gadgets, backing_file, daemons, clean_ports):
    """``ss -K`` aborts the client's socket (a reset reaches the server): both ends let go at once."""
    for module in ("inet_diag", "tcp_diag"):  # ss -K needs the socket-diag destroy path
        sh("modprobe", module)
    port, dd = _transfer(gadgets, backing_file, daemons, 2, 3284)
    started = time.monotonic()
    killed = sh("ss", "-K", "dst", "127.0.0.1", "dport", "=", ":3284").stdout
    assert ":3284" in killed, killed
    wait_for(lambda: not busy_ports(), KEEPALIVE_BOUND, "the client's port to free", interval=0.05)
    port_free = time.monotonic() - started
    wait_for(lambda: vudc_status(2) == "1", KEEPALIVE_BOUND, "the device to be available", interval=0.05)
    available = time.monotonic() - started
    print("ss -K mid-transfer: client port free after %.2f s, server device available after %.2f s"
          % (port_free, available))
    _assert_ended_by_the_cut(dd)
    assert [d.busid for d in client.list_devices("127.0.0.1", 3284)] == ["usbip-vudc.2"]
    attempts = _reimport(3284, 2)
    print("re-import after the kill: %s" % attempts)
    assert attempts[-1] == "ok"


def test_connection_cut_silently_mid_transfer(kernel, gadgets, backing_file, daemons, clean_ports):
    """Every packet of the connection dropped (``tc``): only the timeouts can notice."""
    assert shutil.which("tc"), "tc is not installed: lab/install-deps.sh installs iproute2 (the guests share its /usr)"
    for module in ("sch_prio", "cls_u32", "act_gact"):
        sh("modprobe", module)
    port, dd = _transfer(gadgets, backing_file, daemons, 3, 3285)
    try:
        sh("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio")
        for field in ("dport", "sport"):
            sh("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
               "match", "ip", field, "3285", "0xffff", "action", "drop")
        bound = KEEPALIVE_BOUND + SLACK
        port_free = timed(lambda: not busy_ports(), bound, interval=0.1)
        available = timed(lambda: vudc_status(3) == "1", bound - port_free, interval=0.1) + port_free
        dropped = sh("tc", "-s", "filter", "show", "dev", "lo").stdout
    finally:
        sh("tc", "qdisc", "del", "dev", "lo", "root", check=False)
    print("silent cut mid-transfer: client port free after %.1f s, server device available after %.1f s "
          "(bound %.0f s)" % (port_free, available, KEEPALIVE_BOUND))
    assert "dropped" in dropped and "Sent 0 bytes" not in dropped
    _assert_ended_by_the_cut(dd)
    assert [d.busid for d in client.list_devices("127.0.0.1", 3285)] == ["usbip-vudc.3"]
    attempts = _reimport(3285, 3)
    print("re-import after the silent cut: %s" % attempts)
    assert attempts[-1] == "ok"
