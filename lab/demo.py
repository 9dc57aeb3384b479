"""``make demo``: the collection's main job, end to end, in the lab.

Boots a server and a client guest, converges them with ``playbooks/site.yml``
over SSH, shows ``usbip port`` on the client and reads the server's virtual
disk through USB/IP, converges again to show that nothing changes, then runs
``--check --diff`` with one declaration changed to show what would change.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time

from . import ansiblekit, usbhw
from . import fleet as lab_fleet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

READ_DISK = ("for b in /sys/block/sd*; do case $(readlink -f $b) in *vhci_hcd*) "
             "echo /dev/${b##*/}: $(dd if=/dev/${b##*/} bs=64k count=16 iflag=direct status=none | sha256sum);; "
             "esac; done")


_STARTED = time.monotonic()


def step(text: str) -> None:
    elapsed = int(time.monotonic() - _STARTED)
    print("\n==> [%d:%02d] %s" % (elapsed // 60, elapsed % 60, text), flush=True)


def recap_line(run) -> str:
    return ", ".join("%s changed=%d failed=%d" % (h, r["changed"], r["failed"])
                     for h, r in sorted(ansiblekit.recap(run.stdout).items()))


def main() -> int:
    started = time.monotonic()
    os.makedirs(os.path.join(REPO, "build"), exist_ok=True)
    console = os.path.join(REPO, "build", "demo-console.log")
    step("booting server1 and client1 (systemd guests, Debian's stock kernel under QEMU; console in %s)" % console)
    fleet = lab_fleet.Fleet(["server1", "client1"], out=open(console, "w"), usb={"server1": usbhw.BENCH})
    try:
        fleet.start()
        env = ansiblekit.ansible_env(fleet["server1"].ssh_port, fleet["client1"].ssh_port, lab_fleet.KEY,
                                   ansiblekit.collections_tree(tempfile.mkdtemp(prefix="collections-")))
        step("preparing the server's virtual disk (1 MiB of known content)")
        if ansiblekit.playbook("prepare.yml", env).returncode:
            return 1
        step("converging the fleet: ansible-playbook playbooks/site.yml")
        run = ansiblekit.playbook("site.yml", env)
        print("recap: " + recap_line(run))
        if run.returncode:
            return 1
        time.sleep(3)
        step("client1: usbip port")
        print(fleet.ssh(fleet["client1"], "/usr/local/sbin/usbip port").stdout)
        step("client1: reading the server's disk through USB/IP")
        print(fleet.ssh(fleet["client1"], READ_DISK).stdout.strip())
        print("expected sha256: %s" % hashlib.sha256(ansiblekit.disk_content()).hexdigest())
        step("converging again: nothing may change")
        run = ansiblekit.playbook("site.yml", env)
        print("recap: " + recap_line(run))
        step("--check --diff with client1 no longer declaring the serial adapter")
        run = ansiblekit.playbook("site.yml", env, "--check", "--diff", *ansiblekit.extra_vars("drop_serial"))
        print("recap: " + recap_line(run))
        step("server1: the serial adapter pulled out and plugged back in; no Ansible runs")
        fleet["server1"].guest.bench.unplug("serial1")
        time.sleep(5)
        print("client1 after the unplug:\n" + fleet.ssh(fleet["client1"], "/usr/local/sbin/usbip port").stdout)
        fleet["server1"].guest.bench.plug("serial1")
        time.sleep(15)
        print("client1 15 s after the plug:\n" + fleet.ssh(fleet["client1"], "/usr/local/sbin/usbip port").stdout)
        step("fleet report")
        ansiblekit.playbook("fleet_report.yml", env)
    finally:
        step("stopping the guests")
        fleet.stop()
    print("\ndemo finished in %.0f s" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
