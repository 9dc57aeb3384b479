"""The fleet suite: two lab guests with systemd, managed over SSH from this host.

Runs on the host (not inside a guest): ``.venv/bin/python -m pytest tests/fleet``.
One fleet boots per session; the tests run in file order and build on each other,
as an operator's day would.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
for path in (HERE, REPO):
    if path not in sys.path:
        sys.path.insert(0, path)

import fleetkit  # noqa: E402

from lab import fleet as lab_fleet  # noqa: E402
from lab import qemu  # noqa: E402


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
    collections = fleetkit.collections_tree(str(tmp_path_factory.mktemp("collections")))
    return fleetkit.ansible_env(fleet["server1"].ssh_port, fleet["client1"].ssh_port, lab_fleet.KEY, collections)
