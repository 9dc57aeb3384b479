"""The fleet suite: two lab guests with systemd, managed over SSH from this host.

Runs on the host (not inside a guest): ``.venv/bin/python -m pytest tests/fleet``.
One fleet boots per session; the tests run in file order and build on each other,
as an operator's day would.
"""

import json
import os

import pytest

from lab import ansiblekit, qemu, usbhw
from lab import fleet as lab_fleet

REPO = ansiblekit.REPO


#: Seconds the fleet's guests may run before the lab stops them.
FLEET_LIFETIME = 3300


@pytest.fixture(scope="session")
def fleet():
    problem = qemu.preflight()
    if problem:
        raise pytest.UsageError(problem)
    # The guests live for the whole session: converges, reboots, an upgrade and a removal (about 30 minutes under
    # emulation); the bound only stops guests a crashed session left behind.
    console = os.path.join(REPO, "build", "fleet-console.log")
    # server1 has the emulated USB hardware (a hub with a serial adapter behind it, ...): what it exports in host
    # mode, and what a test unplugs and plugs back while the fleet runs.
    f = lab_fleet.Fleet(["server1", "client1"], timeout=FLEET_LIFETIME,
                        out=open(console, "w") if os.path.isdir(os.path.dirname(console)) else None,
                        usb={"server1": usbhw.BENCH})
    try:
        f.start()
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="session")
def env(fleet, tmp_path_factory):
    collections = ansiblekit.collections_tree(str(tmp_path_factory.mktemp("collections")))
    return ansiblekit.ansible_env(fleet["server1"].ssh_port, fleet["client1"].ssh_port, lab_fleet.KEY, collections)


#: What churns in a guest's writable layer by itself, or belongs to the lab and not to the roles: left out of the
#: listings that test_lifecycle.py compares (the guest's state before the first install, and after the removal).
LAYER_SKIP = (
    "/var/log", "/var/cache", "/var/lib/apt", "/var/lib/dpkg",  # the package manager's and journald's files
    "/var/lib/systemd", "/etc/.updated", "/var/.updated",        # systemd's own state (random seed, timers, ...)
    "/var/tmp", "/root/.ansible",                                # temporary files, Ansible's among them
    "/etc/hosts",                                                # lab/init.sh appends a line at every boot
    "/var/lib/usbip-lab",                                        # the lab's backing file (prepare.yml)
    # shadow-utils keeps the previous passwd, group, shadow and gshadow (the usbip account's add and delete
    # rewrite them) and locks them with .pwd.lock
    "/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-", "/etc/subuid-", "/etc/subgid-",
    "/etc/.pwd.lock",
)
LAYER_MOUNT = "/run/usbip-lab-layer"


@pytest.fixture(scope="session")
def writable_layer(fleet):
    """A function: what a guest's overlays hold above the host's root (``tests/fleet/layer.py``), by path.

    The guest's disk is mounted a second time (the same ext4 file system, shared) to read the upper layers, and
    unmounted again.
    """
    script = os.path.join(REPO, "tests", "fleet", "layer.py")
    skips = " ".join("--skip %s" % path for path in LAYER_SKIP)

    def listing(guest) -> dict:
        command = ("mkdir -p {m} && mount /dev/vda {m} && {{ python3 {script} {m} {skips}; rc=$?; umount {m}; "
                   "exit $rc; }}").format(m=LAYER_MOUNT, script=script, skips=skips)
        return json.loads(fleet.ssh(guest, command, timeout=180).stdout)

    return listing


@pytest.fixture(scope="session")
def layers() -> dict:
    """The guests' writable layers by moment: test_fleet.py records "before" ahead of the first install."""
    return {}
