"""The Ansible kit: run the collection's playbooks from this host against the lab guests over SSH.

Used by the fleet suite (``tests/fleet``) and by ``make demo`` (:mod:`lab.demo`). The guests are started
by :mod:`lab.fleet` (``lab.qemu.Guest`` with ``systemd=True``, ``lan=...``, ``ssh_port=...``); this module
only knows how Ansible reaches them:

- ``collections_tree()`` makes ``usbip.usbip`` resolvable (``ansible_collections/usbip/usbip`` -> this checkout);
- ``ansible_env()`` is the environment for ``ansible-playbook`` (inventory/hosts.yml reads the SSH ports and key
  from it, group_vars the directory of the lab's TLS certificates);
- ``playbook()`` runs one playbook with the lab inventory and returns the completed process;
- ``disk_content()`` is what prepare.yml writes into the server's mass-storage backing file.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from typing import Dict, Optional, Sequence

from . import pki

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The lab fleet's inventory, prepare.yml and variable variants (``vars/*.yml``): YAML only, kept beside the
#: fleet suite so that ansible-lint checks them (it skips lab/); nothing is imported from there.
FLEET_FILES = os.path.join(REPO, "tests", "fleet")
INVENTORY = os.path.join(FLEET_FILES, "inventory")
PLAYBOOKS = os.path.join(REPO, "playbooks")
VENV_BIN = os.path.join(REPO, ".venv", "bin")

# Keep in step with inventory/group_vars/all.yml.
DISK_SIZE = 1048576
DISK_SEED = 76
SERVER_ADDRESS = "10.76.0.1"
CLIENT_ADDRESS = "10.76.0.2"


def collections_tree(base: str) -> str:
    """``base`` with ``ansible_collections/usbip/usbip`` linked to this checkout; returns ``base``."""
    parent = os.path.join(base, "ansible_collections", "usbip")
    os.makedirs(parent, exist_ok=True)
    link = os.path.join(parent, "usbip")
    if os.path.islink(link) and os.readlink(link) != REPO:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(REPO, link)
    return base


def lab_pki() -> str:
    """The lab fleet's throw-away CA and certificates (``lab.pki``), made once under build/."""
    directory = os.path.join(REPO, "build", "lab-pki")
    if not os.path.exists(os.path.join(directory, "client1.key")):
        pki.make_pki(directory)
    return directory


def ansible_env(server_ssh_port: int, client_ssh_port: int, ssh_key: str, collections: str,
                base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for ansible-playbook against the lab fleet."""
    env = dict(os.environ if base is None else base)
    env.update({
        "USBIP_LAB_PKI": lab_pki(),
        "USBIP_LAB_SERVER1_SSH_PORT": str(server_ssh_port),
        "USBIP_LAB_CLIENT1_SSH_PORT": str(client_ssh_port),
        "USBIP_LAB_SSH_KEY": ssh_key,
        "ANSIBLE_COLLECTIONS_PATH": collections,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_TIMEOUT": "30",
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
    })
    return env


def playbook(name: str, env: Dict[str, str], *args: str, timeout: float = 2400) -> subprocess.CompletedProcess:
    """Run ``playbooks/<name>`` (or a path) with the lab inventory; output is echoed and returned."""
    path = name if os.path.isabs(name) else os.path.join(PLAYBOOKS, name)
    if not os.path.exists(path):
        path = os.path.join(FLEET_FILES, name)
    argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", INVENTORY, path, *args]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    print("$ %s\n%s%s[rc=%d]" % (" ".join(argv), proc.stdout, proc.stderr, proc.returncode))
    return proc


_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(output: str) -> Dict[str, Dict[str, int]]:
    """The PLAY RECAP of ansible-playbook's output: host -> ok/changed/unreachable/failed."""
    return {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                         "failed": int(m.group(5))} for m in _RECAP.finditer(output)}


def disk_content(size: int = DISK_SIZE, seed: int = DISK_SEED) -> bytes:
    """The bytes prepare.yml writes to the server's backing file."""
    return random.Random(seed).randbytes(size)


def extra_vars(name: str) -> Sequence[str]:
    """``-e @vars/<name>.yml`` arguments, e.g. ``extra_vars('drop_serial')``."""
    return ("-e", "@" + os.path.join(FLEET_FILES, "vars", name + ".yml"))
