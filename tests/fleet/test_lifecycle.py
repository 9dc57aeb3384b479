"""The operator's install lifecycle, on the fleet test_fleet.py converged and left to heal itself.

Runs after test_fleet.py in the same session (pytest takes the files in order; the fleet is the session's) and
builds on where it left the guests: server1 exports, client1 has both devices attached. In order:

- server1 is put back to the layout from before releases by hand, then converged with both roles
  (``both_roles.yml``): the migration, and a host that is server and client;
- the same playbook from a copy of the collection with one shipped file changed: both daemons restart onto the
  new release; the same run turns on the nftables firewall (when the lab host has nft), checked next;
- ``playbooks/remove.yml`` on both guests: the guests' writable layers are what they were before the first
  install (test_fleet.py took them), less what churns by itself (``conftest.LAYER_SKIP``).

Each converge costs minutes under TCG: the migration shares its run with the second role's install, the firewall
its run with the upgrade.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import time

import pytest

from lab import ansiblekit

pytestmark = pytest.mark.timeout(1200)

PREFIX = "/usr/local/lib/usbip-usbip"
UNITS = ("usbipd.service", "usbip-attachd.service")
#: nft comes from the host's root, which the guests share (lab/install-deps.sh installs nftables).
NFT = os.path.exists("/usr/sbin/nft")
#: A network that usbip_server_allow (10.76.0.0/24, 127.0.0.0/8) leaves out, added beside the lab's link.
OUTSIDE_SERVER, OUTSIDE_CLIENT = "10.77.0.1", "10.77.0.2"

# The wrappers of the layout before releases, as the roles wrote them: the prefix itself on sys.path.
LEGACY_WRAPPER = """#!/usr/bin/python3
# Ansible managed
# {name} of the usbip.usbip collection, run from the copy in {prefix}.
import sys

sys.path.insert(0, "{prefix}")

from usbip.cli.{entry} import main  # noqa: E402

sys.exit(main())
"""

CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[4]))
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
    print("connected")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("error %s" % e)
"""


def ssh(fleet, name: str, command: str, **kwargs) -> str:
    return fleet.ssh(fleet[name], command, **kwargs).stdout


def main_pid(fleet, name: str, unit: str) -> int:
    return int(ssh(fleet, name, "systemctl show --property MainPID --value %s" % unit).strip() or 0)


def held_releases(fleet, name: str, pid: int) -> set:
    """The releases process ``pid`` holds open (its wrapper keeps the one it started from)."""
    links = ssh(fleet, name, "for f in /proc/%d/fd/*; do readlink $f; done" % pid, check=False).split()
    return {os.path.basename(link) for link in links if link.startswith(PREFIX + "/releases/")}


def current(fleet, name: str) -> str:
    return os.path.basename(ssh(fleet, name, "readlink %s/current" % PREFIX, check=False).strip())


def attached(fleet) -> list:
    out = ssh(fleet, "client1", "/usr/local/sbin/usbip port --json", check=False)
    try:
        return sorted(p["remote_busid"] for p in json.loads(out or "[]") if p.get("remote_busid"))
    except ValueError:
        return []


def converge_both_roles(env, *args):
    run = ansiblekit.playbook("both_roles.yml", env, *args)
    assert run.returncode == 0, run.stdout[-4000:]
    recap = ansiblekit.recap(run.stdout)
    assert recap["server1"]["failed"] == 0 and recap["server1"]["changed"] > 0
    return run


def test_a_host_installed_before_releases_is_migrated_and_runs_both_roles(fleet, env):
    """server1 as the roles left it before releases: the stack a plain copy in <prefix>/usbip, wrappers that put
    <prefix> on sys.path, usbipd running from that copy. One converge with both roles leaves the release layout,
    the copy gone, usbipd restarted onto the release, and usbip-attachd running from it too."""
    expected = attached(fleet)
    assert len(expected) == 2
    legacy = {name: LEGACY_WRAPPER.format(name=name, entry=entry, prefix=PREFIX)
              for name, entry in (("usbipd", "usbipd"), ("usbip", "usbip"))}
    wrappers = " && ".join("printf %%s %s > /usr/local/sbin/%s" % (shlex.quote(text), name)
                           for name, text in legacy.items())
    ssh(fleet, "server1", "set -e; cp -a $(readlink -f {p}/current)/usbip {p}/usbip; {w}; "
        "systemctl restart usbipd.service; rm -rf {p}/releases {p}/current {p}/previous".format(p=PREFIX, w=wrappers))
    legacy_pid = main_pid(fleet, "server1", "usbipd.service")
    assert legacy_pid and held_releases(fleet, "server1", legacy_pid) == set()
    assert ssh(fleet, "server1", "ls %s" % PREFIX).split() == ["usbip"]

    converge_both_roles(env)

    release = current(fleet, "server1")
    assert re.match(r"^\d+\.\d+\.\d+.*-[0-9a-f]{12}$", release), release
    assert ssh(fleet, "server1", "ls %s" % PREFIX).split() == ["current", "releases"]  # the copy is gone
    assert ssh(fleet, "server1", "ls %s/releases" % PREFIX).split() == [release]
    for unit in UNITS:
        pid = main_pid(fleet, "server1", unit)
        assert pid and pid != legacy_pid, unit
        assert held_releases(fleet, "server1", pid) == {release}, unit
    assert "RELEASE_FD" in ssh(fleet, "server1", "cat /usr/local/sbin/usbipd")
    assert attached(fleet) == expected  # restarting usbipd never drops what the kernel carries


def upgraded_collection(base: str) -> str:
    """A collections tree whose usbip.usbip is this checkout with one shipped file of the stack changed."""
    root = os.path.join(base, "ansible_collections", "usbip", "usbip")
    for name in ("galaxy.yml", "meta", "plugins", "roles"):
        source = os.path.join(ansiblekit.REPO, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(root, name), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            os.makedirs(root, exist_ok=True)
            shutil.copy(source, os.path.join(root, name))
    with open(os.path.join(root, "plugins", "module_utils", "usbip", "__init__.py"), "a") as f:
        f.write("# fleet upgrade marker %d\n" % time.time())
    return base


def test_an_upgrade_restarts_both_daemons_onto_the_new_release(fleet, env, tmp_path_factory):
    """server1 runs both roles in two plays; a new release made by the server's play restarts usbip-attachd in
    the client's play too (its process still holds the release it started from), and the one before stays as
    `previous`. The same run turns on the nftables firewall, checked by the next test."""
    expected = attached(fleet)
    before = current(fleet, "server1")
    pids = {unit: main_pid(fleet, "server1", unit) for unit in UNITS}
    upgraded = dict(env, ANSIBLE_COLLECTIONS_PATH=upgraded_collection(str(tmp_path_factory.mktemp("upgraded"))))
    firewall = ("-e", "usbip_server_firewall=nftables") if NFT else ()

    converge_both_roles(upgraded, *firewall)

    after = current(fleet, "server1")
    assert after != before and after.rsplit("-", 1)[0] == before.rsplit("-", 1)[0], (before, after)
    for unit in UNITS:
        pid = main_pid(fleet, "server1", unit)
        assert pid and pid != pids[unit], "%s was not restarted" % unit
        assert held_releases(fleet, "server1", pid) == {after}, unit
    assert sorted(ssh(fleet, "server1", "ls %s/releases" % PREFIX).split()) == sorted([before, after])
    assert current(fleet, "server1") == after
    assert os.path.basename(ssh(fleet, "server1", "readlink %s/previous" % PREFIX).strip()) == before
    assert attached(fleet) == expected


def lan_interface(fleet, name: str, address: str) -> str:
    out = ssh(fleet, name, "ip -o -4 addr show")
    return next(line.split()[1] for line in out.splitlines() if " %s/" % address in line)


def connect(fleet, source: str, destination: str, port: int, timeout: float = 3) -> str:
    return ssh(fleet, "client1", "python3 -c %s %s %s %d %g" % (shlex.quote(CONNECT), source, destination, port,
                                                                timeout)).strip()


def dropped(fleet) -> int:
    out = ssh(fleet, "server1", "/usr/sbin/nft list counter inet usbip dropped")
    return int(re.search(r"packets (\d+)", out).group(1))


def test_the_nftables_firewall_drops_what_the_allow_list_leaves_out(fleet, env):
    """usbip_server_firewall: nftables, allow-list 10.76.0.0/24 and 127.0.0.0/8. A client address outside it
    reaches server1 (SSH answers) but not the USB/IP ports: no SYN-ACK, no reset (the connect times out), the
    table's counter moves, and usbipd never sees the connection (no refusal in its log). The allowed network
    still connects."""
    assert NFT, "the lab host has no nft (/usr/sbin/nft): lab/install-deps.sh installs nftables"
    assert ssh(fleet, "server1", "systemctl is-enabled usbipd-firewall.service").strip() == "enabled"
    interfaces = {"server1": lan_interface(fleet, "server1", "10.76.0.1"),
                  "client1": lan_interface(fleet, "client1", "10.76.0.2")}
    outside = {"server1": OUTSIDE_SERVER, "client1": OUTSIDE_CLIENT}
    since = int(ssh(fleet, "server1", "date +%s").strip())
    try:
        for name, interface in interfaces.items():
            ssh(fleet, name, "ip addr add %s/24 dev %s" % (outside[name], interface))
        assert connect(fleet, OUTSIDE_CLIENT, OUTSIDE_SERVER, 22) == "connected"  # the address reaches server1
        counted = dropped(fleet)
        for port in (3240, 3241):
            assert connect(fleet, OUTSIDE_CLIENT, OUTSIDE_SERVER, port) == "timeout", port
        assert dropped(fleet) > counted
        assert connect(fleet, "10.76.0.2", "10.76.0.1", 3240) == "connected"
        log = ssh(fleet, "server1", "journalctl --unit usbipd.service --since @%d --output cat --no-pager" % since)
        assert OUTSIDE_CLIENT not in log, log[-2000:]
    finally:
        for name, interface in interfaces.items():
            ssh(fleet, name, "ip addr del %s/24 dev %s" % (outside[name], interface), check=False)


def host_file_digest(path: str) -> str:
    """SHA-256 of the host's own file at ``path`` (the guests' read-only lower layer), or ''."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def leftovers(before: dict, after: dict) -> list:
    """What a guest's writable layer holds after the removal and did not before the first install, or lost.

    A directory of the host's root (the guests' lower layer) that an entry below it copied up, and a file of the
    host's copied up with its content unchanged (/etc/passwd after the usbip account came and went) are not
    leftovers: the guest sees exactly the host's.
    """
    found = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        if new is None:
            found.append("gone: %s (%s)" % (path, old))
        elif new == "d" and os.path.isdir(path) and not os.path.islink(path):
            continue
        elif new.startswith("f ") and host_file_digest(path) == new[2:]:
            continue
        else:
            found.append("%s: %s (before: %s)" % (path, new, old or "absent"))
    return found


BOUND = "import os, re; d = '/sys/bus/usb/drivers/usbip-host'; " \
        "print([e for e in (os.listdir(d) if os.path.isdir(d) else []) if re.match(r'^[0-9]+-[0-9.]+$', e)])"


def test_removal_leaves_nothing_of_ours_behind(fleet, env, writable_layer, layers):
    """playbooks/remove.yml, clients first (client1, and server1 which is a client too), then servers: devices
    detached, unbound and gadgets gone, no unit, account, table or file of ours, and each guest's writable layer
    as it was before the first install."""
    missing = "run the whole fleet suite: test_fleet.py lists the guests before the first install"
    assert "before" in layers, layers.get("error", missing)
    run = ansiblekit.playbook("remove.yml", env, "-e", "usbip_remove_clients=usbip_clients:usbip_servers")
    assert run.returncode == 0, run.stdout[-4000:]
    recap = ansiblekit.recap(run.stdout)
    assert recap["server1"]["failed"] == 0 and recap["client1"]["failed"] == 0

    status = ssh(fleet, "client1", "cat /sys/devices/platform/vhci_hcd.0/status*", check=False)
    assert [line for line in status.splitlines()[1:] if line.split()[2:3] != ["004"]
            and not line.startswith("hub")] == [], status
    assert ssh(fleet, "server1", "python3 -c %s" % shlex.quote(BOUND)).strip() == "[]"
    assert ssh(fleet, "server1", "ls /sys/kernel/config/usb_gadget", check=False).split() == []
    for name in ("server1", "client1"):
        assert ssh(fleet, name, "systemctl list-unit-files --no-legend 'usbip*'", check=False).strip() == ""
        assert fleet.ssh(fleet[name], "getent passwd usbip", check=False).returncode == 2
        if NFT:
            assert fleet.ssh(fleet[name], "/usr/sbin/nft list table inet usbip", check=False).returncode != 0
        left = leftovers(layers["before"][name], writable_layer(fleet[name]))
        assert left == [], "%s keeps:\n%s" % (name, "\n".join(left))
