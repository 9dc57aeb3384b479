"""In-guest set-up for the benchmarks: kernel, gadgets, daemons, clients, uevents.

The kernel modules, gadgets, backing files and waits come from the lab's guest kit
(:mod:`lab.guestkit`), which the integration suite's fixtures wrap too, so the
benchmarks see the same virtual devices as the tests. Importing the kit puts this
checkout's stack on ``sys.path`` and ``PYTHONPATH`` (our commands run as
``python -m usbip.cli.<tool>``). Everything here runs as root inside a lab guest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from lab import guestkit
from lab.guestkit import REPO, GadgetMaker, block_device_of, listening, sh, wait_for
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.vhci import VhciDriver

__all__ = ["REPO", "block_device_of", "listening", "sh", "wait_for"]

WORK = "/tmp/bench"
#: Debian's interpreter: what a packaged install of the console scripts runs on.
SYSTEM_PYTHON = "/usr/bin/python3"
#: The project venv's interpreter (has pyudev): runs our daemon and the bench itself.
VENV_PYTHON = sys.executable
#: Client-side drivers: without udevd in the guest nothing loads them on demand.
CLIENT_DRIVERS = ["cdc_acm"]
VUDC = "/sys/devices/platform/usbip-vudc.%d"
SYSFS = Sysfs()


# -- kernel ---------------------------------------------------------------------------
def load_kernel(vudc: int) -> None:
    guestkit.load_kernel(vudc, extra=CLIENT_DRIVERS)
    # Short-lived DEVLIST connections by the ten thousand: widen the ephemeral range.
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("10000 65000")
    with open("/proc/sys/net/ipv4/tcp_tw_reuse", "w") as f:
        f.write("1")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8192), max(hard, 8192)))


def reload_vudc(instances: int) -> None:
    """``usbip-vudc num=instances``; every gadget must be gone first."""
    gadgets.remove_all()
    wait_for(lambda: subprocess.run(["modprobe", "-r", "usbip-vudc"], capture_output=True).returncode == 0,
             30, "usbip-vudc to unload")
    sh("modprobe", "usbip-vudc", "num=%d" % instances)


def vudc_available(index: int) -> bool:
    with contextlib.suppress(OSError):
        with open((VUDC % index) + "/usbip_status") as f:
            return f.read().strip() == "1"
    return False


# -- gadgets (made as the integration suite's are) -------------------------------------------
#: Every gadget of the current phase; ``gadgets.remove_all()`` ends the phase.
gadgets = GadgetMaker(SYSFS, label="bench")


def backing_file(name: str, size: int, seed: int = 1) -> str:
    os.makedirs(WORK, exist_ok=True)
    return guestkit.write_backing(os.path.join(WORK, name + ".img"), size, seed).path


# -- commands ---------------------------------------------------------------------------
def console_script(tool: str, python: str = SYSTEM_PYTHON) -> str:
    """The ``usbip``/``usbipd`` entry point exactly as pip writes it, on ``python``."""
    os.makedirs(os.path.join(WORK, "bin"), exist_ok=True)
    path = os.path.join(WORK, "bin", "%s-%s" % (tool, os.path.basename(python)))
    with open(path, "w") as f:
        f.write("#!%s\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom usbip.cli.%s import main\n"
                "if __name__ == \"__main__\":\n"
                "    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n"
                "    sys.exit(main())\n" % (python, tool))
    os.chmod(path, 0o755)
    return path


def attach_argv(tool: str, port: int, busid: str) -> List[str]:
    return [tool, "--tcp-port", str(port), "attach", "-r", "127.0.0.1", "-b", busid]


class Daemon:
    """A daemon in the foreground (so its pid is the server's), stopped by :meth:`stop`."""

    def __init__(self, name: str, argv: Sequence[str], port: int) -> None:
        self.name = name
        self.port = port
        self.log = open(os.path.join(WORK, "%s-%d.log" % (name, port)), "w")
        self.proc = subprocess.Popen(list(argv) + ["--tcp-port", str(port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: listening(port) or self.proc.poll() is not None, 30, "%s listening on %d" % (name, port))
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited with %s (see %s)" % (name, self.proc.returncode, self.log.name))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@contextlib.contextmanager
def stopping(*servers) -> Iterator[None]:
    """Run the block, then stop each of ``servers`` (daemons, tunnels) in order, whatever happened in it."""
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def our_daemon(port: int, device: bool, config: Optional[dict] = None, debug: bool = False) -> Daemon:
    argv = [VENV_PYTHON, "-m", "usbip.cli.usbipd", "-4"] + (["--device"] if device else []) + \
        (["--debug"] if debug else [])
    if config:
        path = os.path.join(WORK, "usbipd-%d.json" % port)
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        argv += ["--config", path]
    return Daemon("ours", argv, port)


class SshTunnel:
    """OpenSSH on loopback: sshd on its own port and ``ssh -N -L local_port:127.0.0.1:remote_port``."""

    def __init__(self, local_port: int, remote_port: int, sshd_port: int = 2222) -> None:
        home = os.path.join(WORK, "ssh")
        os.makedirs(home, exist_ok=True)
        self.key = os.path.join(home, "id_ed25519")
        host_key = os.path.join(home, "host_ed25519")
        for path in (self.key, host_key):
            if not os.path.exists(path):
                sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path)
        authorized = os.path.join(home, "authorized_keys")
        shutil.copy(self.key + ".pub", authorized)
        os.chmod(authorized, 0o600)
        config = os.path.join(home, "sshd_config")
        with open(config, "w") as f:
            f.write("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin yes\n"
                    "PasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile %s/sshd.pid\n"
                    % (sshd_port, host_key, authorized, home))
        os.makedirs("/run/sshd", exist_ok=True)
        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(home, "sshd.log"), "w"))
        wait_for(lambda: listening(sshd_port), 30, "sshd listening")
        self.ssh = subprocess.Popen(
            ["ssh", "-N", "-i", self.key, "-p", str(sshd_port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
             "-L", "127.0.0.1:%d:127.0.0.1:%d" % (local_port, remote_port), "root@127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: listening(local_port) or self.ssh.poll() is not None, 60, "the ssh port forward")
        if self.ssh.poll() is not None:
            raise RuntimeError("ssh -L exited with %s" % self.ssh.returncode)
        self.version = run(["ssh", "-V"])["out"].strip()

    def stop(self) -> None:
        for proc in (self.ssh, self.sshd):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def c_daemon(port: int, device: bool) -> Daemon:
    return Daemon("c", ["usbipd", "-4"] + (["-e"] if device else []), port)


def run(argv: Sequence[str], timeout: float = 60, env: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Run a command quietly; its status, output and wall time."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc, out = None, "timed out after %.0f s: %s" % (timeout, err.stdout or "")
    return {"rc": rc, "out": out, "elapsed": time.monotonic() - t0}


# -- client side state --------------------------------------------------------------------
def vhci() -> VhciDriver:
    return VhciDriver(SYSFS)


def used_ports() -> List[int]:
    return [p.port for p in vhci().ports() if not p.free]


def imported_as(remote_busid: str) -> Optional[str]:
    """The local busid of the device imported from ``remote_busid``, once the vhci port shows one."""
    for port in used_ports():
        record = vhci().read_record(port)
        row = vhci().ports()[port]
        if record and record.busid == remote_busid and row.local_busid not in ("0-0", ""):
            return row.local_busid
    return None


def detach_all(timeout: float = 60) -> None:
    """Free every vhci port (in-process, not timed) and wait until they are free."""
    deadline = time.monotonic() + timeout
    while used_ports() and time.monotonic() < deadline:
        for port in used_ports():
            with contextlib.suppress(Exception):
                vhci().detach(port)
        time.sleep(0.1)
    wait_for(lambda: not used_ports(), max(1.0, deadline - time.monotonic()), "every vhci port free")


def settle(vudcs: Iterable[int] = (), timeout: float = 60, pause: float = 0.5) -> None:
    """Back to the idle state between measurements: ports free, exported devices available."""
    detach_all(timeout)
    for n in vudcs:
        wait_for(lambda n=n: vudc_available(n), timeout, "usbip-vudc.%d available again" % n)
    time.sleep(pause)


# -- kernel uevents -------------------------------------------------------------------------
NETLINK_KOBJECT_UEVENT = 15  # not exported by the socket module
SO_RCVBUFFORCE = 33
_BUSID = re.compile(r"/vhci_hcd\.\d+/usb\d+/(\d+-[\d.]+)(?:/|$)")


class Uevents:
    """The kernel's uevent netlink group: enumeration is timed by events, not by polling."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        self.sock.bind((0, 1))

    def drain(self) -> None:
        while select.select([self.sock], [], [], 0)[0]:
            self.sock.recv(65536)

    def next(self, timeout: float) -> Optional[Dict[str, str]]:
        if not select.select([self.sock], [], [], max(0.0, timeout))[0]:
            return None
        fields = self.sock.recv(65536).split(b"\0")
        event = {"HEAD": fields[0].decode("utf-8", "replace")}
        for field in fields[1:]:
            key, _, value = field.decode("utf-8", "replace").partition("=")
            event[key] = value
        return event

    def close(self) -> None:
        self.sock.close()


def enumerated(busid: str) -> bool:
    """The device and every interface of its configuration have a driver bound."""
    base = "/sys/bus/usb/devices/" + busid
    try:
        if not os.path.exists(base + "/driver"):
            return False
        with open(base + "/bNumInterfaces") as f:
            count = int(f.read().strip() or "0")
        interfaces = [n for n in os.listdir(base) if n.startswith(busid + ":")]
    except (OSError, ValueError):
        return False
    bound = sum(os.path.exists(os.path.join(base, n, "driver")) for n in interfaces)
    return count > 0 and len(interfaces) == count and bound == count


def timed_attach(argv: Sequence[str], events: Uevents, timeout: float = 30,
                 env: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Run one attach command: time to its exit and to the device enumerated with drivers.

    The clock starts just before the process is spawned and stops at the
    uevent after which the imported device and all its interfaces have a driver.
    """
    events.drain()
    t0 = time.monotonic()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    exited = enum = None
    busid = None
    deadline = t0 + timeout
    while time.monotonic() < deadline and (enum is None or exited is None):
        if exited is None and proc.poll() is not None:
            exited = time.monotonic() - t0
        event = events.next(0.02 if exited is None else deadline - time.monotonic())
        if event is None or enum is not None:
            continue
        match = _BUSID.search(event.get("DEVPATH", ""))
        if match:
            busid = busid or match.group(1)
            if enumerated(busid):
                enum = time.monotonic() - t0
    if proc.poll() is None:
        proc.kill()
    out = proc.communicate()[0].decode("utf-8", "replace")
    return {"rc": proc.returncode, "exit": exited, "enumerated": enum, "busid": busid, "out": out[-500:]}


# -- processes ------------------------------------------------------------------------------
def memory(pid: int) -> Dict[str, int]:
    """RSS and PSS of one process, in KiB."""
    found = {"rss": 0, "pss": 0}
    with contextlib.suppress(OSError):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    found["rss"] = int(line.split()[1])
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    found["pss"] = int(line.split()[1])
    return found


def where(pid: int) -> str:
    """Process state and kernel wait channel, e.g. ``R -`` (spinning) or ``D vhci_...`` (blocked)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open("/proc/%d/wchan" % pid) as f:
            wchan = f.read().strip() or "-"
    except OSError:
        return "gone"
    return "%s %s" % (state, wchan if wchan != "0" else "-")


def fds(pid: int) -> int:
    """Open descriptors of a process."""
    return len(os.listdir("/proc/%d/fd" % pid))


def children(pid: int) -> List[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(name))
    return found


# -- statistics -------------------------------------------------------------------------------
def median(values: Sequence[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values: Sequence[Optional[float]]) -> Optional[List[float]]:
    values = [v for v in values if v is not None]
    return [min(values), max(values)] if values else None


def clean_work() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
