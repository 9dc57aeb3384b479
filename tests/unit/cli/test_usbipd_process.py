# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbipd's two processes, live: ``python -m usbip.cli.usbipd`` on a fake sysfs tree and 127.0.0.1.

What is checked, on the processes the kernel shows:

* DEVLIST and IMPORT are served by the network process; the export itself
  is written by the monitor (the network process's account could not write
  the root-owned ``usbip_sockfd``);
* started as root, the network process runs with a uid other than 0, no
  capability and no_new_privs, and the monitor holds no TCP socket;
* systemd hears ``READY=1`` only once a client can connect, ``RELOADING=1``
  and ``READY=1`` again around a SIGHUP;
* SIGHUP with a broken configuration keeps the running network process; with
  a new allow-list a new network process applies it; a network process killed
  with SIGKILL makes the monitor exit with a failure status; SIGTERM stops both
  with status 0; ``-D`` returns once the daemon serves, or fails with its error;
* the monitor, fed hostile messages on the network process's own channel
  end (taken with ``pidfd_getfd`` while that process is stopped), refuses
  each one and keeps serving.

The fake tree lives in a directory every account may read (pytest's own
temporary directories are private to root): started as root, the network
process drops to ``nobody`` (``usbip`` if it exists) and must read sysfs.
A tree it cannot read is refused at start, with one line.
"""

from __future__ import annotations

import array
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import pytest
from fake_usb import standard_tree

from tests.fuzz import MODULE_UTILS
from usbip.errors import UsbipError
from usbip.net import client
from usbip.net.client import ImportRefused
from usbip.protocol import DevlistRequest

ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not ROOT, reason="the privilege drop happens only when started as root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def shared_dir():
    """A directory every account can read (the network process is ``nobody`` when the tests run as root)."""
    path = tempfile.mkdtemp(prefix="usbipd-process-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


class Notifications:
    """A stand-in for systemd's notification socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.received: List[str] = []

    def wait_for(self, assignment: str, timeout: float = 20) -> List[str]:
        """Messages until one holds ``assignment``; fails at the bound."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                raise AssertionError("no %s in %s s; got %s" % (assignment, timeout, seen)) from None
            self.received.append(message)
            seen.append(message)
            if assignment in message.split("\n"):
                return seen

    def close(self) -> None:
        self.sock.close()


class Usbipd:
    """``python -m usbip.cli.usbipd`` on a fake tree, its log in a file and its notifications in a socket."""

    def __init__(self, directory: Path, config: str = "", *extra: str, tree_root: Optional[Path] = None,
                 wait: bool = True, env: Optional[dict] = None) -> None:
        self.directory = directory
        self.tree = standard_tree(tree_root or directory / "root")
        self.tree.kernel_host_bind("17-1")
        self.config = directory / "usbipd.yml"
        self.config.write_text(config)
        self.port = free_port()
        self.log_path = directory / "usbipd.log"
        self.notify = Notifications(directory / "notify")
        self.env = dict(os.environ, USBIP_SYSFS_ROOT=str(self.tree.root), NOTIFY_SOCKET=self.notify.path,
                        PYTHONPATH=os.pathsep.join(filter(None, [MODULE_UTILS, os.environ.get("PYTHONPATH")])))
        self.env.update(env or {})
        self.argv = [sys.executable, "-m", "usbip.cli.usbipd", "-d", "-t", str(self.port), "-l", "127.0.0.1",
                     "-c", str(self.config), *extra]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.notify.wait_for("READY=1")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logged(self, text: str, timeout: float = 10) -> str:
        """The log once it holds ``text`` (both processes write their lines from a thread, a little later)."""
        return wait_until(lambda: text in self.log() and self.log(), timeout, "%r in the log" % text)

    def network_pid(self, monitor: Optional[int] = None) -> int:
        children = children_of(monitor or self.proc.pid)
        assert len(children) == 1, (children, self.log())
        return children[0]

    def devlist(self, source: str = "127.0.0.1") -> List[str]:
        return devlist(self.port, source)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.notify.close()
        return self.proc.returncode


def devlist(port: int, source: str = "127.0.0.1") -> List[str]:
    """Busids of a DEVLIST from ``source``; raises OSError/ValueError if the server hangs up unanswered."""
    if source == "127.0.0.1":
        return [d.busid for d in client.list_devices("127.0.0.1", port, timeout=5)]
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(DevlistRequest().encode())
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    if len(reply) < 12:
        raise ConnectionResetError("no DEVLIST reply (%d bytes)" % len(reply))
    return [reply[12 + 256 + n * 316:12 + 288 + n * 316].rstrip(b"\0").decode()
            for n in range(int.from_bytes(reply[8:12], "big"))]


def children_of(pid: int) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is alive: not gone and not a zombie (its reaper may be slow: it is init's child)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def status_of(pid: int) -> dict:
    with open("/proc/%d/status" % pid) as f:
        return {key: value.split() for key, _sep, value in (line.partition(":") for line in f)}


def tcp_inodes(listening_only: bool = False) -> set:
    """Inodes of the TCP sockets the kernel knows (all states, or LISTEN only)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if not listening_only or fields[3] == "0A":
                        found.add(fields[9])
        except OSError:
            continue
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


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


@pytest.fixture
def daemons(shared_dir):
    started: List[Usbipd] = []

    def start(config: str = "", *extra: str, **kw) -> Usbipd:
        directory = shared_dir / str(len(started))
        directory.mkdir()
        os.chmod(directory, 0o755)
        started.append(Usbipd(directory, config, *extra, **kw))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()
        print("--- usbipd log\n" + daemon.log())


# -- serving through the channel ----------------------------------------------------------------
def test_devlist_and_import_are_served_and_the_monitor_writes_the_export(daemons):
    daemon = daemons()
    monitor, network = daemon.proc.pid, daemon.network_pid()
    assert daemon.devlist() == ["17-1"]
    sockfd = daemon.tree.host_path("/sys/bus/usb/devices/17-1/usbip_sockfd")
    sock, device = client.import_device("127.0.0.1", daemon.port, "17-1", timeout=5)
    sock.close()
    assert device.busid == "17-1"
    written = sockfd.read_text()
    assert written.isdigit() and int(written) > 2  # a descriptor number of the writing process
    with pytest.raises(ImportRefused, match="Device not found"):  # device mode is not served
        client.import_device("127.0.0.1", daemon.port, "usbip-vudc.0", timeout=5)
    if ROOT:
        # Only the monitor can write the root-owned attribute: the network process is not root.
        assert sockfd.stat().st_uid == 0 and sockfd.stat().st_mode & 0o022 == 0
        assert status_of(network)["Uid"][0] != "0"
    assert children_of(monitor) == [network]
    assert daemon.stop() == 0
    assert not os.path.exists("/proc/%d" % network)
    assert "exported 17-1 to 127.0.0.1" in daemon.log() and "Traceback" not in daemon.log()


@as_root
def test_the_network_process_holds_no_privilege_and_the_monitor_no_tcp_socket(daemons):
    daemon = daemons()
    monitor, network = daemon.proc.pid, daemon.network_pid()
    status = status_of(network)
    shown = ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "NoNewPrivs")
    print("network process: %s" % {key: status[key] for key in shown})
    assert "0" not in status["Uid"] and "0" not in status["Gid"] and status["Groups"] == []
    assert status["CapEff"] == ["0000000000000000"] and status["CapPrm"] == ["0000000000000000"]
    assert status["NoNewPrivs"] == ["1"]
    assert status_of(monitor)["Uid"][0] == "0"
    # The listening sockets are the network process's; the monitor has no TCP socket at all,
    # not even after an export (it closes the one it was handed once the kernel has it).
    assert socket_inodes(network) & tcp_inodes(listening_only=True)
    sock, _device = client.import_device("127.0.0.1", daemon.port, "17-1", timeout=5)
    sock.close()
    assert socket_inodes(monitor) & tcp_inodes() == set()


def test_ready_is_told_once_a_client_can_connect(daemons):
    daemon = daemons()
    ready = [m for m in daemon.notify.received if "READY=1" in m.split("\n")]
    assert len(ready) == 1 and "STATUS=serving host-mode devices; network process %d" % daemon.network_pid() \
        in ready[0]
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=2):
        pass


def test_devlist_inside_tls_with_material_only_the_monitor_could_read(daemons, tmp_path):
    from lab import pki
    from usbip.net.tls import TlsConfig, TlsEndpoint

    certs = pki.make_pki(str(tmp_path / "pki"))  # pytest's directory: root's alone when run as root
    tls_port = free_port()
    daemon = daemons("", "--tls-cert", certs["server"], "--tls-key", certs["server-key"], "--tls-ca", certs["ca"],
                     "--tls-port", str(tls_port), "--tls-only")
    endpoint = TlsEndpoint(TlsConfig(cert=certs["client1"], key=certs["client1-key"], ca=certs["ca"]),
                           server_side=False)
    try:
        for _attempt in range(3):  # more handshakes than one: the network process makes what it needs
            devices = client.list_devices("127.0.0.1", tls_port, timeout=5, tls=endpoint)
            assert [d.busid for d in devices] == ["17-1"]
    finally:
        endpoint.close()
    if ROOT:
        assert status_of(daemon.network_pid())["Uid"][0] != "0"
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log() and "error" not in daemon.log()


# -- lifecycle ----------------------------------------------------------------------------------
def test_sighup_with_a_broken_configuration_keeps_the_running_process(daemons):
    daemon = daemons("max_connections: 100\n")
    network = daemon.network_pid()
    daemon.config.write_text("max_connections: [not a number]\n")
    daemon.proc.send_signal(signal.SIGHUP)
    messages = daemon.notify.wait_for("READY=1")
    assert messages[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert daemon.network_pid() == network and daemon.devlist() == ["17-1"]
    refused = [line for line in daemon.logged("reload refused").splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "max_connections: expected" in refused[0], daemon.log()
    assert daemon.proc.poll() is None


def test_sighup_with_a_new_allow_list_starts_a_network_process_that_applies_it(daemons):
    daemon = daemons("")
    old = daemon.network_pid()
    assert daemon.devlist() == ["17-1"] and daemon.devlist("127.0.0.2") == ["17-1"]
    match_busid = daemon.tree.host_path("/sys/bus/usb/drivers/usbip-host/match_busid").read_text()
    daemon.config.write_text("allow: [127.0.0.2/32]\n")
    daemon.proc.send_signal(signal.SIGHUP)
    messages = daemon.notify.wait_for("READY=1")
    assert messages[0].startswith("RELOADING=1")
    new = daemon.network_pid()
    assert new != old and not os.path.exists("/proc/%d" % old)
    assert daemon.devlist("127.0.0.2") == ["17-1"]
    with pytest.raises(UsbipError, match="connection to the server failed"):
        daemon.devlist("127.0.0.1")
    assert daemon.logged("not in the allowed client networks")
    # What the kernel holds is not touched by a reload.
    assert daemon.tree.host_path("/sys/bus/usb/drivers/usbip-host/match_busid").read_text() == match_busid


def test_a_network_process_killed_makes_the_monitor_fail(daemons):
    daemon = daemons()
    network = daemon.network_pid()
    os.kill(network, signal.SIGKILL)
    assert daemon.proc.wait(10) == 1
    assert "usbipd: error: the network process %d killed by signal SIGKILL; stopping" % network in daemon.log()


def test_sigterm_stops_both_with_status_0(daemons):
    daemon = daemons()
    network = daemon.network_pid()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert not os.path.exists("/proc/%d" % network)
    assert "STOPPING=1" in daemon.notify.wait_for("STOPPING=1")[-1]


def test_daemonize_returns_once_serving_and_the_pid_file_names_the_monitor(shared_dir):
    tree = standard_tree(shared_dir / "root")
    tree.kernel_host_bind("17-1")
    port, pid_file = free_port(), shared_dir / "usbipd.pid"
    env = dict(os.environ, USBIP_SYSFS_ROOT=str(tree.root),
               PYTHONPATH=os.pathsep.join(filter(None, [MODULE_UTILS, os.environ.get("PYTHONPATH")])))
    env.pop("NOTIFY_SOCKET", None)
    done = subprocess.run([sys.executable, "-m", "usbip.cli.usbipd", "-D", "-P", str(pid_file), "-t", str(port),
                           "-l", "127.0.0.1"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    monitor = int(pid_file.read_text())
    try:
        assert devlist(port) == ["17-1"]  # serving as soon as -D returned
        assert len(children_of(monitor)) == 1
    finally:
        os.kill(monitor, signal.SIGTERM)
    wait_until(lambda: not pid_file.exists() and not running(monitor), 10, "the monitor to end")


def test_daemonize_reports_a_start_error_of_the_network_process(shared_dir):
    tree = standard_tree(shared_dir / "root")
    env = dict(os.environ, USBIP_SYSFS_ROOT=str(tree.root),
               PYTHONPATH=os.pathsep.join(filter(None, [MODULE_UTILS, os.environ.get("PYTHONPATH")])))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "usbip.cli.usbipd", "-D", "-t", str(port), "-l", "127.0.0.1"],
                              env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "usbipd: error: cannot listen on 127.0.0.1 port %d: Address already in use" % port in done.stderr


# -- start errors of the privilege drop ----------------------------------------------------------
@as_root
def test_an_account_that_does_not_exist_is_one_line(daemons):
    daemon = daemons("user: no-such-account\n", wait=False)
    assert daemon.proc.wait(20) == 1
    assert daemon.log().strip().splitlines() == [
        "usbipd: error: user: no account no-such-account on this system"
        " (useradd --system --no-create-home no-such-account)"]


@as_root
def test_a_tree_the_account_cannot_read_is_refused_at_start(daemons, tmp_path):
    daemon = daemons("user: nobody\n", tree_root=tmp_path / "root", wait=False)  # pytest's 0700 directories
    assert daemon.proc.wait(20) == 1
    errors = [line for line in daemon.log().splitlines() if ": error: " in line]
    assert errors == ["usbipd: error: the network process (user nobody) cannot read %s/sys"
                      " (a sysfs tree other than /sys must be readable by that account)" % daemon.tree.root]


# -- hostile messages on the live channel ---------------------------------------------------------
def _steal(pid: int, fd: int) -> int:
    """A copy of another process's descriptor (``pidfd_getfd``, Linux 5.6; needs the right to ptrace it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        copy = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd, the same number on every architecture
        if copy < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return copy
    finally:
        os.close(pidfd)


def _channel_of(pid: int) -> socket.socket:
    for name in os.listdir("/proc/%d/fd" % pid):
        if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
            continue
        sock = socket.socket(fileno=_steal(pid, int(name)))
        if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_SEQPACKET:
            return sock
        sock.close()
    raise AssertionError("no channel among the network process's descriptors")


@as_root
def test_the_live_monitor_refuses_hostile_messages_and_keeps_serving(daemons):
    daemon = daemons()
    monitor, network = daemon.proc.pid, daemon.network_pid()
    assert daemon.devlist() == ["17-1"]  # the network process took READY's reply: its channel is idle
    try:
        channel = _channel_of(network)
    except (OSError, AttributeError) as err:
        pytest.skip("pidfd_getfd unavailable: %s" % err)
    listener = socket.create_server(("127.0.0.1", 0))
    read_end, write_end = os.pipe()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hostile = [
        (b"EXPORT ../../x", [listener.fileno()]),
        (b"EXPORT 17-1", [read_end]),
        (b"EXPORT 17-1", [udp.fileno()]),
        (b"EXPORT 17-1", [listener.fileno()]),
        (b"EXPORT 17-1", []),
        (b"EXPORT usbip-vudc.0", [listener.fileno()]),
        (b"UNBIND 17-1", []),
        (b"\xff" * 300, [read_end, write_end]),
        (b"RULES", [write_end]),
    ]
    os.kill(network, signal.SIGSTOP)  # the test speaks on its channel alone
    try:
        channel.settimeout(5)
        for message, fds in hostile:
            channel.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])
            reply = channel.recv(512)
            assert reply.startswith(b"ERR invalid "), (message, reply)
        channel.send(b"RULES")
        assert channel.recv(512) == b"OK"
        assert socket_inodes(monitor) & tcp_inodes() == set()
    finally:
        os.kill(network, signal.SIGCONT)
        for sock in (channel, listener, udp):
            sock.close()
        os.close(read_end)
        os.close(write_end)
    sock, _device = client.import_device("127.0.0.1", daemon.port, "17-1", timeout=5)
    sock.close()
    assert daemon.proc.poll() is None and daemon.network_pid() == network
    assert daemon.stop() == 0
    assert daemon.log().count("refused a request from the network process") == 5  # the rate limit's burst
    assert "more refused requests" not in daemon.log()


@as_root
def test_a_message_the_network_process_did_not_ask_for_breaks_the_channel_and_restarts_the_service(daemons):
    """Replies carry no sequence number: a stray one (as a late reply would be) is never taken as an answer."""
    daemon = daemons()
    monitor, network = daemon.proc.pid, daemon.network_pid()
    # READY=1 comes before the monitor's OK to READY is sent: wait until the network process has read it.
    daemon.logged("serving host-mode devices")
    try:
        monitors_end = _channel_of(monitor)
    except (OSError, AttributeError) as err:
        pytest.skip("pidfd_getfd unavailable: %s" % err)
    try:
        monitors_end.send(b"ERR busy a late reply")
    finally:
        monitors_end.close()
    assert daemon.proc.wait(10) == 1  # the network process stopped, so the monitor fails: systemd restarts both
    assert not running(network)
    log = daemon.log()
    assert log.count("the channel to the monitor is broken") == 1, log
    assert "unexpected message from the privileged process between requests" in log
    assert "Traceback" not in log
