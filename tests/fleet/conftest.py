"""The fleet suite: two lab guests with systemd, managed over SSH from this host.

Runs on the host (not inside a guest): ``.venv/bin/python -m pytest tests/fleet``.
One fleet boots per session; the tests run in file order and build on each other,
as an operator's day would.
"""

import os

import pytest

from lab import ansiblekit, qemu
from lab import fleet as lab_fleet

REPO = ansiblekit.REPO


@pytest.fixture(scope="session")
def fleet():
    problem = qemu.preflight()
    if problem:
        raise pytest.UsageError(problem)
    f = lab_fleet.Fleet(["server1", "client1"], out=open(os.path.join(REPO, "build", "fleet-console.log"), "w")
                        if os.path.isdir(os.path.join(REPO, "build")) else None)
    try:
        f.start()
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="session")
def env(fleet, tmp_path_factory):
    collections = ansiblekit.collections_tree(str(tmp_path_factory.mktemp("collections")))
    return ansiblekit.ansible_env(fleet["server1"].ssh_port, fleet["client1"].ssh_port, lab_fleet.KEY, collections)
