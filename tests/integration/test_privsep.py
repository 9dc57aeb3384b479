"""usbipd's privilege separation on the real kernel: a root monitor, an unprivileged network process.

Our usbipd is started as root, as systemd starts it. What is asserted, from
what the kernel shows in /proc:

* the network process (the monitor's one child) runs with a uid other than
  0, no capability and no_new_privs, and holds the listening socket;
* the monitor holds no TCP socket, before or after an export: the client's
  connection, once attached, belongs to no process at all (the kernel holds
  it) -- the monitor closed the copy it was handed after writing its number;
* Debian's C ``usbip list -r`` and ``usbip attach`` work through it, and the
  attached disk reads back its backing file;
* the monitor, fed hostile requests on the network process's own channel end
  (taken with ``pidfd_getfd`` while that process is stopped), refuses each one
  and changes nothing in sysfs, then serves the attach;
* one import inside TLS (device mode, kernel TLS) goes through the dropped
  process too: the certificate and key, root's files, were read by the monitor.
"""

from __future__ import annotations

import array
import ctypes
import os
import signal
import socket
import subprocess

import pytest

from lab import pki
from lab.guestkit import block_device_of, find_usb_device, listening, ours, read_disk, sh, wait_for
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.vhci import VHCI, VhciDriver

C = ("usbip",)
OURS = ours("usbip")
OUR_DAEMON = ours("usbipd")
PORT = 3296
TLS_PLAIN_PORT, TLS_PORT = 3298, 3299


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def children_of(pid: int) -> list:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def status_of(pid: int) -> dict:
    with open("/proc/%d/status" % pid) as f:
        return {key: value.split() for key, _sep, value in (line.partition(":") for line in f)}


def tcp_sockets() -> dict:
    """inode -> (state, local port, remote port) of every TCP socket the kernel knows."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                found[fields[9]] = (fields[3], int(fields[1].rsplit(":", 1)[1], 16),
                                    int(fields[2].rsplit(":", 1)[1], 16))
    return found


def socket_inodes(pid: int) -> set:
    found = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def the_two_processes(pidfile: str) -> tuple:
    with open(pidfile) as f:
        monitor = int(f.read())
    children = wait_for(lambda: children_of(monitor), 10, "the network process")
    assert len(children) == 1, children
    return monitor, children[0]


def assert_unprivileged(network: int) -> None:
    status = status_of(network)
    print("network process %d: %s" % (network, {k: status.get(k) for k in (
        "Uid", "Gid", "Groups", "CapEff", "CapPrm", "NoNewPrivs")}))
    assert "0" not in status["Uid"] and "0" not in status["Gid"] and status["Groups"] == []
    assert status["CapEff"] == ["0000000000000000"] and status["CapPrm"] == ["0000000000000000"]
    assert status["NoNewPrivs"] == ["1"]


def steal_channel(pid: int) -> socket.socket:
    """The network process's end of the channel (``pidfd_getfd``: root may take a copy of any descriptor)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                continue
            copy = libc.syscall(438, pidfd, int(name), 0)  # SYS_pidfd_getfd
            assert copy >= 0, os.strerror(ctypes.get_errno())
            sock = socket.socket(fileno=copy)
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_SEQPACKET:
                return sock
            sock.close()
    finally:
        os.close(pidfd)
    raise AssertionError("no channel among the network process's descriptors")


def hostile_requests(monitor: int, network: int, busid: str) -> None:
    """Requests the monitor must refuse, sent on the network process's channel while it is stopped."""
    channel = steal_channel(network)
    listener = socket.create_server(("127.0.0.1", 0))
    read_end, write_end = os.pipe()
    requests = [
        (b"EXPORT ../../../sys/bus/usb/drivers/usbip-host/unbind", [listener.fileno()]),
        (b"EXPORT " + busid.encode(), [read_end]),
        (b"EXPORT " + busid.encode(), [listener.fileno()]),
        (b"EXPORT " + busid.encode(), []),
        (b"EXPORT usbip-vudc.0", [listener.fileno()]),  # device mode is not served
        (b"UNBIND " + busid.encode(), []),
        (b"X" * 1000, [read_end, write_end]),
    ]
    os.kill(network, signal.SIGSTOP)
    try:
        channel.settimeout(5)
        for message, fds in requests:
            channel.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])
            reply = channel.recv(512)
            print("%r -> %r" % (message[:60], reply))
            assert reply.startswith(b"ERR invalid "), reply
        channel.send(b"RULES")
        assert channel.recv(512) == b"OK"
    finally:
        os.kill(network, signal.SIGCONT)
        channel.close()
        listener.close()
        os.close(read_end)
        os.close(write_end)
    assert read("/sys/bus/usb/devices/%s/usbip_status" % busid) == "1"  # nothing exported or unbound


def imported(busid: str):
    found = [p for p in VhciDriver(Sysfs()).imported() if p.remote_busid == busid]
    return found[0] if found else None


def test_c_tools_through_an_unprivileged_network_process(kernel, gadgets, backing_file, daemons):
    disk = backing_file("privsep", seed=96)
    gadgets("privsep", "dummy_udc.0", 0x1209, 0x0096, "PRIVSEP-96", "mass_storage", disk)
    busid = find_usb_device(0x1209, 0x0096, serial="PRIVSEP-96")
    original_driver = os.path.basename(os.readlink("/sys/bus/usb/devices/%s/driver" % busid))
    sh(*OURS, "bind", "-b", busid)
    monitor, network = the_two_processes(daemons(*OUR_DAEMON, port=PORT))
    assert status_of(monitor)["Uid"][0] == "0"
    assert_unprivileged(network)
    tcp = tcp_sockets()
    listeners = {inode for inode, (state, port, _remote) in tcp.items() if state == "0A" and port == PORT}
    assert listeners and listeners <= socket_inodes(network)
    assert socket_inodes(monitor) & set(tcp) == set()

    listing = sh(*C, "--tcp-port", str(PORT), "list", "-r", "127.0.0.1").stdout
    assert "%s:" % busid in listing, listing

    hostile_requests(monitor, network, busid)  # after a request: the network process's channel is idle
    sh(*C, "--tcp-port", str(PORT), "attach", "-r", "127.0.0.1", "-b", busid)
    port = wait_for(lambda: imported(busid), 30, "%s on a vhci port" % busid)
    try:
        assert read_disk(block_device_of(port.local_busid), len(disk.data)) == disk.data
        # The server's end of the connection is the kernel's alone: in no process's descriptor table.
        tcp = tcp_sockets()
        served = {inode for inode, (state, local, _remote) in tcp.items() if state == "01" and local == PORT}
        print("server side of the attachment: %s" % served)
        assert served and served & (socket_inodes(monitor) | socket_inodes(network)) == set()
        assert socket_inodes(monitor) & set(tcp) == set()
        assert children_of(monitor) == [network]
    finally:
        sh(*C, "detach", "-p", str(port.port))
    wait_for(lambda: imported(busid) is None, 20, "the port to be free")
    wait_for(lambda: read("/sys/bus/usb/devices/%s/usbip_status" % busid) == "1", 20,
             "the device to be available again")
    sh(*OURS, "unbind", "-b", busid)
    wait_for(lambda: os.path.basename(os.readlink("/sys/bus/usb/devices/%s/driver" % busid)) == original_driver,
             20, "the original driver to be back")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return pki.make_pki(str(tmp_path_factory.mktemp("pki")))


def test_an_import_inside_tls_through_the_unprivileged_process(kernel, gadgets, certs, tmp_path):
    sh("modprobe", "tls")
    gadgets("privseptls", "usbip-vudc.5", 0x1209, 0x0097, "PRIVSEP-TLS", "acm")
    for path in (certs["server-key"], certs["ca"]):
        os.chmod(path, 0o600)  # root's alone: only the monitor can read them
    log_path = str(tmp_path / "usbipd.log")
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [*OUR_DAEMON, "--device", "--debug", "--tcp-port", str(TLS_PLAIN_PORT), "--tls-port", str(TLS_PORT),
             "--tls-cert", certs["server"], "--tls-key", certs["server-key"], "--tls-ca", certs["ca"]],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: listening(TLS_PORT), 60, "usbipd listening on the TLS port")
        network = wait_for(lambda: children_of(daemon.pid), 10, "the network process")[0]
        assert_unprivileged(network)
        client = (*OURS, "--tls-ca", certs["ca"], "--tls-cert", certs["client1"], "--tls-key",
                  certs["client1-key"], "-t", str(TLS_PORT))
        sh(*client, "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.5", timeout=60)
        port = wait_for(lambda: imported("usbip-vudc.5"), 30, "usbip-vudc.5 on a vhci port")
        assert read("/sys/devices/platform/usbip-vudc.5/usbip_status") == "2"
        Sysfs().write(VHCI + "/detach", str(port.port))
        wait_for(lambda: imported("usbip-vudc.5") is None, 30, "usbip-vudc.5 detached")
        assert daemon.poll() is None and children_of(daemon.pid) == [network]
    finally:
        daemon.terminate()
        assert daemon.wait(10) == 0
        with open(log_path) as f:
            text = f.read()
        print(text)
    assert "Traceback" not in text and "exported usbip-vudc.5" in text
