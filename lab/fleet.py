"""A small fleet of lab guests that Ansible reaches over SSH, as it would real hosts.

Each guest boots systemd on the shared root with a persistent disk (so a
reboot keeps what the roles installed), gets a LAN address on a QEMU socket
link to the other guests, and an sshd reachable from the host at
127.0.0.1:<port> only. Nothing leaves this machine.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from . import qemu, usbhw

KEY = os.path.join(qemu.CACHE_DIR, "id_ed25519")
LAN_PORT = 47600
SSH_BASE = 47620
LAN_NET = "10.76.0"


@dataclasses.dataclass
class Member:
    name: str
    index: int
    disk: str
    guest: Optional[qemu.Guest] = None

    @property
    def address(self) -> str:
        return "%s.%d" % (LAN_NET, self.index + 1)

    @property
    def ssh_port(self) -> int:
        return SSH_BASE + self.index

    @property
    def mac(self) -> str:
        return "52:54:00:76:00:%02x" % (self.index + 1)


def ensure_key() -> str:
    if not os.path.exists(KEY):
        os.makedirs(os.path.dirname(KEY), exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY], check=True)
    return KEY


def _boot_job(member: Member, pubkey: str) -> str:
    """Runs at every boot (lab-job.service): addresses, SSH key, then wait to be stopped."""
    return "\n".join([
        "ip link set lo up",
        "for i in /sys/class/net/*; do n=${i##*/}; case $(cat $i/address) in",
        "  %s) ip addr add %s/24 dev $n; ip link set $n up;;" % (member.mac, member.address),
        "  52:54:00:00:00:*) ip addr add 10.0.2.15/24 dev $n; ip link set $n up;;",
        "esac; done",
        # /root is the host's, under an overlay: its shell start-up files (a pyenv set-up, say) would run at every
        # SSH session, which bash started by sshd sources; a managed node starts from a clean root account.
        "for f in .bashrc .profile .bash_profile .bash_login; do rm -f /root/$f; done",
        "mkdir -p /root/.ssh && chmod 700 /root/.ssh",
        "echo %s > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys" % pubkey,
        # Without PAM, a session is a fork and an exec: pam_systemd's logind session and the user manager it
        # starts, pam_motd's scripts and the rest cost seconds per SSH session (per Ansible task) under TCG.
        "mkdir -p /etc/ssh/sshd_config.d",
        "printf 'UsePAM no\\nPrintMotd no\\nPrintLastLog no\\nUseDNS no\\n' > /etc/ssh/sshd_config.d/lab.conf",
        "systemctl restart ssh",
        "echo FLEET-READY %s %s" % (member.name, member.address),
        "while [ ! -e /tmp/xfer/stop-%s ]; do sleep 1; done" % member.name,
    ])


class Fleet:
    """Guests named by ``names``; the first one listens on the LAN link, the second connects."""

    def __init__(self, names: List[str], workdir: Optional[str] = None, timeout: float = 1800,
                 mem: str = "768M", out=None, usb: Optional[Dict[str, Sequence[usbhw.UsbDevice]]] = None) -> None:
        if len(names) != 2:
            raise ValueError("a QEMU socket link joins exactly two guests")
        self.workdir = workdir or tempfile.mkdtemp(prefix="fleet-", dir=qemu._ensure(qemu.CACHE_DIR))
        self.timeout = timeout
        self.mem = mem
        self.out = out or sys.stdout
        #: Emulated USB hardware by guest name (at every boot of that guest); ``guest.bench`` plugs and unplugs it.
        self.usb = dict(usb or {})
        self.members = [Member(n, i, os.path.join(self.workdir, n + ".img")) for i, n in enumerate(names)]
        self.xfer = qemu._ensure(os.path.join(self.workdir, "xfer"))
        self.pubkey = open(ensure_key() + ".pub").read().strip()
        for m in self.members:
            qemu.make_disk(m.disk)

    def __getitem__(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def boot(self, member: Member) -> None:
        stop = os.path.join(self.xfer, "stop-" + member.name)
        if os.path.exists(stop):
            os.unlink(stop)
        member.guest = qemu.Guest(
            _boot_job(member, self.pubkey), timeout=self.timeout, mem=self.mem, cpus=1, xfer=self.xfer,
            prefix="%s| " % member.name, out=self.out, systemd=True, disk=member.disk, hostname=member.name,
            lan=qemu.Lan(LAN_PORT, listen=member.index == 0, mac=member.mac), ssh_port=member.ssh_port,
            usb=self.usb.get(member.name, ()),
        ).start()

    def start(self, ready_timeout: float = 240) -> "Fleet":
        for m in self.members:
            self.boot(m)
            if m.index == 0:
                time.sleep(0.5)  # the listening end of the link first
        for m in self.members:
            self.wait_ssh(m, ready_timeout)
        return self

    def ssh(self, member: Member, command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["ssh", "-i", KEY, "-p", str(member.ssh_port), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", "root@127.0.0.1", command]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError("%s: %r failed (%d): %s" % (member.name, command, proc.returncode, proc.stderr))
        return proc

    def wait_ssh(self, member: Member, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if member.guest and member.guest.proc.poll() is not None:
                raise RuntimeError("%s died while booting" % member.name)
            try:
                if self.ssh(member, "systemctl is-system-running --wait >/dev/null; true", check=False,
                            timeout=30).returncode == 0:
                    elapsed = time.monotonic() - started
                    self.out.write("fleet: %s reachable over SSH after %.0f s\n" % (member.name, elapsed))
                    return elapsed
            except subprocess.TimeoutExpired:
                pass
            time.sleep(2)
        raise RuntimeError("%s: no SSH within %.0f s" % (member.name, timeout))

    def reboot(self, member: Member, ready_timeout: float = 240) -> None:
        """Power the guest off and boot it again from the same disk (a client reboot)."""
        self.ssh(member, "sync; systemctl poweroff", check=False, timeout=30)
        try:
            member.guest.proc.wait(60)
        except subprocess.TimeoutExpired:
            member.guest.kill()
        member.guest.wait()
        self.boot(member)
        self.wait_ssh(member, ready_timeout)

    def inventory(self, path: str, extra: Optional[Dict[str, Dict[str, str]]] = None) -> str:
        lines = ["all:", "  vars:", "    ansible_user: root", "    ansible_host: 127.0.0.1",
                 "    ansible_ssh_private_key_file: %s" % KEY,
                 "    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                 "    ansible_python_interpreter: /usr/bin/python3", "  hosts:"]
        for m in self.members:
            lines += ["    %s:" % m.name, "      ansible_port: %d" % m.ssh_port, "      lan_address: %s" % m.address]
            for key, value in (extra or {}).get(m.name, {}).items():
                lines.append("      %s: %s" % (key, value))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def stop(self) -> None:
        for m in self.members:
            open(os.path.join(self.xfer, "stop-" + m.name), "w").close()
        for m in self.members:
            if m.guest is None:
                continue
            try:
                m.guest.proc.wait(30)
            except subprocess.TimeoutExpired:
                m.guest.kill()
            m.guest.wait()
