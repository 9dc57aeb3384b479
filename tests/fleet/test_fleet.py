"""A server and a client converged with site.yml, as a fleet would be, and left to heal themselves.

Order matters: each test starts from where the previous one left the fleet.
Times of the persistence checks are printed (run with ``-s`` or read the
junit log); the 10 s re-attach bound is asserted on the measured time
from the moment the server is reachable.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import yaml

from lab import ansiblekit

# Ansible under TCG: a converge of both guests takes minutes.
pytestmark = pytest.mark.timeout(1200)

EXPECTED = hashlib.sha256(ansiblekit.disk_content()).hexdigest()
# The block device of the attached disk: the sd* whose sysfs path runs through vhci_hcd.
READ_DISK = (
    "for b in /sys/block/sd*; do case $(readlink -f $b) in *vhci_hcd*) "
    "dd if=/dev/${b##*/} bs=64k count=%d iflag=direct status=none | sha256sum | cut -d' ' -f1;; esac; done"
    % (ansiblekit.DISK_SIZE // 65536))


def attached(fleet) -> list:
    out = fleet.ssh(fleet["client1"], "/usr/local/sbin/usbip port --json", check=False).stdout
    try:
        return sorted(p["remote_busid"] for p in json.loads(out or "[]") if p.get("remote_busid"))
    except ValueError:
        return []


def wait_attached(fleet, expected: list, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if attached(fleet) == expected:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError("client1 has %s attached after %.0f s, expected %s" % (attached(fleet), timeout, expected))


def wait_active(fleet, guest, unit: str, timeout: float) -> bool:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if fleet.ssh(guest, "systemctl is-active %s" % unit, check=False).stdout.strip() == "active":
            return True
        time.sleep(0.5)
    return False


def disk_digest(fleet, timeout: float = 30) -> str:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        digest = fleet.ssh(fleet["client1"], READ_DISK, check=False).stdout.strip()
        if digest:
            return digest
        time.sleep(1)
    return ""


def serial_busid(fleet) -> str:
    """The remote busid the serial adapter (0403:6001 behind server1's hub, matched by serial) got."""
    out = fleet.ssh(fleet["server1"], "/usr/local/sbin/usbip list -l --json").stdout
    return next(d["busid"] for d in json.loads(out) if d.get("serial") == "LABSER1")


def test_converge_attaches_the_servers_devices(fleet, env, writable_layer, layers):
    assert ansiblekit.playbook("prepare.yml", env).returncode == 0
    # what the guests hold before the roles ever ran: test_lifecycle.py's removal must leave them so (a listing
    # that fails fails that test, not this one)
    try:
        layers["before"] = {name: writable_layer(fleet[name]) for name in ("server1", "client1")}
    except (RuntimeError, ValueError) as error:
        layers["error"] = "the guests could not be listed before the first install: %s" % error
    run = ansiblekit.playbook("site.yml", env)
    assert run.returncode == 0
    recap = ansiblekit.recap(run.stdout)
    assert recap["server1"]["failed"] == 0 and recap["client1"]["failed"] == 0
    assert recap["server1"]["changed"] > 0 and recap["client1"]["changed"] > 0
    expected = sorted([serial_busid(fleet), "usbip-vudc.0"])
    wait_attached(fleet, expected, 30)
    print(fleet.ssh(fleet["client1"], "/usr/local/sbin/usbip port").stdout)
    assert disk_digest(fleet) == EXPECTED, "the attached disk must read back the server's backing file"
    # the disk came over TLS (3241) and its socket is a kernel TLS one; the serial adapter over plain USB/IP
    ports = json.loads(fleet.ssh(fleet["client1"], "/usr/local/sbin/usbip port --json").stdout)
    assert {p["remote_busid"]: p["remote_port"] for p in ports} == {"usbip-vudc.0": 3241, serial_busid(fleet): 3240}
    stat = fleet.ssh(fleet["client1"], "cat /proc/net/tls_stat").stdout
    assert dict(line.split() for line in stat.splitlines())["TlsCurrRxSw"] == "1", stat


def test_second_converge_changes_nothing(fleet, env):
    run = ansiblekit.playbook("site.yml", env)
    assert run.returncode == 0
    recap = ansiblekit.recap(run.stdout)
    assert recap["server1"]["changed"] == 0, run.stdout[-3000:]
    assert recap["client1"]["changed"] == 0, run.stdout[-3000:]


def test_check_diff_shows_the_changed_declaration_and_changes_nothing(fleet, env):
    before = attached(fleet)
    config_before = fleet.ssh(fleet["client1"], "cat /etc/usbip/attachments.yml").stdout
    run = ansiblekit.playbook("site.yml", env, "--check", "--diff", *ansiblekit.extra_vars("drop_serial"))
    assert run.returncode == 0
    recap = ansiblekit.recap(run.stdout)
    assert recap["server1"]["changed"] == 0
    assert recap["client1"]["changed"] > 0
    # the template diff drops the serial adapter's declaration
    assert "-  - server: 10.76.0.1" in run.stdout or '-    product: "6001"' in run.stdout or \
        "-    product: '6001'" in run.stdout, run.stdout[-4000:]
    assert attached(fleet) == before
    assert fleet.ssh(fleet["client1"], "cat /etc/usbip/attachments.yml").stdout == config_before


#: The exposure systemd-analyze may give each unit the roles install (0 is best, 10 worst).
EXPOSURE_MAX = 5.0
#: A service as the roles installed it before the units were sandboxed (Type=simple, no restriction).
UNSANDBOXED_UNIT = ("[Unit]\\nDescription=unsandboxed\\n[Service]\\nType=simple\\n"
                    "ExecStart=/usr/local/sbin/usbipd\\nRestart=always\\n[Install]\\nWantedBy=multi-user.target\\n")


def exposure(fleet, guest, unit: str) -> float:
    out = fleet.ssh(guest, "systemd-analyze security --no-pager %s" % unit).stdout
    line = next(line for line in out.splitlines() if "Overall exposure level" in line)
    return float(line.split(":", 1)[1].split()[0])


def test_services_are_sandboxed_and_usbipd_reads_the_network_unprivileged(fleet, env):
    """The units as converged: exposure at most 5.0, and usbipd's network process without root or capabilities."""
    figures = {"usbipd.service": exposure(fleet, fleet["server1"], "usbipd.service"),
               "usbip-attachd.service": exposure(fleet, fleet["client1"], "usbip-attachd.service")}
    # the units as the roles wrote them before they were sandboxed, analysed on the same guest for comparison
    fleet.ssh(fleet["server1"], "mkdir -p /tmp/unsandboxed && printf '%s' > /tmp/unsandboxed/usbipd.service"
              % UNSANDBOXED_UNIT.replace("%", "%%"))
    before = exposure(fleet, fleet["server1"], "--offline=yes /tmp/unsandboxed/usbipd.service")
    print("systemd-analyze security: %s (the unsandboxed unit: %.1f)" % (figures, before))
    assert all(value <= EXPOSURE_MAX for value in figures.values()), figures
    monitor = fleet.ssh(fleet["server1"], "systemctl show -p MainPID --value usbipd").stdout.strip()
    children = fleet.ssh(fleet["server1"], "pgrep -P %s" % monitor).stdout.split()
    assert len(children) == 1, children
    status = dict(line.split(":", 1) for line in
                  fleet.ssh(fleet["server1"], "cat /proc/%s/status" % children[0]).stdout.splitlines() if ":" in line)
    user = fleet.ssh(fleet["server1"], "ps -o user= -p %s" % children[0]).stdout.strip()
    print("network process %s: user %s, Uid %s, CapEff %s" % (children[0], user, status["Uid"].split(),
                                                              status["CapEff"].strip()))
    assert user == "usbip"
    assert "0" not in status["Uid"].split() and int(status["CapEff"].strip(), 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    # the monitor holds no listening socket: every LISTEN socket of the ports is the network process's
    listeners = fleet.ssh(fleet["server1"], "ss -Hltnp '( sport = :3240 or sport = :3241 )'").stdout
    assert listeners and "pid=%s," % monitor not in listeners, listeners


def test_fleet_report(fleet, env):
    run = ansiblekit.playbook("fleet_report.yml", env)
    assert run.returncode == 0
    assert "usbip-vudc.0" in run.stdout and "client1" in run.stdout
    # both exports are traced to the client, the disk through the server's TLS port
    assert run.stdout.count("attached by client1") == 2, run.stdout[-3000:]
    assert "TLS 3241" in run.stdout and "everything declared is in place" in run.stdout


def test_attachments_survive_a_killed_daemon(fleet, env):
    expected = attached(fleet)
    fleet.ssh(fleet["server1"], "systemctl kill -s KILL usbipd.service")
    time.sleep(3)
    # Type=notify: the restarted usbipd is "activating" until it has bound its sockets (seconds under TCG)
    assert wait_active(fleet, fleet["server1"], "usbipd.service", 20), "usbipd did not come back"
    assert attached(fleet) == expected
    assert disk_digest(fleet) == EXPECTED  # the kernel kept the connection; the data path never stopped
    listing = fleet.ssh(fleet["client1"], "/usr/local/sbin/usbip list -r 10.76.0.1", check=False)
    assert listing.returncode == 0, listing.stderr  # the restarted daemon serves again


def test_a_cut_connection_is_reattached_by_the_supervisor(fleet, env):
    expected = attached(fleet)
    fleet.ssh(fleet["client1"], "ss -K dst 10.76.0.1")  # both: the serial adapter (3240) and the disk (TLS, 3241)
    started = time.monotonic()
    # the port frees as soon as vhci sees its socket die, then usbip-attachd attaches again
    took = wait_attached(fleet, expected, 30)
    print("re-attached %.1f s after the connection was cut" % (time.monotonic() - started))
    assert took < 10
    assert disk_digest(fleet) == EXPECTED


def test_a_device_replugged_on_the_server_is_exported_and_attached_again_without_ansible(fleet):
    """The serial adapter behind server1's hub is pulled out and plugged back in (QMP): usbipd's export rule binds
    it again on the kernel's add uevent, and client1's supervisor attaches it again. No Ansible runs."""
    expected = attached(fleet)
    busid = serial_busid(fleet)
    assert busid in expected and "." in busid, (busid, expected)
    bench = fleet["server1"].guest.bench
    bench.unplug("serial1")
    wait_attached(fleet, [b for b in expected if b != busid], 30)
    plugged = time.monotonic()
    bench.plug("serial1")
    # from the plug: the bind on the uevent (under a second in the lab), then the supervisor's next attempt
    # (its backoff is capped at 4 s here)
    wait_attached(fleet, expected, 60)
    print("attached again %.1f s after the adapter was plugged back in" % (time.monotonic() - plugged))
    journal = fleet.ssh(fleet["server1"], "journalctl -u usbipd -o cat --since=-10min").stdout
    assert journal.count("export rule: bound %s " % busid) >= 1, journal[-3000:]


def test_client_reboot_reattaches_without_ansible(fleet, env):
    expected = attached(fleet)
    fleet.reboot(fleet["client1"])
    took = wait_attached(fleet, expected, 30)
    print("attached %.1f s after client1 answered SSH again" % took)
    assert took < 10
    assert disk_digest(fleet) == EXPECTED


def test_undeclared_device_is_detached_and_stays_detached(fleet, env):
    run = ansiblekit.playbook("site.yml", env, *ansiblekit.extra_vars("drop_serial"))
    assert run.returncode == 0
    assert attached(fleet) == ["usbip-vudc.0"]
    time.sleep(12)  # several supervisor intervals
    assert attached(fleet) == ["usbip-vudc.0"]


def test_client_converged_while_its_server_is_down_attaches_when_it_is_up(fleet, env, tmp_path):
    """usbipd stopped, nothing attached: the client's play (full declarations again, so the supervisor is
    reloaded) succeeds, reports both declarations not attached yet, and leaves the supervisor running; once
    usbipd is ready, the supervisor attaches both within its retry cap plus 10 s."""
    server, client = fleet["server1"], fleet["client1"]
    expected = sorted([serial_busid(fleet), "usbip-vudc.0"])
    fleet.ssh(server, "systemctl stop usbipd.service")
    try:
        for port in json.loads(fleet.ssh(client, "/usr/local/sbin/usbip port --json").stdout):
            fleet.ssh(client, "/usr/local/sbin/usbip detach -p %d" % port["port"])
        wait_attached(fleet, [], 30)  # and stays so: the supervisor's attempts are refused
        run = ansiblekit.playbook("client_attach_report.yml", env, "-e", "usbip_lab_report_dir=%s" % tmp_path)
        assert run.returncode == 0, run.stdout[-4000:]
        recap = ansiblekit.recap(run.stdout)
        assert recap["client1"]["failed"] == 0 and recap["client1"]["unreachable"] == 0
        assert run.stdout.count("not attached yet") >= 2, run.stdout[-4000:]
        results = json.loads((tmp_path / "client1.json").read_text())
        declared = ["tls://10.76.0.1:3241/usbip-vudc.0", "10.76.0.1:3240/vendor=0403 product=6001"]
        assert [r["attachment"] for r in results] == declared, results
        assert [(r["attached"], r["vhci_port"]) for r in results] == [(False, None), (False, None)], results
        assert all(r["error"] for r in results), results
        assert wait_active(fleet, client, "usbip-attachd.service", 5), "the supervisor must run"
        assert attached(fleet) == []
        config = yaml.safe_load(fleet.ssh(client, "cat /etc/usbip/attachments.yml").stdout)
        assert len(config["attachments"]) == 2
        retry_cap = float(config["retry"]["max"])
    finally:
        # Type=notify: systemctl start returns once usbipd has bound its sockets, i.e. when it is ready
        fleet.ssh(server, "systemctl start usbipd.service")
    # measured from the return of systemctl start over SSH; wait_attached fails beyond the bound
    took = wait_attached(fleet, expected, retry_cap + 10)
    print("attached %.1f s after usbipd was ready (bound: retry cap %g s + 10 s)" % (took, retry_cap))
    assert disk_digest(fleet) == EXPECTED
