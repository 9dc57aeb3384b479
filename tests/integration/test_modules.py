"""The collection's modules, run by Ansible against the real kernel.

One ``ansible-playbook`` run (Ansible takes ~20 s to start in a guest) plays
every target under ``targets/`` as a role, each in a block whose rescue
records the failure, so that one broken target does not hide the others.
Each target asserts on its own: first run changed, second not, check mode
reports the change and leaves sysfs/configfs byte-identical, diffs, absent,
bad parameters. The tests below read the recap and the per-target records.

The collection is found through a symlink under /tmp (the checkout is
read-only in the guest), and the modules run under Debian's /usr/bin/python3,
which has no pyudev: the stack must fall back to polling without a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS_DIR = os.path.join(REPO, "tests", "integration", "targets")
#: In playbook order: usbip_vudc first (the others make their devices with it), the chain last.
TARGETS = ["usbip_vudc", "usbip_bind", "usbip_attach", "usbip_info", "usbip_chain"]
WORK = "/tmp/usbip-modules"
COLLECTIONS = "/tmp/collections"
TARGET_PYTHON = "/usr/bin/python3"
# About 5 minutes on an idle machine; an emulated guest competing with other guests for two cores is many
# times slower, so the bound is generous. Run it with the lab's --timeout above this.
PLAYBOOK_TIMEOUT = 1500
# The one playbook run serves every test here and takes minutes under TCG.
pytestmark = pytest.mark.timeout(PLAYBOOK_TIMEOUT + 60)
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                   r"\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


def collection_tree() -> str:
    """``/tmp/collections/ansible_collections/usbip/usbip`` -> this checkout."""
    link = os.path.join(COLLECTIONS, "ansible_collections", "usbip", "usbip")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.islink(link):
        os.unlink(link)
    os.symlink(REPO, link)
    return COLLECTIONS


def playbook(results: str) -> list:
    """Each target in a block; a failure is recorded (set_fact, no task on the target) and the next one runs."""
    tasks = [{"name": "No target has failed yet", "ansible.builtin.set_fact": {"usbip_failed": {}}}]
    for target in TARGETS:
        tasks.append({
            "name": "Target %s" % target,
            "block": [{"name": "Run %s" % target, "ansible.builtin.include_role": {"name": target}}],
            "rescue": [{"name": "Record why %s failed" % target, "ansible.builtin.set_fact": {
                "usbip_failed": "{{ usbip_failed | combine({%r: {'task': ansible_failed_task.name | default('?'),"
                                " 'result': ansible_failed_result | default({})}}) }}" % target}}],
        })
    tasks.append({"name": "Write the results", "ansible.builtin.copy": {
        "dest": results, "mode": "0644", "content": "{{ {'failed': usbip_failed} | to_nice_json }}\n"}})
    return [{"name": "usbip.usbip integration targets", "hosts": "localhost", "gather_facts": False,
             "tasks": tasks}]


@pytest.fixture(scope="module")
def playbook_run(kernel):
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    results = os.path.join(WORK, "results.json")
    path = os.path.join(WORK, "site.yml")
    with open(path, "w") as f:
        json.dump(playbook(results), f, indent=1)  # JSON is YAML
    extra = {"usbip_repo": REPO, "usbip_python": sys.executable, "usbip_work": WORK,
             "usbip_snapshot": "%s %s" % (TARGET_PYTHON, os.path.join(REPO, "tests", "integration", "snapshot.py")),
             "ansible_python_interpreter": TARGET_PYTHON}
    with open(os.path.join(WORK, "vars.json"), "w") as f:
        json.dump(extra, f)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collection_tree(),
        ANSIBLE_ROLES_PATH=TARGETS_DIR,
        ANSIBLE_LOCAL_TEMP=os.path.join(WORK, "tmp-local"),
        ANSIBLE_REMOTE_TEMP=os.path.join(WORK, "tmp-remote"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_PIPELINING="1",  # one process per task instead of five: forks are slow in an emulated guest
        ANSIBLE_CALLBACK_RESULT_FORMAT="yaml",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PYTHONPATH", None)  # the modules must find the stack through the collection, nothing else
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "@" + os.path.join(WORK, "vars.json"), path]
    # The log goes where the host can read it after the guest is gone (lab's xfer share), with elapsed times.
    log_path = "/tmp/xfer/ansible-modules.log" if os.path.isdir("/tmp/xfer") else os.path.join(WORK, "ansible.log")
    start = time.monotonic()
    lines = []
    with open(log_path, "w") as log, subprocess.Popen(command, cwd=WORK, env=env, stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT, text=True) as proc:
        timer = threading.Timer(PLAYBOOK_TIMEOUT, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                lines.append(line)
                log.write("%6.1f %s" % (time.monotonic() - start, line))
                log.flush()
        finally:
            timer.cancel()
        rc = proc.wait()
    output = "".join(lines)
    print(output)
    return rc, output, results


def _tail(output: str, lines: int = 60) -> str:
    return "\n".join(output.splitlines()[-lines:])


def test_the_playbook_ran_clean(playbook_run):
    rc, output = playbook_run[:2]
    recap = RECAP.search(output)
    assert recap, "no play recap:\n" + _tail(output)
    ok, changed, unreachable, failed, skipped, rescued, ignored = (int(n) for n in recap.groups())
    assert (unreachable, failed, rescued) == (0, 0, 0), _tail(output)
    assert rc == 0, _tail(output)
    assert ok > 50 and changed > 10
    assert "Traceback" not in output and "MODULE FAILURE" not in output, "a module crashed"


@pytest.mark.parametrize("target", TARGETS)
def test_target(playbook_run, target):
    output, results = playbook_run[1:]
    assert os.path.exists(results), "the playbook did not finish:\n" + _tail(output)
    with open(results) as f:
        failed = json.load(f)["failed"]
    if target in failed:
        pytest.fail("%s failed at %r:\n%s" % (target, failed[target]["task"],
                                              json.dumps(failed[target]["result"], indent=1)[:8000]))


def test_targets_are_all_played():
    """Every directory under targets/ is in TARGETS, so none is silently skipped."""
    assert sorted(os.listdir(TARGETS_DIR)) == sorted(TARGETS)
