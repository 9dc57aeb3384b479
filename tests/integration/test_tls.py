"""USB/IP inside TLS 1.3 with the record layer in the kernel, on the real kernel.

One mass-storage gadget is exported by our usbipd on a TLS port and attached by
our client over TLS: the handshake and the import run in userspace, then both
sockets get their keys through ``setsockopt(SOL_TLS)`` and go to usbip-vudc and
vhci-hcd. What is asserted:

* the attached disk reads back its backing file exactly, and the kernel counts
  the sockets as kTLS ones (``/proc/net/tls_stat``);
* a capture of the TLS port on loopback (tcpdump) holds none of the file's
  bytes, while the same capture of a plain attachment does (the control: the
  capture sees plaintext when there is plaintext);
* a client whose certificate another CA signed, and one the CA signed but the
  allow-list does not name, are refused before any device is exported (the
  server's device stays available, the daemon logs why);
* detaching returns everything to the start: port free, device available.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from lab import pki
from lab.guestkit import block_device_of, listening, ours, read_disk, sh, wait_for
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.vhci import VHCI, VhciDriver

USBIP = ours("usbip")
USBIPD = ours("usbipd")
PLAIN_PORT, TLS_PORT = 3290, 3291
SECRET_SIZE = 2 << 20


def vudc_status(n: int) -> str:
    with open("/sys/devices/platform/usbip-vudc.%d/usbip_status" % n) as f:
        return f.read().strip()


def imported(busid: str):
    found = [p for p in VhciDriver(Sysfs()).imported() if p.remote_busid == busid]
    return found[0] if found else None


def tls_stat() -> dict:
    with open("/proc/net/tls_stat") as f:
        return {name: int(value) for name, value in (line.split() for line in f if line.strip())}


def tls_client(certs: dict, who: str) -> tuple:
    return (*USBIP, "--tls-ca", certs["ca"], "--tls-cert", certs[who], "--tls-key", certs[who + "-key"],
            "-t", str(TLS_PORT))


class Capture:
    """tcpdump of one TCP port on loopback, whole packets, into a file."""

    def __init__(self, path: str, port: int) -> None:
        self.path = path
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "0", "-U", "-w", path, "tcp port %d" % port],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 15, "tcpdump to start")

    def stop(self) -> bytes:
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        err = self.proc.communicate(timeout=15)[1].decode(errors="replace")
        print("tcpdump: %s" % err.strip())
        with open(self.path, "rb") as f:
            return f.read()


def leaked(capture: bytes, data: bytes, probe: int = 48) -> int:
    """How many of the data's 4 KiB blocks show up (their first ``probe`` bytes) in the capture."""
    return sum(1 for offset in range(0, len(data), 4096) if data[offset:offset + probe] in capture)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return pki.make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def tls_daemon(certs, tmp_path):
    """Our usbipd in device mode, plain USB/IP on one port and TLS on the next, in the foreground
    with its log kept (``-D`` would send it to syslog, which the guest does not run)."""
    started = []

    def start(plain_port: int, *extra: str) -> str:
        log = str(tmp_path / ("usbipd-%d.log" % plain_port))
        argv = [*USBIPD, "--device", "--debug", "--tcp-port", str(plain_port), "--tls-cert", certs["server"],
                "--tls-key", certs["server-key"], "--tls-ca", certs["ca"], "--tls-port", str(plain_port + 1), *extra]
        with open(log, "w") as f:
            started.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT))
        wait_for(lambda: listening(plain_port) and listening(plain_port + 1), 60, "usbipd listening")
        return log

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)
    for log in sorted(tmp_path.glob("usbipd-*.log")):
        print("--- %s\n%s" % (log.name, log.read_text()))


def test_a_disk_attached_over_kernel_tls(kernel, gadgets, backing_file, tls_daemon, certs, tmp_path):
    sh("modprobe", "tls")
    secret = backing_file("secret", size=SECRET_SIZE, seed=81)
    plain = backing_file("plain", size=SECRET_SIZE, seed=82)
    gadgets("tlsdisk", "usbip-vudc.6", 0x1209, 0x0281, "TLS-DISK", "mass_storage", secret)
    gadgets("plaindisk", "usbip-vudc.7", 0x1209, 0x0282, "PLAIN-DISK", "mass_storage", plain)
    log = tls_daemon(PLAIN_PORT, "--tls-allow-name", "client1")
    before = tls_stat()

    # -- refused clients: nothing exported, a log line each --------------------------------
    for who in ("rogue", "client2"):
        result = sh(*tls_client(certs, who), "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.6", check=False)
        assert result.returncode == 1, result
        assert vudc_status(6) == "1" and imported("usbip-vudc.6") is None
    with open(log) as f:
        refusals = [line for line in f if "refused" in line]
    print("".join(refusals))
    assert len(refusals) == 2
    assert any("not an allowed client name" in line for line in refusals)

    # -- list and attach over TLS, with the traffic captured ---------------------------------
    listing = sh(*tls_client(certs, "client1"), "list", "-r", "127.0.0.1", "--json").stdout
    assert "usbip-vudc.6" in listing and "usbip-vudc.7" in listing
    capture = Capture(str(tmp_path / "tls.pcap"), TLS_PORT)
    sh(*tls_client(certs, "client1"), "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.6", timeout=60)
    port = wait_for(lambda: imported("usbip-vudc.6"), 30, "usbip-vudc.6 on a vhci port")
    assert vudc_status(6) == "2"
    during = tls_stat()
    print("tls_stat before %s, attached %s" % (before, during))
    # both ends of the connection: the server's socket (usbip-vudc) and the client's (vhci)
    assert during["TlsCurrTxSw"] - before.get("TlsCurrTxSw", 0) == 2
    assert during["TlsCurrRxSw"] - before.get("TlsCurrRxSw", 0) == 2
    started = time.monotonic()
    data = read_disk(block_device_of(port.local_busid), SECRET_SIZE)
    took = time.monotonic() - started
    print("read %d bytes over kTLS in %.1f s" % (len(data), took))
    assert data == secret.data, "the disk read over TLS must equal its backing file"
    encrypted = capture.stop()
    print("TLS capture: %d bytes" % len(encrypted))
    assert len(encrypted) > SECRET_SIZE  # the whole disk crossed this connection...
    assert leaked(encrypted, secret.data) == 0  # ...and none of it in the clear

    # -- the control: the same capture on a plain attachment sees the plaintext -------------------
    capture = Capture(str(tmp_path / "plain.pcap"), PLAIN_PORT)
    sh(*USBIP, "-t", str(PLAIN_PORT), "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.7")
    plain_port = wait_for(lambda: imported("usbip-vudc.7"), 30, "usbip-vudc.7 on a vhci port")
    assert read_disk(block_device_of(plain_port.local_busid), SECRET_SIZE) == plain.data
    cleartext = capture.stop()
    blocks = len(plain.data) // 4096
    found = leaked(cleartext, plain.data)
    print("plain capture: %d bytes, %d of %d blocks visible" % (len(cleartext), found, blocks))
    assert found > blocks // 2

    # -- detach: everything back where it started -------------------------------------------
    for p in (port, plain_port):
        Sysfs().write(VHCI + "/detach", str(p.port))
    wait_for(lambda: imported("usbip-vudc.6") is None and imported("usbip-vudc.7") is None, 30, "both detached")
    wait_for(lambda: vudc_status(6) == "1" and vudc_status(7) == "1", 30, "both devices available again")
    after = tls_stat()
    assert after["TlsCurrTxSw"] == before.get("TlsCurrTxSw", 0)


def test_a_plain_client_on_the_tls_port_gets_nothing(kernel, gadgets, tls_daemon, certs):
    gadgets("tlsacm", "usbip-vudc.6", 0x1209, 0x0283, "TLS-ACM", "acm")
    tls_daemon(PLAIN_PORT + 2)
    result = sh(*USBIP, "-t", str(TLS_PORT + 2), "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.6", check=False)
    assert result.returncode == 1
    assert vudc_status(6) == "1"
    # and the TLS client talking to the plain port fails its handshake instead of leaking anything
    result = sh(*tls_client(certs, "client1")[:-2], "-t", str(PLAIN_PORT + 2), "list", "-r", "127.0.0.1",
                check=False)
    assert result.returncode == 1


#: <linux/tls.h>: the cmsg that sends one record of another content type through kernel TLS.
TLS_SET_RECORD_TYPE = 1
#: A TLS 1.3 KeyUpdate handshake message (type 24, length 1, update_not_requested).
KEY_UPDATE = b"\x18\x00\x00\x01\x00"


def test_a_key_update_after_the_hand_over_ends_the_attachment_cleanly(kernel, gadgets, tls_daemon, certs):
    """Kernel TLS cannot follow a peer that rotates its keys: the attachment ends, the device is free again.

    The client imports over TLS with our client library, so that the test holds the
    connection's socket (with its kernel keys) instead of vhci; it then sends a
    KeyUpdate record through its own kernel TLS. The server's receive path sees a
    handshake record where it can only take application data and fails the
    connection: the export ends, usbip-vudc offers the device again, and a new
    import over TLS works. The daemon, which handed the socket over long before,
    keeps serving.
    """
    from usbip.net import client
    from usbip.net.tls import SOL_TLS, TlsConfig, TlsEndpoint

    sh("modprobe", "tls")
    gadgets("tlskeys", "usbip-vudc.6", 0x1209, 0x0284, "TLS-KEYS", "acm")
    log = tls_daemon(PLAIN_PORT + 4)
    tls_port = PLAIN_PORT + 5
    endpoint = TlsEndpoint(TlsConfig(cert=certs["client1"], key=certs["client1-key"], ca=certs["ca"]),
                           server_side=False)
    sock, device = client.import_device("127.0.0.1", tls_port, "usbip-vudc.6", tls=endpoint)
    try:
        assert device.busid == "usbip-vudc.6"
        wait_for(lambda: vudc_status(6) == "2", 15, "usbip-vudc.6 in use")
        dmesg_before = sh("dmesg").stdout.count("\n")
        sock.sendmsg([KEY_UPDATE], [(SOL_TLS, TLS_SET_RECORD_TYPE, bytes([22]))])
        sent = time.monotonic()
        wait_for(lambda: vudc_status(6) == "1", 30, "usbip-vudc.6 available again after the KeyUpdate")
        print("device free %.2f s after the KeyUpdate" % (time.monotonic() - sent))
        print("kernel: %s" % "".join(sh("dmesg").stdout.splitlines(True)[dmesg_before:]).strip())
    finally:
        sock.close()
        endpoint.close()
    # the daemon still serves, and the device can be imported again over TLS
    sh(*tls_client(certs, "client1")[:-2], "-t", str(tls_port), "attach", "-r", "127.0.0.1", "-d", "usbip-vudc.6",
       timeout=60)
    port = wait_for(lambda: imported("usbip-vudc.6"), 30, "usbip-vudc.6 on a vhci port again")
    Sysfs().write(VHCI + "/detach", str(port.port))
    wait_for(lambda: vudc_status(6) == "1", 30, "usbip-vudc.6 available after the detach")
    with open(log) as f:
        assert "Traceback" not in f.read()
